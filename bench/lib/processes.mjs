// Starting the servers under test (ours and the baselines) pinned to one core,
// and reading their memory. Every server prints `"port":N,"msg":"ready"` once
// it listens, as src/server.ts does.
import { execFileSync, spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { cpus } from 'node:os'
import { setTimeout as sleep } from 'node:timers/promises'

export const ROOT = new URL('../..', import.meta.url).pathname

export const SERVER_CORE = 0
export const LOAD_CORE = 1

export const hasTaskset = (() => {
  try {
    execFileSync('taskset', ['-V'], { stdio: 'ignore' })
    return cpus().length > 1
  } catch {
    return false
  }
})()

/** [command, args] running `command` on one core when taskset is there. */
export function pinned (core, command, args) {
  return hasTaskset ? ['taskset', ['-c', String(core), command, ...args]] : [command, args]
}

/** Moves this process (the JS load generators) to the load core. */
export function pinSelf () {
  if (hasTaskset) execFileSync('taskset', ['-pc', String(LOAD_CORE), String(process.pid)], { stdio: 'ignore' })
}

/**
 * Starts `node [nodeArgs] script` with only `env` (plus PATH) on `core`;
 * resolves once it printed its port. `ipc: true` opens a message channel
 * (the soak asks its server for a GC and a heap figure through it).
 */
export function startNode (script, { env = {}, nodeArgs = [], core = SERVER_CORE, ipc = false, name = script } = {}) {
  const [command, args] = pinned(core, process.execPath, [...nodeArgs, script])
  const child = spawn(command, args, {
    env: { PATH: process.env.PATH, ...env },
    stdio: ['ignore', 'pipe', 'pipe', ...(ipc ? ['ipc'] : [])]
  })
  let out = ''
  let err = ''
  child.stderr.setEncoding('utf8').on('data', (chunk) => { err = (err + chunk).slice(-4000) })
  return new Promise((resolve, reject) => {
    const onData = (chunk) => {
      out += chunk
      const match = /"port":(\d+),"msg":"ready"/.exec(out)
      if (match === null) return
      child.stdout.off('data', onData)
      child.stdout.resume() // keep draining the lifecycle log
      child.off('exit', onExit)
      resolve({
        name,
        child,
        port: Number(match[1]),
        url: `http://127.0.0.1:${match[1]}`,
        rssKiB: () => rssKiB(child.pid), // taskset execs node: same pid
        cpuSeconds: () => cpuSeconds(child.pid),
        stop: () => stop(child)
      })
    }
    const onExit = (code) => reject(new Error(`${name} exited (${code}) before it was ready: ${err}`))
    child.stdout.setEncoding('utf8').on('data', onData)
    child.once('exit', onExit)
  })
}

export function rssKiB (pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  return Number(/VmRSS:\s+(\d+)/.exec(status)[1])
}

/** User + system CPU time the process has used, from /proc (clock ticks of 1/100 s). */
export function cpuSeconds (pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ')
  // After "pid (comm) ": field 3 is the state, so utime (14) and stime (15) are at 11 and 12.
  return (Number(fields[11]) + Number(fields[12])) / 100
}

async function stop (child) {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.kill('SIGTERM')
  const done = await Promise.race([exited.then(() => true), sleep(15_000, false)])
  if (!done) {
    child.kill('SIGKILL')
    await exited
  }
}
