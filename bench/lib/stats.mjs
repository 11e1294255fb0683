/** The value at fraction `p` (0–1) of ascending `sorted`; NaN when empty. */
export function percentile (sorted, p) {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]
}
