import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parseEnv } from 'node:util'
import t from 'tap'
import { aiProvider, EnvSchema, loadConfig, parseTrustProxy } from '../src/config.js'
import { ROOT, spawnServer, tempDir } from './helper.js'

t.test('defaults are the documented ones (SPEC §1)', async (t) => {
  const config = loadConfig({})
  t.match(config, {
    PORT: 4000,
    HOST: '0.0.0.0',
    NODE_ENV: 'development',
    CORS_ORIGIN: 'http://localhost:5173',
    TRUST_PROXY: 'false',
    GEMINI_MODEL: 'gemini-2.5-flash',
    GEMINI_THINKING_BUDGET: 0,
    AI_MAX_OUTPUT_TOKENS: 512,
    AI_TEMPERATURE: 0.9,
    AI_TIMEOUT_MS: 20000,
    AI_MAX_ATTEMPTS: 3,
    AI_RETRY_BASE_MS: 1000,
    AI_HISTORY_MESSAGES: 20,
    AI_MAX_CONCURRENCY: 64,
    SESSION_TTL_MS: 1800000,
    SESSION_MAX_PARTICIPANTS: 10,
    COMPANION_HISTORY_KEPT: 200,
    IDEMPOTENCY_TTL_MS: 600000,
    RATE_LIMIT_MAX: 100,
    RATE_LIMIT_WINDOW_MS: 900000,
    AI_RATE_LIMIT_MAX: 10,
    AI_RATE_LIMIT_WINDOW_MS: 60000,
    SLOW_DOWN_AFTER: 50,
    SLOW_DOWN_DELAY_MS: 500,
    SLOW_DOWN_MAX_DELAY_MS: 10000,
    BODY_LIMIT: 65536,
    REQUEST_TIMEOUT_MS: 30000,
    KEEP_ALIVE_TIMEOUT_MS: 72000,
    WS_MAX_PAYLOAD: 16384,
    WS_PING_INTERVAL_MS: 30000,
    WS_MESSAGE_RATE: 30,
    WS_MESSAGE_WINDOW_MS: 10000,
    WS_MAX_CONNECTIONS: 10000,
    WS_MAX_CONNECTIONS_PER_IP: 50,
    WS_MAX_BUFFERED_BYTES: 1048576,
    LOG_DIR: './logs',
    LOG_LEVEL: 'info',
    LOG_RETENTION_DAYS: 7,
    LOG_MAX_SIZE: '10m',
    STATS_INTERVAL_MS: 300000,
    SHUTDOWN_TIMEOUT_MS: 10000,
    MEMORY_WARN_MB: 800,
    MEMORY_LIMIT_MB: 1024,
    ERROR_RATE_ALERT_PCT: 20,
    AI_FAILURE_ALERT_PCT: 50,
    SLOW_RESPONSE_MS: 5000,
    EVENT_LOOP_STALL_MS: 1000,
    HIGH_CONNECTIONS: 100
  })
  t.equal(config.GEMINI_API_KEY, undefined)
  t.equal(config.AI_PROVIDER, undefined)
  t.equal(config.OPENAI_BASE_URL, undefined)
  t.equal(config.OPENAI_API_KEY, undefined)
  t.equal(config.OPENAI_MODEL, undefined)
  t.equal(config.REDIS_URL, undefined)
  t.equal(config.STATS_TOKEN, undefined)
})

t.test('.env.example lists every variable with its default', async (t) => {
  const example = parseEnv(await readFile(join(ROOT, '.env.example'), 'utf8'))
  t.same(Object.keys(example).sort(), Object.keys(EnvSchema.properties).sort())
  t.same(loadConfig(example), loadConfig({}), 'the example values are the defaults')
})

t.test('numbers are numbers and empty values count as unset', async (t) => {
  const config = loadConfig({ PORT: '8080', GEMINI_API_KEY: '', TRUST_PROXY: ' 10.0.0.0/8, 192.168.1.7 ' })
  t.equal(config.PORT, 8080)
  t.equal(config.GEMINI_API_KEY, undefined)
  t.equal(config.TRUST_PROXY, '10.0.0.0/8, 192.168.1.7', 'trimmed')
  t.same(parseTrustProxy(config.TRUST_PROXY), ['10.0.0.0/8', '192.168.1.7'], 'the proxies Fastify is told to trust')
  t.equal(parseTrustProxy('false'), false)
  t.equal(parseTrustProxy('TRUE'), true)
  t.same(parseTrustProxy('10.0.0.1,,2001:db8::/32'), ['10.0.0.1', '2001:db8::/32'])
})

t.test('whitespace-only values count as unset', async (t) => {
  const config = loadConfig({ PORT: '   ', GEMINI_API_KEY: ' \t ', LOG_LEVEL: '\t', STATS_TOKEN: '  ', CORS_ORIGIN: ' ' })
  t.equal(config.PORT, 4000)
  t.equal(config.GEMINI_API_KEY, undefined)
  t.equal(config.LOG_LEVEL, 'info')
  t.equal(config.STATS_TOKEN, undefined)
  t.equal(config.CORS_ORIGIN, 'http://localhost:5173')
})

