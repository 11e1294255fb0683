import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { createServer, connect } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { tempDir } from './helper.js'

/*
 * A real redis-server (Debian's package) for one test file: its own free
 * port and folder, no persistence unless asked. The handle can stop, pause
 * (SIGSTOP), resume, kill and restart it on the same port, so outages are
 * real outages, not a mocked client.
 */

type Test = { teardown: (fn: () => unknown) => void }

export interface RedisServer {
  readonly port: number
  readonly url: string
  /** SIGSTOP: the socket stays open but nothing answers (a frozen Redis). */
  pause: () => void
  /** SIGCONT after `pause`. */
  resume: () => void
  /** SIGKILL, waiting until the process is gone. */
  kill: () => Promise<void>
  /** Starts it again on the same port (after `kill`), with the same options. */
  start: () => Promise<void>
  /** Sends one command over a fresh raw connection and returns the raw RESP reply. */
  command: (...args: string[]) => Promise<string>
}

export interface RedisServerOptions {
  /** `appendonly yes` in the server's own folder, so a restart keeps the data. */
  persistent?: boolean
}

export async function freePort (): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const address = server.address()
  server.close()
  if (address === null || typeof address === 'string') throw new Error('no port')
  return address.port
}

/** One RESP command over a raw socket: no client library between the test and the server. */
function rawCommand (port: number, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    let reply = ''
    socket.setTimeout(2000, () => socket.destroy(new Error('redis command timed out')))
    socket.on('connect', () => {
      socket.end(`*${args.length}\r\n` + args.map((arg) => `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`).join(''))
    })
    socket.on('data', (chunk) => { reply += chunk.toString() })
    socket.on('end', () => resolve(reply))
    socket.on('error', reject)
  })
}

export async function startRedis (t: Test, options: RedisServerOptions = {}): Promise<RedisServer> {
  const port = await freePort()
  const dir = await tempDir(t, 'lc-redis-')
  let child: ChildProcess | undefined

  async function start (): Promise<void> {
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '',
      '--appendonly', options.persistent === true ? 'yes' : 'no', '--daemonize', 'no', '--loglevel', 'warning']
    child = spawn('redis-server', args, { stdio: 'ignore' })
    const deadline = Date.now() + 5000
    for (;;) {
      const reply = await rawCommand(port, ['PING']).catch(() => '')
      if (reply.startsWith('+PONG')) return
      if (Date.now() > deadline) throw new Error(`redis-server did not answer on port ${port} within 5 s`)
      await sleep(20)
    }
  }

  async function kill (): Promise<void> {
    const running = child
    child = undefined
    if (running === undefined || running.exitCode !== null || running.signalCode !== null) return
    running.kill('SIGCONT')
    running.kill('SIGKILL')
    await once(running, 'exit')
  }

  await start()
  t.teardown(kill)
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    pause: () => { child?.kill('SIGSTOP') },
    resume: () => { child?.kill('SIGCONT') },
    kill,
    start,
    command: (...args) => rawCommand(port, args)
  }
}
