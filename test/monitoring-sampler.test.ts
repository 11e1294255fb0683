import t from 'tap'
import { createResourceSampler } from '../src/services/monitoring/sampler.js'
import { until } from './helper.js'

/* The resource sampler behind /health: a failed reading is reported, never thrown (issue 15, item 1). */

t.test('memory and event-loop figures are there at once and refreshed every interval', async (t) => {
  const sampler = createResourceSampler({ intervalMs: 50, onError: () => t.fail('no error expected') })
  t.teardown(() => sampler.close())
  t.ok(sampler.figures().rssBytes > 0)
  t.ok(sampler.figures().heapUsedBytes > 0)
  const busy = Date.now() + 200
  while (Date.now() < busy); // a 200 ms stall: the next sample sees a delay
  await until(() => sampler.figures().eventLoopDelayMs > 0, 2000, 'a delay to show')
  await until(() => sampler.figures().eventLoopDelayMs < 50, 2000, 'and to pass')
})

t.test('EMFILE from process.memoryUsage() keeps the last figures, is reported once per run of failures, and never throws', async (t) => {
  const errors: unknown[] = []
  const sampler = createResourceSampler({ intervalMs: 20, onError: (error) => errors.push(error) })
  t.teardown(() => sampler.close())
  const before = sampler.figures().rssBytes
  // The real failure needs every descriptor taken (see connection-limits.test.ts); here only the call fails.
  const real = process.memoryUsage
  const emfile = Object.assign(new Error('EMFILE: too many open files, uv_resident_set_memory'), { code: 'EMFILE' })
  process.memoryUsage = Object.assign(() => { throw emfile }, real)
  t.teardown(() => { process.memoryUsage = real })
  await until(() => errors.length > 0, 2000, 'the failure to be reported')
  await new Promise((resolve) => setTimeout(resolve, 100))
  t.same(errors, [emfile], 'reported once, not per sample')
  t.equal(sampler.figures().rssBytes, before, 'RSS keeps its last value')
  t.ok(sampler.figures().heapUsedBytes > 0, 'the heap is still read')
  // A reading that differs for sure (the real RSS may not move in a quiet process).
  const resumed = before + 4096
  process.memoryUsage = Object.assign(() => ({ ...real(), rss: resumed }), real)
  await until(() => sampler.figures().rssBytes === resumed, 2000, 'readings to resume')
})

t.test('a loop blocked longer than the sample interval, with hardly a turn between blocks, shows its longest delay in every sample', async (t) => {
  // As a loaded machine ran health.test.ts' stall test in CI: the
  // histogram's max missed every block (its reset forgets its last tick).
  const sampler = createResourceSampler({ intervalMs: 1000, onError: () => t.fail('no error expected') })
  t.teardown(() => sampler.close())
  const seen: number[] = []
  for (let i = 0; i < 4; i++) {
    const busy = Date.now() + 1300
    while (Date.now() < busy);
    await new Promise((resolve) => setTimeout(resolve, 1))
    await new Promise((resolve) => setImmediate(resolve))
    seen.push(sampler.figures().eventLoopLongestDelayMs)
  }
  t.ok(seen.slice(1).every((ms) => ms >= 1100), `1,200 ms or more (1,300 blocked, less the watch's 100 ms period), seen ${seen.map(Math.round).join(', ')}`)
})
