// Bench-only wrapper: our production server (dist/server.js, unchanged), run
// with --expose-gc, answering "gc" over the IPC channel with its memory
// usage after a full collection. Nothing of this reaches the app.
process.on('message', (message) => {
  if (message !== 'gc') return
  globalThis.gc()
  process.send(process.memoryUsage())
})
// The IPC channel would keep the process alive after a graceful shutdown.
process.once('SIGTERM', () => process.disconnect?.())
await import(process.env.BENCH_SERVER ?? new URL('../dist/server.js', import.meta.url).href)
