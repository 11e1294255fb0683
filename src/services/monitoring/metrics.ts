import type { AiOutcome } from '../ai/outcome.js'
import { createAlertBook, type Alert, type AlertChange } from './alerts.js'

/*
 * What the instance has done and how it is doing (SPEC §8): request and AI
 * counts since start and over a sliding window, response times of the last
 * requests, connections, and the alert rules over all of them. Recording is
 * O(1) and allocates nothing (typed arrays, fixed counters); the heavier
 * work (sorting for percentiles) happens only when someone reads.
 */

export interface Thresholds {
  memoryWarnMB: number
  memoryLimitMB: number
  errorRatePct: number
  aiFailureRatePct: number
  slowResponseMs: number
  highConnections: number
  /** Mean event-loop delay at which the instance counts as stalled (503). */
  eventLoopStallMs: number
  /** A rate alert needs at least this many requests in the window (1 failure of 1 is noise). */
  minRateSample: number
  /** A slow-response alert clears after this long without a slow response. */
  slowClearMs: number
}

/** Process figures, sampled elsewhere (sampler.ts) so reading them is free. */
export interface ResourceFigures {
  rssBytes: number
  heapUsedBytes: number
  /** Mean delay over the last interval: the figure shown. */
  eventLoopDelayMs: number
  /**
   * Longest single delay in the last interval: what decides a stall. A mean
   * hides one: a loop blocked 1.3 s per turn, sampled just before each block's
   * own delay is recorded, averages that delay with the short ones after it.
   */
  eventLoopLongestDelayMs: number
}

export interface RecentError {
  timestamp: string
  message: string
  code: string
  route: string | null
  statusCode: number
  reqId: string
}

export interface MetricsOptions {
  thresholds: Thresholds
  resources: () => ResourceFigures
  onAlert: (change: AlertChange, alert: Readonly<Alert>) => void
  now?: () => number
  /** Response times (and AI latencies) kept for averages and percentiles. */
  sampleSize?: number
  /** The window behind rates, health checks and alerts. */
  windowMs?: number
  /** Granularity of that window: it covers between (buckets-1)/buckets and all of windowMs. */
  buckets?: number
  /** Samples the history keeps (SPEC §8.1: an hour of 10 s samples). */
  historySize?: number
}

const MB = 1024 * 1024
const RECENT_ERRORS = 5

// Counter slots, shared by the since-start totals and the window buckets.
const REQUESTS = 0
const SUCCESSFUL = 1
const CLIENT_ERRORS = 2
const SERVER_ERRORS = 3
const AI_TOTAL = 4
const AI_SUCCESSFUL = 5
const AI_FAILURES = 6
const AI_FALLBACKS = 7
const AI_BLOCKED = 8
const FIELDS = 9

export const round2 = (value: number) => Math.round(value * 100) / 100

/** Bytes as megabytes with two decimals, as every memory figure is reported. */
export const toMB = (bytes: number) => round2(bytes / MB)

/** Uptime split into whole units, as /health and /api/stats show it. */
export function uptime (seconds = process.uptime()) {
  const whole = Math.floor(seconds)
  return { seconds: whole, minutes: Math.floor(whole / 60), hours: Math.floor(whole / 3600), days: Math.floor(whole / 86400) }
}

/** Percentage, or 0 when nothing happened. */
const percent = (part: number, whole: number) => whole === 0 ? 0 : (part / whole) * 100

/** Success percentage: 100 when nothing happened (nothing failed). */
const successPercent = (part: number, whole: number) => whole === 0 ? 100 : percent(part, whole)

/** Fixed-size ring of the last `size` samples. */
export function createSampleRing (size: number) {
  const values = new Float64Array(size)
  const sorted = new Float64Array(size)
  let next = 0
  let count = 0
  return {
    push (value: number) {
      values[next] = value
      next = next + 1 === size ? 0 : next + 1
      if (count < size) count++
    },
    /**
     * Average and nearest-rank percentiles of the newest `last` values the
     * ring holds (all of them by default).
     */
    summary (last = count) {
      const n = Math.min(last, count)
      const view = sorted.subarray(0, n)
      // The newest n values end just before `next`, wrapping round the ring.
      const start = next - n
      if (start >= 0) {
        view.set(values.subarray(start, next))
      } else {
        view.set(values.subarray(size + start))
        view.set(values.subarray(0, next), -start)
      }
      view.sort()
      let sum = 0
      for (let i = 0; i < n; i++) sum += view[i]
      // p * n / 100 is exact for integer p, so the rank is too.
      const at = (p: number) => n === 0 ? 0 : round2(view[Math.ceil((p * n) / 100) - 1])
      return { sampleSize: n, avg: n === 0 ? 0 : round2(sum / n), p50: at(50), p95: at(95), p99: at(99) }
    }
  }
}

