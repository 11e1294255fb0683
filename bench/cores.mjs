// Where each core's time goes during the saturated WebSocket fan-out: how
// busy each core is (/proc/stat), and the shares of Redis and of the load
// generator (this process). A deployment whose cores are not both busy is
// held back by something other than CPU (turn-taking, round trips), which
// CPU per message alone does not show.
//
//   node bench/cores.mjs [ours|floor|single] [--rounds N]
//
// ours: two instances on one Redis; floor: the bare `ws` pair on Redis;
// single: one instance in memory. A 3 s warm-up, then 10 s rounds.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { pinSelf } from './lib/processes.mjs'
import { createServers } from './lib/servers.mjs'
import { fanOut, wsEndpoint } from './lib/ws-load.mjs'

const { positionals: [which = 'ours'], values: { rounds } } = parseArgs({ allowPositionals: true, options: { rounds: { type: 'string', default: '3' } } })

/** CPU seconds a process has used (utime + stime). */
function cpuSecondsOf (pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100
}

/** Busy and idle jiffies of each core. */
function coreTimes () {
  return readFileSync('/proc/stat', 'utf8').split('\n').filter((line) => /^cpu\d/.test(line)).map((line) => {
    const [user, nice, system, idle, iowait, irq, softirq, steal] = line.split(/\s+/).slice(1).map(Number)
    return { busy: user + nice + system + irq + softirq + steal, idle: idle + iowait }
  })
}

pinSelf()
const servers = createServers(mkdtempSync(join(tmpdir(), 'bench-cores-')))
const start = { ours: servers.oursOnRedis, floor: servers.bareWsOnRedis, single: servers.ours }[which]
if (start === undefined) throw new Error(`unknown deployment ${which}: ours, floor or single`)
const target = await start()
const redisPid = which === 'single' ? undefined : execFileSync('pgrep', ['-n', '-x', 'redis-server'], { encoding: 'utf8' }).trim()
const [senderUrl, receiverUrl] = (target.urls ?? [target.url, target.url]).map(wsEndpoint)
const load = (tag, seconds) => fanOut(senderUrl, { pairs: 50, seconds, warmupSeconds: 0, receiverUrl, tag, cpuSeconds: target.cpuSeconds })
await load('cores-warm-up', 3)
for (let round = 0; round < Number(rounds); round++) {
  const redisBefore = redisPid === undefined ? 0 : cpuSecondsOf(redisPid)
  const selfBefore = process.cpuUsage()
  const coresBefore = coreTimes()
  const from = performance.now()
  const result = await load(`cores-${round}`, 10)
  const seconds = (performance.now() - from) / 1000
  const busy = coreTimes().map(({ busy, idle }, core) => {
    const spent = busy - coresBefore[core].busy
    return `${(100 * spent / (spent + idle - coresBefore[core].idle)).toFixed(0)} %`
  })
  const self = process.cpuUsage(selfBefore)
  console.log(`${which} round ${round + 1}: ${result.msgPerSecond.toFixed(0)} msg/s, servers ${result.cpuUsPerMessage.toFixed(1)} µs/msg;`,
    `cores busy ${busy.join(', ')}; Redis ${redisPid === undefined ? '—' : ((cpuSecondsOf(redisPid) - redisBefore) / seconds).toFixed(2)} of a core,`,
    `load generator ${((self.user + self.system) / 1e6 / seconds).toFixed(2)}`)
}
await servers.stopAll()