const OPENAI_URL_MISSING = 'OPENAI_BASE_URL must be set when AI_PROVIDER is openai: the URL of an OpenAI-compatible API, like http://127.0.0.1:11434/v1'
const OPENAI_MODEL_MISSING = 'OPENAI_MODEL must be set when AI_PROVIDER is openai: the model name as the server knows it, like llama3.2:3b'

const invalid: Array<[Record<string, string>, string]> = [
  [{ PORT: 'abc' }, 'Invalid configuration: PORT must be an integer from 0 to 65535'],
  [{ PORT: '70000' }, 'Invalid configuration: PORT must be an integer from 0 to 65535'],
  // Only plain decimal digits are an integer, not what Number() would accept.
  [{ PORT: '1.5' }, 'Invalid configuration: PORT must be an integer from 0 to 65535'],
  [{ PORT: '1e3' }, 'Invalid configuration: PORT must be an integer from 0 to 65535'],
  [{ PORT: '0x10' }, 'Invalid configuration: PORT must be an integer from 0 to 65535'],
  [{ RATE_LIMIT_MAX: '1e3' }, 'Invalid configuration: RATE_LIMIT_MAX must be an integer ≥ 1'],
  [{ RATE_LIMIT_MAX: '-1' }, 'Invalid configuration: RATE_LIMIT_MAX must be an integer ≥ 1'],
  [{ REDIS_URL: 'localhost:6379' }, 'Invalid configuration: REDIS_URL must be a redis:// or rediss:// URL'],
  [{ NODE_ENV: 'prod' }, 'Invalid configuration: NODE_ENV must be one of development, production, test'],
  [{ LOG_MAX_SIZE: 'ten' }, 'Invalid configuration: LOG_MAX_SIZE must be a size like 500k, 10m or 1g'],
  [{ CORS_ORIGIN: 'https://app.example.com/path' }, 'Invalid configuration: CORS_ORIGIN must be a comma-separated list of origins like https://app.example.com (got an entry that is not a bare http(s) origin)'],
  [{ MEMORY_WARN_MB: '2000' }, 'Invalid configuration: MEMORY_WARN_MB must be at most MEMORY_LIMIT_MB (1024)'],
  [{ COMPANION_HISTORY_KEPT: '19' }, 'Invalid configuration: COMPANION_HISTORY_KEPT must be at least AI_HISTORY_MESSAGES (20)'],
  [{ COMPANION_HISTORY_KEPT: '1', AI_HISTORY_MESSAGES: '0' }, 'Invalid configuration: COMPANION_HISTORY_KEPT must be an integer from 2 to 10000'],
  [{ IDEMPOTENCY_TTL_MS: '999' }, 'Invalid configuration: IDEMPOTENCY_TTL_MS must be an integer from 1000 to 2147483647'],
  [{ AI_PROVIDER: 'ollama' }, 'Invalid configuration: AI_PROVIDER must be one of gemini, openai, offline'],
  [{ AI_TEMPERATURE: '2.5' }, 'Invalid configuration: AI_TEMPERATURE must be a number from 0 to 2'],
  [{ AI_TEMPERATURE: '-0.1' }, 'Invalid configuration: AI_TEMPERATURE must be a number from 0 to 2'],
  [{ AI_TEMPERATURE: 'warm' }, 'Invalid configuration: AI_TEMPERATURE must be a number from 0 to 2'],
  [{ AI_MAX_OUTPUT_TOKENS: '0' }, 'Invalid configuration: AI_MAX_OUTPUT_TOKENS must be an integer from 1 to 65536'],
  [{ AI_MAX_OUTPUT_TOKENS: '65537' }, 'Invalid configuration: AI_MAX_OUTPUT_TOKENS must be an integer from 1 to 65536'],
  [{ GEMINI_THINKING_BUDGET: '-2' }, 'Invalid configuration: GEMINI_THINKING_BUDGET must be an integer from -1 to 32768'],
  [{ GEMINI_THINKING_BUDGET: '32769' }, 'Invalid configuration: GEMINI_THINKING_BUDGET must be an integer from -1 to 32768'],
  [{ OPENAI_BASE_URL: '127.0.0.1:11434/v1' }, 'Invalid configuration: OPENAI_BASE_URL must be an http(s) URL like http://127.0.0.1:11434/v1'],
  [{ OPENAI_BASE_URL: 'http://127.0.0.1:11434/v1', OPENAI_MODEL: 'llama 3' }, 'Invalid configuration: OPENAI_MODEL must be a model name like llama3.2:3b (letters, digits and ._:/-)'],
  [{ AI_PROVIDER: 'gemini' }, 'Invalid configuration: GEMINI_API_KEY must be set when AI_PROVIDER is gemini'],
  [{ AI_PROVIDER: 'openai', OPENAI_MODEL: 'llama3.2:3b' }, `Invalid configuration: ${OPENAI_URL_MISSING}`],
  [{ AI_PROVIDER: 'openai', OPENAI_BASE_URL: 'http://127.0.0.1:11434/v1' }, `Invalid configuration: ${OPENAI_MODEL_MISSING}`],
  [{ OPENAI_BASE_URL: 'http://127.0.0.1:11434/v1' }, `Invalid configuration: ${OPENAI_MODEL_MISSING}`]
]