/**
 * One history sample (SPEC §8.1): requests and AI requests of the interval
 * by outcome, response-time percentiles of the interval's requests, and the
 * process figures at its end. null: nothing to measure (no request in the
 * interval, the session store unreadable).
 */
export interface HistorySample {
  t: number
  successful: number
  clientErrors: number
  serverErrors: number
  p50Ms: number | null
  p95Ms: number | null
  p99Ms: number | null
  aiRequests: number
  aiFailures: number
  aiFallbacks: number
  aiP95Ms: number | null
  connections: number
  sessions: number | null
  rssMB: number
  heapUsedMB: number
  eventLoopDelayMs: number
}

/** Storage order of a sample's figures (every key of HistorySample, once). */
export const HISTORY_FIELDS = [
  't', 'successful', 'clientErrors', 'serverErrors', 'p50Ms', 'p95Ms', 'p99Ms',
  'aiRequests', 'aiFailures', 'aiFallbacks', 'aiP95Ms',
  'connections', 'sessions', 'rssMB', 'heapUsedMB', 'eventLoopDelayMs'
] as const satisfies ReadonlyArray<keyof HistorySample>

/**
 * Fixed-size ring of the last `size` history samples, stored flat in one
 * preallocated typed array (null as NaN): pushing overwrites the oldest row
 * in place, so it costs the same with 1 sample or 360 and allocates nothing.
 */
export function createHistoryRing (size: number) {
  const width = HISTORY_FIELDS.length
  const rows = new Float64Array(size * width)
  let next = 0
  let count = 0
  return {
    push (sample: HistorySample): void {
      const base = next * width
      for (let field = 0; field < width; field++) rows[base + field] = sample[HISTORY_FIELDS[field]] ?? NaN
      next = next + 1 === size ? 0 : next + 1
      if (count < size) count++
    },
    /** The samples, oldest first (a reader's path: allocation is fine). */
    list (): HistorySample[] {
      const samples: HistorySample[] = []
      for (let i = 0; i < count; i++) {
        const base = ((next - count + i + size) % size) * width
        const sample: Record<string, number | null> = {}
        for (let field = 0; field < width; field++) {
          const value = rows[base + field]
          sample[HISTORY_FIELDS[field]] = Number.isNaN(value) ? null : value
        }
        samples.push(sample as unknown as HistorySample)
      }
      return samples
    }
  }
}

/**
 * Counters over a sliding window of `buckets` time buckets. Sums are kept
 * incrementally: a bucket leaving the window is subtracted once, so reading
 * the window total is O(1) too.
 */
function createWindow (windowMs: number, buckets: number, now: () => number) {
  const bucketMs = windowMs / buckets
  const counts = new Float64Array(buckets * FIELDS)
  const sums = new Float64Array(FIELDS)
  let head = Math.floor(now() / bucketMs)

  function advance (): void {
    const index = Math.floor(now() / bucketMs)
    if (index <= head) return
    const steps = Math.min(index - head, buckets)
    for (let step = 1; step <= steps; step++) {
      const base = ((head + step) % buckets) * FIELDS
      for (let field = 0; field < FIELDS; field++) {
        sums[field] -= counts[base + field]
        counts[base + field] = 0
      }
    }
    head = index
  }

  return {
    sums,
    advance,
    /** Adds to the current bucket; call advance() first. */
    add (field: number) {
      counts[(head % buckets) * FIELDS + field]++
      sums[field]++
    }
  }
}

