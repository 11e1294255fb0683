import { readFileSync } from 'node:fs'
import { isIP } from 'node:net'
import { parseEnv } from 'node:util'
import { Type, type Static, type TSchema } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import { COMMAND_TIMEOUT_MS } from './services/redis/timing.js'

/*
 * The environment is described once, here. Every variable of SPEC §1 has its
 * default and its constraint in this schema; `Config` is derived from it, and
 * the "must be …" sentence of a startup error is derived from the same
 * constraints, so documentation, validation and types cannot disagree.
 */

const int = (defaultValue: number, minimum: number, maximum = Number.MAX_SAFE_INTEGER) =>
  Type.Integer({ default: defaultValue, minimum, maximum })

/** Node's timers fire after 1 ms when given more than 2^31 − 1 ms. */
export const MAX_TIMER_MS = 2 ** 31 - 1
const ms = (defaultValue: number, minimum: number) => int(defaultValue, minimum, MAX_TIMER_MS)

const text = (defaultValue: string, must: string, pattern?: string) =>
  Type.String({ default: defaultValue, must, ...(pattern === undefined ? {} : { pattern }) })

const optionalText = (must: string, pattern?: string) =>
  Type.Optional(Type.String({ must, minLength: 1, ...(pattern === undefined ? {} : { pattern }) }))

const oneOf = <T extends string>(defaultValue: T | undefined, values: readonly T[]) =>
  Type.Union(values.map((value) => Type.Literal(value)), defaultValue === undefined ? {} : { default: defaultValue })

/** The AI providers of SPEC §4.9. */
export const AI_PROVIDERS = ['gemini', 'openai', 'offline'] as const
export type AiProviderName = typeof AI_PROVIDERS[number]

