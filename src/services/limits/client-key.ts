import { isIPv6 } from 'node:net'

/*
 * The key a client is counted under by every per-client limit (rate limits,
 * slow-down, connection caps, session shares): the address as it is for IPv4;
 * an IPv4-mapped IPv6 address unwrapped to its IPv4 form (the same client over
 * a dual-stack socket); any other IPv6 address reduced to its /64, because a
 * single host usually owns a whole /64 and could rotate addresses in it.
 * Gives exactly what @fastify/rate-limit's `normalizeIP` gave (RFC 5952 form,
 * e.g. `2001:db8::`), so counters and Redis keys keep their names.
 */

/** The client key of a request's IP (`request.ip`). */
export function normalizeIP (ip: string): string {
  // Every request passes here: an IPv4 address (no colon) skips isIPv6's long regex.
  if (!ip.includes(':') || !isIPv6(ip)) return ip.toLowerCase()
  const groups = ipv6Groups(ip)
  if (groups[5] === 0xffff && groups.slice(0, 5).every((group) => group === 0)) {
    const [high = 0, low = 0] = groups.slice(6)
    return `${high >> 8}.${high & 0xff}.${low >> 8}.${low & 0xff}`
  }
  // The /64 keeps the first four groups; the zeros after them are the longest
  // run, so RFC 5952 always writes them as a trailing `::`.
  const network = groups.slice(0, 4)
  while (network.at(-1) === 0) network.pop()
  return `${network.map((group) => group.toString(16)).join(':')}::`
}

/** The eight 16-bit groups of a valid IPv6 address (zone dropped, dotted IPv4 tail converted). */
function ipv6Groups (ip: string): number[] {
  const zone = ip.indexOf('%')
  let address = zone === -1 ? ip : ip.slice(0, zone)
  if (address.includes('.')) {
    const tailStart = address.lastIndexOf(':') + 1
    const [a = 0, b = 0, c = 0, d = 0] = address.slice(tailStart).split('.').map(Number)
    address = `${address.slice(0, tailStart)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const parse = (part: string) => part === '' ? [] : part.split(':').map((group) => parseInt(group, 16))
  const [head = '', tail] = address.split('::')
  if (tail === undefined) return parse(head)
  const left = parse(head)
  const right = parse(tail)
  return [...left, ...Array<number>(8 - left.length - right.length).fill(0), ...right]
}