t.test('invalid values are refused with one line naming the variable', async (t) => {
  for (const [env, message] of invalid) {
    t.throws(() => loadConfig(env), { name: 'ConfigError', message }, JSON.stringify(env))
  }
})

const HOP_COUNT_REFUSED = 'Invalid configuration: TRUST_PROXY must be false, true, or a comma-separated list of proxy IPs/CIDRs; ' +
  'a hop count like "1" is ignored by Fastify ≥ 5.12.1 and would put every user in the proxy\'s rate-limit bucket, ' +
  'so list the load balancer\'s addresses instead'

t.test('AI_PROVIDER: chosen, or derived from what is configured (SPEC §1, §4.9)', async (t) => {
  const local = { OPENAI_BASE_URL: 'http://127.0.0.1:11434/v1', OPENAI_MODEL: 'meta-llama/Llama-3.1-8B-Instruct' }
  t.equal(aiProvider(loadConfig({})), 'offline', 'nothing configured')
  t.equal(aiProvider(loadConfig({ GEMINI_API_KEY: 'k' })), 'gemini')
  t.equal(aiProvider(loadConfig(local)), 'openai')
  t.equal(aiProvider(loadConfig({ ...local, GEMINI_API_KEY: 'k' })), 'gemini', 'a Gemini key wins when both are set')
  t.equal(aiProvider(loadConfig({ ...local, GEMINI_API_KEY: 'k', AI_PROVIDER: 'openai' })), 'openai', 'unless AI_PROVIDER says otherwise')
  t.equal(aiProvider(loadConfig({ ...local, AI_PROVIDER: 'offline' })), 'offline')
  t.equal(aiProvider(loadConfig({ AI_PROVIDER: ' ' })), 'offline', 'blank counts as unset')
  t.equal(loadConfig({ AI_TEMPERATURE: '0.25' }).AI_TEMPERATURE, 0.25, 'a number, not a string')
  t.equal(loadConfig({ AI_TEMPERATURE: '0', GEMINI_THINKING_BUDGET: '-1' }).GEMINI_THINKING_BUDGET, -1)
})

t.test('a numeric TRUST_PROXY hop count is refused with an explanation', async (t) => {
  for (const value of ['1', '2', 'yes', '10.0.0.0/33']) {
    t.throws(() => loadConfig({ TRUST_PROXY: value }), { name: 'ConfigError', message: HOP_COUNT_REFUSED }, value)
  }
  t.equal(loadConfig({ TRUST_PROXY: 'true' }).TRUST_PROXY, 'true')
})

t.test('the process refuses to start on invalid configuration: exit 1, the one line loadConfig gives', async (t) => {
  // Each way loadConfig refuses, once (the .env test below covers a PORT that
  // is not digits); the message for every variable is tested above, in-process.
  const cases: Array<[Record<string, string>, string]> = [
    [{ RATE_LIMIT_MAX: '-1' }, 'Invalid configuration: RATE_LIMIT_MAX must be an integer ≥ 1'],
    [{ REDIS_URL: 'not a url' }, 'Invalid configuration: REDIS_URL must be a redis:// or rediss:// URL'],
    [{ TRUST_PROXY: '1' }, HOP_COUNT_REFUSED],
    [{ OPENAI_BASE_URL: 'http://127.0.0.1:11434/v1' }, `Invalid configuration: ${OPENAI_MODEL_MISSING}`]
  ]
  // Independent processes: started together, they cost about one startup.
  await Promise.all(cases.map(async ([env, message]) => {
    const server = await spawnServer(t, env)
    t.equal(await server.exited, 1, `${JSON.stringify(env)} exits 1`)
    t.equal(server.stderr(), `${message}\n`, 'exactly one line on stderr')
    t.equal(server.stdout(), '', 'nothing started')
  }))
})

t.test('.env in the working folder is read; the environment wins over it', async (t) => {
  const cwd = await tempDir(t, 'lc-dotenv-')
  await writeFile(join(cwd, '.env'), 'PORT=abc\nLOG_LEVEL=warn\n')
  const [refused, server] = await Promise.all([
    spawnServer(t, { PORT: undefined }, cwd),
    spawnServer(t, { PORT: '0', LOG_LEVEL: 'info' }, cwd)
  ])
  t.equal(await refused.exited, 1, '.env PORT=abc is read and refused')
  t.equal(refused.stderr(), 'Invalid configuration: PORT must be an integer from 0 to 65535\n')

  const url = await server.url
  const response = await fetch(`${url}/health/live`)
  t.equal(response.status, 200, 'environment PORT=0 won over .env')
  server.child.kill('SIGTERM')
  t.equal(await server.exited, 0)
})