export const EnvSchema = Type.Object({
  PORT: int(4000, 0, 65535),
  HOST: text('0.0.0.0', 'a host name or IP address', '^\\S+$'),
  NODE_ENV: oneOf('development', ['development', 'production', 'test'] as const),
  CORS_ORIGIN: text('http://localhost:5173', 'a comma-separated list of origins like https://app.example.com'),
  TRUST_PROXY: text('false', 'false, true, or a comma-separated list of proxy IPs/CIDRs (a hop count is not supported)'),

  // Unset: derived from the variables below (aiProvider()).
  AI_PROVIDER: Type.Optional(oneOf(undefined, AI_PROVIDERS)),
  GEMINI_API_KEY: Type.Optional(Type.String()),
  GEMINI_MODEL: text('gemini-2.5-flash', 'a model name like gemini-2.5-flash', '^[A-Za-z0-9._-]+$'),
  GEMINI_BASE_URL: optionalText('an http(s) URL', '^https?://\\S+$'),
  GEMINI_THINKING_BUDGET: int(0, -1, 32768),
  OPENAI_BASE_URL: optionalText('an http(s) URL like http://127.0.0.1:11434/v1', '^https?://\\S+$'),
  OPENAI_API_KEY: Type.Optional(Type.String()),
  OPENAI_MODEL: optionalText('a model name like llama3.2:3b (letters, digits and ._:/-)', '^[A-Za-z0-9._:/-]+$'),
  AI_MAX_OUTPUT_TOKENS: int(512, 1, 65536),
  AI_TEMPERATURE: Type.Number({ default: 0.9, minimum: 0, maximum: 2 }),
  AI_TIMEOUT_MS: ms(20000, 1),
  AI_MAX_ATTEMPTS: int(3, 1, 10),
  AI_RETRY_BASE_MS: ms(1000, 0),
  AI_HISTORY_MESSAGES: int(20, 0, 1000),
  AI_MAX_CONCURRENCY: int(64, 1),

  SESSION_TTL_MS: ms(1800000, 1000),
  SESSION_MAX_PARTICIPANTS: int(10, 2, 1000),
  SESSION_MEMORY_MB: int(256, 1),
  COMPANION_HISTORY_KEPT: int(200, 2, 10000),
  IDEMPOTENCY_TTL_MS: ms(600000, 1000),
  SESSION_MEMORY_PER_IP_PCT: int(10, 1, 100),
  SESSION_CREATE_RATE: int(30, 1),
  SESSION_CREATE_WINDOW_MS: ms(60000, 1000),

  RATE_LIMIT_MAX: int(100, 1),
  RATE_LIMIT_WINDOW_MS: ms(900000, 1000),
  AI_RATE_LIMIT_MAX: int(10, 1),
  AI_RATE_LIMIT_WINDOW_MS: ms(60000, 1000),
  SLOW_DOWN_AFTER: int(50, 0),
  SLOW_DOWN_DELAY_MS: ms(500, 0),
  SLOW_DOWN_MAX_DELAY_MS: ms(10000, 0),

  BODY_LIMIT: int(65536, 1024, 100 * 1024 * 1024),
  REQUEST_TIMEOUT_MS: ms(30000, 1000),
  KEEP_ALIVE_TIMEOUT_MS: ms(72000, 1000),
  HEADERS_TIMEOUT_MS: ms(10000, 100),
  // Unset: derived from the process's open-file limit (services/http/connection-limits.ts).
  HTTP_MAX_CONNECTIONS: Type.Optional(Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER })),
  HTTP_MAX_CONNECTIONS_PER_IP: int(256, 1),

  WS_MAX_PAYLOAD: int(16384, 256, 100 * 1024 * 1024),
  WS_PING_INTERVAL_MS: ms(30000, 100),
  WS_MESSAGE_RATE: int(30, 1),
  WS_MESSAGE_WINDOW_MS: ms(10000, 100),
  WS_MAX_CONNECTIONS: int(10000, 1),
  WS_MAX_CONNECTIONS_PER_IP: int(50, 1),
  WS_MAX_BUFFERED_BYTES: int(1048576, 1024),
  WS_MAX_FRAGMENTS: int(32, 1),
  WS_FRAME_RATE: int(300, 1),
  WS_BYTE_RATE: int(1048576, 1024),
  WS_UPGRADE_RATE: int(60, 1),
  WS_UPGRADE_WINDOW_MS: ms(60000, 100),

  REDIS_URL: optionalText('a redis:// or rediss:// URL', '^rediss?://[^\\s/]+(/\\d*)?$'),
  REDIS_PREFIX: text('lc:', 'a key prefix without spaces or braces, like lc: or myapp-prod:', '^[^\\s{}]+$'),
  // At most 60 s: SPEC §9 drops a dead instance's participants within a minute.
  REDIS_PRESENCE_TTL_MS: int(45000, 300, 60000),
  REDIS_FANOUT_MAXLEN: int(20000, 100),
  REDIS_COMMAND_TIMEOUT_MS: ms(COMMAND_TIMEOUT_MS, 100),

  LOG_DIR: text('./logs', 'a folder path', '\\S'),
  LOG_LEVEL: oneOf('info', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const),
  LOG_RETENTION_DAYS: int(7, 1, 3650),
  LOG_MAX_SIZE: text('10m', 'a size like 500k, 10m or 1g', '^[1-9]\\d*[kmg]?$'),
  PROTOCOL_ERROR_LOG_MAX: int(10, 1),
  PROTOCOL_ERROR_LOG_WINDOW_MS: ms(60000, 100),

  STATS_INTERVAL_MS: ms(300000, 100),
  STATS_SAMPLE_INTERVAL_MS: ms(10000, 100),
  STATS_TOKEN: optionalText('a non-empty token'),
  // At most 10 minutes: no orchestrator waits longer, and the process adds
  // its own margin on top (server.ts), which must stay a valid timer.
  SHUTDOWN_TIMEOUT_MS: int(10000, 100, 600000),

  MEMORY_WARN_MB: int(800, 1),
  MEMORY_LIMIT_MB: int(1024, 1),
  ERROR_RATE_ALERT_PCT: int(20, 0, 100),
  AI_FAILURE_ALERT_PCT: int(50, 0, 100),
  SLOW_RESPONSE_MS: ms(5000, 1),
  EVENT_LOOP_STALL_MS: ms(1000, 100),
  HIGH_CONNECTIONS: int(100, 1)
})

export type Config = Static<typeof EnvSchema>

export class ConfigError extends Error {
  constructor (variable: string, must: string) {
    super(`Invalid configuration: ${variable} must be ${must}`)
    this.name = 'ConfigError'
  }
}

function describe (schema: TSchema): string {
  if (typeof schema.must === 'string') return schema.must
  if (schema.type === 'integer' || schema.type === 'number') {
    const kind = schema.type === 'integer' ? 'an integer' : 'a number'
    return schema.maximum === Number.MAX_SAFE_INTEGER
      ? `${kind} ≥ ${schema.minimum}`
      : `${kind} from ${schema.minimum} to ${schema.maximum}`
  }
  if (Array.isArray(schema.anyOf)) return `one of ${schema.anyOf.map((s: TSchema) => s.const).join(', ')}`
  return 'valid'
}

/** Reads `.env` (if present) under the real environment: the environment wins. */
export function readEnvironment (env: NodeJS.ProcessEnv = process.env, dotenvPath = '.env'): Record<string, string | undefined> {
  let fromFile: Record<string, string> = {}
  try {
    fromFile = parseEnv(readFileSync(dotenvPath, 'utf8')) as Record<string, string>
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
  }
  return { ...fromFile, ...env }
}

/**
 * Validates raw string variables into a typed Config, or throws a ConfigError
 * naming the first wrong variable. Empty strings count as unset, the way
 * `.env` templates leave optional variables.
 */
