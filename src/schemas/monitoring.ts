import { Type } from '@sinclair/typebox'
import { AI_PROVIDERS } from '../config.js'
import { Nullable, StringEnum, Timestamp } from './common.js'

/* Health and monitoring bodies (SPEC §8). Every figure is a number. */

export const Uptime = Type.Object({
  seconds: Type.Integer(),
  minutes: Type.Integer(),
  hours: Type.Integer(),
  days: Type.Integer()
})

export const AlertSchema = Type.Object({
  name: Type.String({ description: 'highMemory, memoryLimit, eventLoopStalled, highErrorRate, highAIFailureRate, slowResponse, highConnections' }),
  level: StringEnum(['warning', 'critical']),
  value: Type.Number(),
  threshold: Type.Number(),
  since: Timestamp
})

const Circuit = StringEnum(['closed', 'open', 'half-open'])
const Provider = StringEnum(AI_PROVIDERS)

const InstanceId = Type.String({ description: 'random at boot: tells the instances behind a load balancer apart' })

export const Health = Type.Object({
  status: StringEnum(['healthy', 'degraded', 'unhealthy']),
  timestamp: Timestamp,
  version: Type.String(),
  instanceId: InstanceId,
  uptime: Uptime,
  memory: Type.Object({ rssMB: Type.Number(), heapUsedMB: Type.Number() }),
  activeSessions: Type.Integer(),
  activeConnections: Type.Integer(),
  ai: Type.Object({ provider: Provider, model: Type.String(), circuit: Circuit }),
  checks: Type.Object({
    highMemory: Type.Boolean(),
    highErrorRate: Type.Boolean(),
    highAIFailureRate: Type.Boolean(),
    redis: StringEnum(['ok', 'down', 'unused'], { description: 'down (unhealthy): a configured Redis does not answer; unused: no REDIS_URL' }),
    memoryLimit: Type.Boolean({ description: 'RSS at or over MEMORY_LIMIT_MB (unhealthy)' }),
    eventLoopStalled: Type.Boolean({ description: 'unhealthy' }),
    shuttingDown: Type.Boolean({ description: 'unhealthy' })
  }),
  alerts: Type.Array(AlertSchema)
})

export const Probe = Type.Object({ status: Type.String() })

const Count = Type.Integer({ minimum: 0 })
const Percent = Type.Number({ minimum: 0, maximum: 100 })
const windowDescription = 'Counts over the window behind the rates, health checks and alerts (last 5 minutes)'

export const Stats = Type.Object({
  instanceId: InstanceId,
  uptime: Uptime,
  requests: Type.Object({
    total: Count,
    successful: Count,
    clientErrors: Count,
    serverErrors: Count,
    successRate: Type.Number({ minimum: 0, maximum: 100, description: '2xx/3xx share over the window; 100 without requests' }),
    errorRate: Type.Number({ minimum: 0, maximum: 100, description: '5xx share over the window' }),
    window: Type.Object({
      seconds: Type.Number(),
      total: Count,
      successful: Count,
      clientErrors: Count,
      serverErrors: Count
    }, { description: windowDescription })
  }, { description: 'Counts since start; rates over the window' }),
  ai: Type.Object({
    total: Count,
    successful: Count,
    failures: Count,
    fallbacks: Count,
    blocked: Count,
    successRate: Percent,
    failureRate: Percent,
    avgLatencyMs: Type.Number({ description: 'Over the last 1000 model answers (ok or blocked)' }),
    p95LatencyMs: Type.Number(),
    provider: Provider,
    model: Type.String(),
    circuit: Circuit,
    window: Type.Object({
      seconds: Type.Number(),
      total: Count,
      successful: Count,
      failures: Count,
      fallbacks: Count,
      blocked: Count
    }, { description: windowDescription })
  }),
  connections: Type.Object({ current: Count, peak: Count }),
  sessions: Type.Object({ active: Count, companion: Count, multiplayer: Count }),
  performance: Type.Object({
    avgResponseTimeMs: Type.Number({ description: 'Over the last 1000 requests (probes and scrapes excluded)' }),
    p50Ms: Type.Number(),
    p95Ms: Type.Number(),
    p99Ms: Type.Number(),
    sampleSize: Count,
    memory: Type.Object({ rssMB: Type.Number(), heapUsedMB: Type.Number(), heapTotalMB: Type.Number() }),
    eventLoopDelayMs: Type.Number()
  }),
  errors: Type.Object({
    count: Count,
    recent: Type.Array(Type.Object({
      timestamp: Timestamp,
      message: Type.String({ description: 'The message the client received' }),
      code: Type.String(),
      route: Nullable(Type.String()),
      statusCode: Type.Integer(),
      reqId: Type.String({ description: 'Find the full error (with stack) in errors.log' })
    }), { maxItems: 5 })
  }),
  alerts: Type.Array(AlertSchema),
  thresholds: Type.Object({
    memoryWarnMB: Type.Number(),
    memoryLimitMB: Type.Number(),
    errorRatePct: Type.Number(),
    aiFailureRatePct: Type.Number(),
    slowResponseMs: Type.Number(),
    highConnections: Type.Number(),
    eventLoopStallMs: Type.Number(),
    minRateSample: Type.Number(),
    slowClearMs: Type.Number()
  })
})

const Figure = (description: string) => Nullable(Type.Number(), { description })
const PerInterval = (description: string) => Type.Integer({ minimum: 0, description: `${description} during the interval` })

/** One sample of GET /api/stats/history (SPEC §8.1); null: nothing to measure. */
export const HistorySample = Type.Object({
  t: Type.Integer({ description: 'End of the interval, milliseconds since the epoch' }),
  successful: PerInterval('Requests answered 2xx/3xx'),
  clientErrors: PerInterval('Requests answered 4xx'),
  serverErrors: PerInterval('Requests answered 5xx'),
  p50Ms: Figure('Median response time of the interval\'s requests; null without requests'),
  p95Ms: Figure('95th percentile, as p50Ms'),
  p99Ms: Figure('99th percentile, as p50Ms'),
  aiRequests: PerInterval('AI requests that ended'),
  aiFailures: PerInterval('AI failures (503 AI_UNAVAILABLE)'),
  aiFallbacks: PerInterval('AI fallback replies (failures, blocked, offline)'),
  aiP95Ms: Figure('95th percentile latency of the interval\'s model answers; null without any'),
  connections: Type.Integer({ minimum: 0, description: 'WebSocket connections open at the end of the interval' }),
  sessions: Figure('Active sessions at the end of the interval; null when the store could not be read'),
  rssMB: Type.Number({ description: 'Resident set size' }),
  heapUsedMB: Type.Number({ description: 'V8 heap in use' }),
  eventLoopDelayMs: Type.Number({ description: 'Mean event-loop delay over the last 1 s' })
})

export const StatsHistory = Type.Object({
  intervalMs: Type.Integer({ description: 'Time between two samples (STATS_SAMPLE_INTERVAL_MS)' }),
  samples: Type.Array(HistorySample, { maxItems: 360, description: 'Oldest first; the last 360 intervals' })
})