export function createMetricsService ({
  thresholds, resources, onAlert, now = Date.now, sampleSize = 1000, windowMs = 5 * 60_000, buckets = 10, historySize = 360
}: MetricsOptions) {
  const totals = new Float64Array(FIELDS)
  // The totals at the last history sample: a sample's counts are the difference.
  const sampledTotals = new Float64Array(FIELDS)
  const history = createHistoryRing(historySize)
  const window = createWindow(windowMs, buckets, now)
  const responseTimes = createSampleRing(sampleSize)
  const aiLatencies = createSampleRing(sampleSize)
  const alerts = createAlertBook({ onChange: onAlert, now })
  const recentErrors: RecentError[] = []
  let connections = 0
  let peakConnections = 0
  let lastSlowAt = 0
  let slowest = 0

  function count (field: number): void {
    totals[field]++
    window.add(field)
  }

  /** A rate alert over the window, once it holds enough samples to mean something. */
  function checkRate (name: string, failures: number, total: number, thresholdPct: number): boolean {
    const { sums } = window
    const rate = percent(sums[failures], sums[total])
    const on = sums[total] >= thresholds.minRateSample && rate > thresholdPct
    alerts.set(name, 'warning', on, round2(rate), thresholdPct)
    return on
  }

  const checkErrorRate = () => checkRate('highErrorRate', SERVER_ERRORS, REQUESTS, thresholds.errorRatePct)
  const checkAiFailures = () => checkRate('highAIFailureRate', AI_FAILURES, AI_TOTAL, thresholds.aiFailureRatePct)

  function checkConnections (): void {
    alerts.set('highConnections', 'warning', connections > thresholds.highConnections, connections, thresholds.highConnections)
  }

  /**
   * Every rule, including those that change with time alone (memory, the
   * window sliding past old errors, a slow-response alert going quiet).
   * Cheap enough for every health probe: a few comparisons on sampled figures.
   */
  function evaluate () {
    window.advance()
    const { rssBytes, heapUsedBytes, eventLoopDelayMs, eventLoopLongestDelayMs } = resources()
    const rssMB = rssBytes / MB
    const highMemory = rssMB > thresholds.memoryWarnMB
    const overMemoryLimit = rssMB >= thresholds.memoryLimitMB
    const eventLoopStalled = eventLoopLongestDelayMs >= thresholds.eventLoopStallMs
    alerts.set('highMemory', 'warning', highMemory, round2(rssMB), thresholds.memoryWarnMB)
    alerts.set('memoryLimit', 'critical', overMemoryLimit, round2(rssMB), thresholds.memoryLimitMB)
    alerts.set('eventLoopStalled', 'critical', eventLoopStalled, round2(eventLoopLongestDelayMs), thresholds.eventLoopStallMs)
    const highErrorRate = checkErrorRate()
    const highAIFailureRate = checkAiFailures()
    checkConnections()
    if (alerts.isActive('slowResponse') && now() - lastSlowAt >= thresholds.slowClearMs) {
      alerts.set('slowResponse', 'warning', false, slowest, thresholds.slowResponseMs)
    }
    return {
      rssMB: round2(rssMB),
      heapUsedMB: toMB(heapUsedBytes),
      eventLoopDelayMs: round2(eventLoopDelayMs),
      highMemory,
      overMemoryLimit,
      eventLoopStalled,
      highErrorRate,
      highAIFailureRate,
      connections,
      alerts: alerts.list()
    }
  }

  return {
    thresholds,

    /** One completed HTTP request: 2xx/3xx successful, 4xx client error, 5xx server error. */
    recordRequest (statusCode: number, responseTimeMs: number): void {
      window.advance()
      count(REQUESTS)
      count(statusCode >= 500 ? SERVER_ERRORS : statusCode >= 400 ? CLIENT_ERRORS : SUCCESSFUL)
      responseTimes.push(responseTimeMs)
      if (responseTimeMs > thresholds.slowResponseMs) {
        lastSlowAt = now()
        slowest = alerts.isActive('slowResponse') ? Math.max(slowest, responseTimeMs) : responseTimeMs
        alerts.set('slowResponse', 'warning', true, round2(slowest), thresholds.slowResponseMs)
      }
      checkErrorRate()
    },

    /** Context of a 5xx for `errors.recent` (rare path: allocation is fine). */
    recordServerError (error: Omit<RecentError, 'timestamp'>): void {
      recentErrors.unshift({ timestamp: new Date(now()).toISOString(), ...error })
      if (recentErrors.length > RECENT_ERRORS) recentErrors.pop()
    },

    /**
     * One AI request's end. `failed` is a failure and a fallback; `blocked`
     * and `offline` are fallbacks only (blocked also counted on its own);
     * `aborted` counts in the total only.
     * Latency figures cover answers from the model (ok, blocked).
     */
    recordAi (outcome: AiOutcome): void {
      window.advance()
      count(AI_TOTAL)
      switch (outcome.result) {
        case 'ok':
          count(AI_SUCCESSFUL)
          aiLatencies.push(outcome.latencyMs)
          break
        case 'blocked':
          count(AI_BLOCKED)
          count(AI_FALLBACKS)
          aiLatencies.push(outcome.latencyMs)
          break
        case 'failed':
          count(AI_FAILURES)
          count(AI_FALLBACKS)
          break
        case 'offline':
          count(AI_FALLBACKS)
          break
        case 'aborted':
          // The client left first: in the total only, neither a failure nor a fallback.
          break
      }
      checkAiFailures()
    },

    connectionOpened (): void {
      connections++
      if (connections > peakConnections) peakConnections = connections
      checkConnections()
    },

    connectionClosed (): void {
      if (connections > 0) connections--
      checkConnections()
    },

    evaluate,

    /**
     * Closes one history interval (called by a timer, every 10 s by
     * default). Its percentiles cover the requests of the interval: as every
     * request adds one response time, they are the newest entries of the
     * response-time ring (the last 1000 of a busier interval).
     */
    recordSample (sessions: number | null): void {
      const since = (field: number) => totals[field] - sampledTotals[field]
      const requests = since(REQUESTS)
      const times = requests === 0 ? undefined : responseTimes.summary(requests)
      const answers = since(AI_SUCCESSFUL) + since(AI_BLOCKED)
      const { rssBytes, heapUsedBytes, eventLoopDelayMs } = resources()
      history.push({
        t: now(),
        successful: since(SUCCESSFUL),
        clientErrors: since(CLIENT_ERRORS),
        serverErrors: since(SERVER_ERRORS),
        p50Ms: times?.p50 ?? null,
        p95Ms: times?.p95 ?? null,
        p99Ms: times?.p99 ?? null,
        aiRequests: since(AI_TOTAL),
        aiFailures: since(AI_FAILURES),
        aiFallbacks: since(AI_FALLBACKS),
        aiP95Ms: answers === 0 ? null : aiLatencies.summary(answers).p95,
        connections,
        sessions,
        rssMB: toMB(rssBytes),
        heapUsedMB: toMB(heapUsedBytes),
        eventLoopDelayMs: round2(eventLoopDelayMs)
      })
      sampledTotals.set(totals)
    },

    /** The history samples, oldest first. */
    history: () => history.list(),

    /** Everything /api/stats, /metrics and the stats log report, after evaluating the rules. */
    snapshot () {
      const health = evaluate()
      const { sums } = window
      const times = responseTimes.summary()
      const latencies = aiLatencies.summary()
      const windowSeconds = windowMs / 1000
      return {
        requests: {
          total: totals[REQUESTS],
          successful: totals[SUCCESSFUL],
          clientErrors: totals[CLIENT_ERRORS],
          serverErrors: totals[SERVER_ERRORS],
          successRate: round2(successPercent(sums[SUCCESSFUL], sums[REQUESTS])),
          errorRate: round2(percent(sums[SERVER_ERRORS], sums[REQUESTS])),
          window: {
            seconds: windowSeconds,
            total: sums[REQUESTS],
            successful: sums[SUCCESSFUL],
            clientErrors: sums[CLIENT_ERRORS],
            serverErrors: sums[SERVER_ERRORS]
          }
        },
        ai: {
          total: totals[AI_TOTAL],
          successful: totals[AI_SUCCESSFUL],
          failures: totals[AI_FAILURES],
          fallbacks: totals[AI_FALLBACKS],
          blocked: totals[AI_BLOCKED],
          successRate: round2(successPercent(sums[AI_SUCCESSFUL], sums[AI_TOTAL])),
          failureRate: round2(percent(sums[AI_FAILURES], sums[AI_TOTAL])),
          avgLatencyMs: latencies.avg,
          p95LatencyMs: latencies.p95,
          window: {
            seconds: windowSeconds,
            total: sums[AI_TOTAL],
            successful: sums[AI_SUCCESSFUL],
            failures: sums[AI_FAILURES],
            fallbacks: sums[AI_FALLBACKS],
            blocked: sums[AI_BLOCKED]
          }
        },
        connections: { current: connections, peak: peakConnections },
        performance: {
          avgResponseTimeMs: times.avg,
          p50Ms: times.p50,
          p95Ms: times.p95,
          p99Ms: times.p99,
          sampleSize: times.sampleSize
        },
        errors: { count: totals[SERVER_ERRORS], recent: recentErrors.slice() },
        health
      }
    }
  }
}

export type MetricsService = ReturnType<typeof createMetricsService>