export function loadConfig (raw: Record<string, string | number | undefined>): Config {
  const input: Record<string, unknown> = {}
  for (const [key, schema] of Object.entries(EnvSchema.properties) as Array<[keyof Config, TSchema]>) {
    const value = typeof raw[key] === 'string' ? raw[key].trim() : raw[key]
    if (value === undefined || value === '') continue
    // Value.Convert would read "1.5", "1e3" or "0x10" as an integer; only
    // plain decimal digits are one.
    if (schema.type === 'integer' && typeof value === 'string' && !/^-?\d+$/.test(value)) {
      throw new ConfigError(key, describe(schema))
    }
    input[key] = value
  }
  const config = Value.Convert(EnvSchema, Value.Default(EnvSchema, input))
  const first = Value.Errors(EnvSchema, config).First()
  if (first !== undefined) {
    const variable = first.path.split('/')[1] ?? first.path
    throw new ConfigError(variable, describe(EnvSchema.properties[variable as keyof Config] ?? first.schema))
  }
  const valid = config as Config
  checkCrossField(valid)
  return valid
}

function checkCrossField (config: Config): void {
  aiProvider(config)
  parseTrustProxy(config.TRUST_PROXY)
  parseOrigins(config.CORS_ORIGIN)
  if (config.MEMORY_WARN_MB > config.MEMORY_LIMIT_MB) {
    throw new ConfigError('MEMORY_WARN_MB', `at most MEMORY_LIMIT_MB (${config.MEMORY_LIMIT_MB})`)
  }
  // Everything sent to the model must be among the turns the session keeps.
  if (config.COMPANION_HISTORY_KEPT < config.AI_HISTORY_MESSAGES) {
    throw new ConfigError('COMPANION_HISTORY_KEPT', `at least AI_HISTORY_MESSAGES (${config.AI_HISTORY_MESSAGES})`)
  }
  if (config.SLOW_DOWN_MAX_DELAY_MS < config.SLOW_DOWN_DELAY_MS) {
    throw new ConfigError('SLOW_DOWN_MAX_DELAY_MS', `at least SLOW_DOWN_DELAY_MS (${config.SLOW_DOWN_DELAY_MS})`)
  }
}

/**
 * SPEC §1, §4.9: AI_PROVIDER, or derived from what is configured; a provider
 * missing what it needs is a configuration error, never a half-working AI.
 */
export function aiProvider (config: Config): AiProviderName {
  const provider = config.AI_PROVIDER ??
    (config.GEMINI_API_KEY !== undefined ? 'gemini' : config.OPENAI_BASE_URL !== undefined ? 'openai' : 'offline')
  if (provider === 'gemini' && config.GEMINI_API_KEY === undefined) {
    throw new ConfigError('GEMINI_API_KEY', 'set when AI_PROVIDER is gemini')
  }
  if (provider === 'openai') {
    if (config.OPENAI_BASE_URL === undefined) {
      throw new ConfigError('OPENAI_BASE_URL', 'set when AI_PROVIDER is openai: the URL of an OpenAI-compatible API, like http://127.0.0.1:11434/v1')
    }
    if (config.OPENAI_MODEL === undefined) {
      throw new ConfigError('OPENAI_MODEL', 'set when AI_PROVIDER is openai: the model name as the server knows it, like llama3.2:3b')
    }
  }
  return provider
}

const CIDR = /^(.+)\/(\d{1,3})$/

/**
 * `false` → the socket address is the client; `true` → trust every hop
 * (left-most X-Forwarded-For); a list → trust only those proxies.
 * Fastify ≥ 5.12.1 ignores a numeric hop count, which would silently put
 * every user behind a load balancer into one rate-limit bucket, so refuse it.
 */
export function parseTrustProxy (value: string): boolean | string[] {
  const must = 'false, true, or a comma-separated list of proxy IPs/CIDRs; a hop count like "1" is ignored by Fastify ≥ 5.12.1 and would put every user in the proxy\'s rate-limit bucket, so list the load balancer\'s addresses instead'
  const lower = value.toLowerCase()
  if (lower === 'false') return false
  if (lower === 'true') return true
  const entries = splitList(value)
  const valid = entries.length > 0 && entries.every((entry) => {
    const cidr = CIDR.exec(entry)
    const address = cidr?.[1] ?? entry
    const version = isIP(address)
    return version !== 0 && (cidr === null || Number(cidr[2]) <= (version === 4 ? 32 : 128))
  })
  if (!valid) throw new ConfigError('TRUST_PROXY', must)
  return entries
}

export function parseOrigins (value: string): string[] {
  const origins = splitList(value)
  for (const origin of origins) {
    let url: URL | undefined
    try { url = new URL(origin) } catch { url = undefined }
    if (url === undefined || url.origin !== origin || !/^https?:$/.test(url.protocol)) {
      throw new ConfigError('CORS_ORIGIN', 'a comma-separated list of origins like https://app.example.com (got an entry that is not a bare http(s) origin)')
    }
  }
  return origins
}

function splitList (value: string): string[] {
  return value.split(',').map((entry) => entry.trim()).filter((entry) => entry !== '')
}
