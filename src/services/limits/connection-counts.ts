/*
 * Open connections, in total and per client address: the WebSocket caps of
 * SPEC §3 and the TCP caps (http/connection-limits.ts). Hand-written because
 * it must cost nothing per connection beyond a map entry per address.
 */

export type ConnectionRefusal = 'server' | 'address'

export interface ConnectionCountsOptions {
  max: number
  maxPerAddress: number
}

/** Open connections, in total and per client address; empty addresses are forgotten. */
export function createConnectionCounts ({ max, maxPerAddress }: ConnectionCountsOptions) {
  let total = 0
  const perAddress = new Map<string, number>()
  return {
    get total () { return total },
    /** Why one more connection from `address` must be refused, if it must. */
    refusal (address: string): ConnectionRefusal | undefined {
      if (total >= max) return 'server'
      if ((perAddress.get(address) ?? 0) >= maxPerAddress) return 'address'
      return undefined
    },
    add (address: string): void {
      total++
      perAddress.set(address, (perAddress.get(address) ?? 0) + 1)
    },
    remove (address: string): void {
      total--
      const left = (perAddress.get(address) ?? 1) - 1
      if (left === 0) perAddress.delete(address)
      else perAddress.set(address, left)
    }
  }
}
