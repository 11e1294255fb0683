// A redis-server for the Redis scenarios (Debian's package; the bench needs
// it only for them): a free port, no persistence, pinned to the load core
// with the load generators, so the servers' core holds only our instances
// (BENCH_REDIS_CORE=0 puts it with the servers instead).
import { execFileSync, spawn } from 'node:child_process'
import { once } from 'node:events'
import { createServer } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { LOAD_CORE, pinned } from './processes.mjs'

const REDIS_CORE = Number(process.env.BENCH_REDIS_CORE ?? LOAD_CORE)

async function freePort () {
  const server = createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address()
  server.close()
  return port
}

export async function startRedis () {
  const port = await freePort()
  const [command, args] = pinned(REDIS_CORE, 'redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'])
  const child = spawn(command, args, { stdio: 'ignore' })
  const cli = (...argv) => execFileSync('redis-cli', ['-p', String(port), ...argv], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
  for (let tries = 0; ; tries++) {
    try {
      if (cli('PING').trim() === 'PONG') break
    } catch (error) {
      if (tries > 50) throw error
    }
    await sleep(100)
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    /** INFO memory's used_memory, in bytes. */
    usedMemory: () => Number(/used_memory:(\d+)/.exec(cli('INFO', 'memory'))[1]),
    /** Every key as "name (bytes)", sorted (small databases only: the soak's leftovers). */
    keyNames: () => cli('--scan').split('\n').filter(Boolean).sort()
      .map((key) => `${key} (${cli('MEMORY', 'USAGE', key).trim()} B)`),
    /** Calls of each command so far and Redis' time in them (INFO commandstats), e.g. evalsha. */
    commandStats: () => Object.fromEntries([...cli('INFO', 'commandstats').matchAll(/cmdstat_(\w+):calls=(\d+),usec=(\d+)/g)]
      .map(([, name, calls, usec]) => [name, { calls: Number(calls), usec: Number(usec) }])),
    async stop () {
      child.kill('SIGTERM')
      await once(child, 'exit')
    }
  }
}
