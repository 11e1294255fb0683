import { readFileSync } from 'node:fs'
import type { Server } from 'node:http'
import { BlockList, isIPv4, type Socket } from 'node:net'
import { createConnectionCounts, type ConnectionRefusal } from '../limits/connection-counts.js'

/*
 * TCP connection caps (every HTTP connection, WebSockets included), so a
 * flood of idle connections cannot take every file descriptor: past the fd
 * limit, accept() and even process.memoryUsage() fail with EMFILE.
 * - the total: Node's own `server.maxConnections`, which closes the socket
 *   before any JavaScript object is made for it;
 * - per client address: Node has none, so a `connection` listener counts.
 *   It can only see the socket's address (X-Forwarded-For arrives later), so
 *   connections from trusted proxies (TRUST_PROXY) are not capped per address.
 */

/** Share of the open-file limit connections may take; the rest is for log files, Redis, outbound AI calls and Node itself. */
const CONNECTION_SHARE = 0.8
/** Descriptors always kept for everything else, however small the limit. */
const RESERVED_FDS = 64
/** Assumed where the limit cannot be read (no /proc). */
const ASSUMED_FD_LIMIT = 1024

/** The soft limit on open files (Node raises it to the hard limit at startup); undefined when unknown. */
export function openFileLimit (readLimits = () => readFileSync('/proc/self/limits', 'utf8')): number | undefined {
  try {
    const line = readLimits().split('\n').find((entry) => entry.startsWith('Max open files'))
    const soft = line?.slice('Max open files'.length).trim().split(/\s+/)[0]
    if (soft === 'unlimited') return Number.MAX_SAFE_INTEGER
    const value = Number(soft)
    return Number.isInteger(value) && value > 0 ? value : undefined
  } catch {
    return undefined
  }
}

/** HTTP_MAX_CONNECTIONS when unset: safely below the open-file limit. */
export function defaultMaxConnections (fdLimit = openFileLimit() ?? ASSUMED_FD_LIMIT): number {
  return Math.max(1, Math.min(Math.floor(fdLimit * CONNECTION_SHARE), fdLimit - RESERVED_FDS))
}

/** `TRUST_PROXY` (parsed) → is this socket address a trusted proxy? */
export function trustedProxies (trust: boolean | string[]): (address: string) => boolean {
  if (typeof trust === 'boolean') return () => trust
  const list = new BlockList()
  for (const entry of trust) {
    const [address, prefix] = entry.split('/')
    const type = isIPv4(address) ? 'ipv4' : 'ipv6'
    if (prefix === undefined) list.addAddress(address, type)
    else list.addSubnet(address, Number(prefix), type)
  }
  return (address) => {
    const plain = address.startsWith('::ffff:') && isIPv4(address.slice(7)) ? address.slice(7) : address
    return list.check(plain, isIPv4(plain) ? 'ipv4' : 'ipv6')
  }
}

export interface ConnectionLimitsOptions {
  max: number
  maxPerAddress: number
  /** The key an address is counted under (IPv6 /64 grouping, like the rate limits). */
  keyOf: (address: string) => string
  /** Addresses not capped per address (trusted proxies). */
  isExempt: (address: string) => boolean
  /** A connection was refused; called for every refusal, so keep it cheap. */
  onRefused: (reason: ConnectionRefusal, key: string) => void
}

const kKey = Symbol('connectionKey')
type KeyedSocket = Socket & { [kKey]?: string }

export function limitConnections (server: Server, { max, maxPerAddress, keyOf, isExempt, onRefused }: ConnectionLimitsOptions) {
  server.maxConnections = max
  server.on('drop', (data) => onRefused('server', data?.remoteAddress === undefined ? 'unknown' : keyOf(data.remoteAddress)))

  const counts = createConnectionCounts({ max: Number.POSITIVE_INFINITY, maxPerAddress })
  // Shared listeners, the key kept on the socket: no closure per connection.
  function released (this: KeyedSocket): void {
    counts.remove(this[kKey] as string)
  }
  server.on('connection', (socket: KeyedSocket) => {
    const address = socket.remoteAddress
    if (address === undefined || isExempt(address)) return
    const key = keyOf(address)
    if (counts.refusal(key) !== undefined) {
      socket.destroy()
      onRefused('address', key)
      return
    }
    counts.add(key)
    socket[kKey] = key
    socket.once('close', released)
  })
  return counts
}
