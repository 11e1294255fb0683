/** The value at fraction `p` (0–1) of ascending `sorted`; NaN when empty. */
export function percentile (sorted, p) {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]
}

/** Ascending times (ms) less than `gapMs` apart, as one window each: where it starts, how long, how many. */
export function windows (sortedMs, gapMs) {
  const found = []
  for (const at of sortedMs) {
    const last = found.at(-1)
    if (last !== undefined && at - last.lastMs < gapMs) {
      last.lastMs = at
      last.count++
    } else {
      found.push({ atMs: at, lastMs: at, count: 1 })
    }
  }
  return found.map(({ atMs, lastMs, count }) => ({ atMs: Math.round(atMs), spanMs: Math.round(lastMs - atMs), count }))
}
