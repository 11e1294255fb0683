import { ApiError } from '@google/genai'
import { APIConnectionError, APIError, APIUserAbortError } from 'openai'
import t from 'tap'
import { createCircuitBreaker } from '../src/services/ai/circuit-breaker.js'
import { createConcurrencyLimiter, LimiterRejection } from '../src/services/ai/limiter.js'
import { backoffDelay, nextRetryDelay } from '../src/services/ai/retry.js'
import { classifyGeminiError, parseDuration, parseErrorDetails } from '../src/services/ai/providers/gemini-errors.js'
import { classifyOpenAiError, retryAfterMs } from '../src/services/ai/providers/openai.js'
import { isUpstreamHealthFailure, TIMEOUT } from '../src/services/ai/upstream-errors.js'
import { quotaFailure, retryInfo } from './fake-gemini.js'

/* The retry policy, error parsing, circuit breaker and limiter on their own: every branch, no waiting. */

const googleBody = (code: number, details: unknown[], message = 'Resource has been exhausted') =>
  JSON.stringify({ error: { code, message, status: 'RESOURCE_EXHAUSTED', details } })

t.test('Google error bodies are parsed defensively', async (t) => {
  const details = [retryInfo('27s'), quotaFailure('GenerateRequestsPerDayPerProjectPerModel-FreeTier')]
  t.same(parseErrorDetails(googleBody(429, details)), details, 'plain JSON body')
  t.same(parseErrorDetails(`got status: 429 Too Many Requests. ${googleBody(429, details)}`), details, 'stream error chunk with its prefix')
  // Double encoding: the outer body's message is the whole JSON body again.
  t.same(parseErrorDetails(googleBody(429, [], googleBody(429, details))), details, 'double-encoded body')
  const proxyPage = JSON.stringify({ error: { message: '<html><body><h1>502 Bad Gateway</h1></body></html>', code: 502, status: 'Bad Gateway' } })
  t.same(parseErrorDetails(proxyPage), [], 'a proxy HTML page has no details')
  t.same(parseErrorDetails('upstream connect error or disconnect/reset before headers'), [], 'not JSON at all')
  t.same(parseErrorDetails('{"error": {"details": [1, null, "x", {"@type": "t"}]'), [], 'truncated JSON')
  t.same(parseErrorDetails('{"error": {"details": [1, null, "x", {"@type": "t"}]}}'), [{ '@type': 't' }], 'only object details kept')
})

t.test('RetryInfo durations', async (t) => {
  t.equal(parseDuration('27s'), 27000)
  t.equal(parseDuration('1.5s'), 1500)
  t.equal(parseDuration('0.250s'), 250)
  t.equal(parseDuration({ seconds: 2, nanos: 500_000_000 }), 2500)
  t.equal(parseDuration('27'), undefined)
  t.equal(parseDuration('soon'), undefined)
  t.equal(parseDuration(undefined), undefined)
})

t.test('failures are classified by status, quota and transport', async (t) => {
  const apiError = (status: number, details: unknown[] = []) => new ApiError({ status, message: googleBody(status, details) })

  for (const status of [429, 500, 502, 503, 504]) {
    t.same(classifyGeminiError(apiError(status)), { code: `HTTP_${status}`, status, retryable: true, perDayQuota: false }, `${status} is retryable`)
  }
  for (const status of [400, 401, 403, 404, 409, 422]) {
    t.same(classifyGeminiError(apiError(status)), { code: `HTTP_${status}`, status, retryable: false, perDayQuota: false }, `${status} is not retryable`)
  }
  t.same(classifyGeminiError(apiError(429, [retryInfo('12s')])),
    { code: 'HTTP_429', status: 429, retryable: true, retryDelayMs: 12000, perDayQuota: false }, '429 with RetryInfo')
  t.same(classifyGeminiError(apiError(429, [retryInfo('40s'), quotaFailure('GenerateRequestsPerDayPerProjectPerModel-FreeTier')])),
    { code: 'QUOTA_PER_DAY', status: 429, retryable: false, retryDelayMs: 40000, perDayQuota: true }, 'per-day quota')
  t.same(classifyGeminiError(apiError(429, [quotaFailure('GenerateRequestsPerMinutePerProjectPerModel-FreeTier')])),
    { code: 'HTTP_429', status: 429, retryable: true, perDayQuota: false }, 'a per-minute quota is an ordinary 429')
  t.same(classifyGeminiError(new TypeError('fetch failed')), { code: 'NETWORK_ERROR', retryable: true, perDayQuota: false }, 'network error')
  t.same(TIMEOUT, { code: 'TIMEOUT', retryable: true, perDayQuota: false }, 'our timeout fired (the service knows, whatever the SDK threw)')
})

t.test('OpenAI-compatible failures: the same statuses, Retry-After for RetryInfo, stream errors', async (t) => {
  const apiError = (status: number, headers: Record<string, string> = {}) =>
    APIError.generate(status, { error: { message: 'nope', type: 'x' } }, undefined, new Headers(headers))
  for (const status of [429, 500, 502, 503, 504]) {
    t.same(classifyOpenAiError(apiError(status)), { code: `HTTP_${status}`, status, retryable: true, perDayQuota: false }, `${status} is retryable`)
  }
  for (const status of [400, 401, 403, 404, 409, 422]) {
    t.same(classifyOpenAiError(apiError(status)), { code: `HTTP_${status}`, status, retryable: false, perDayQuota: false }, `${status} is not retryable`)
  }
  t.same(classifyOpenAiError(apiError(429, { 'retry-after': '7' })),
    { code: 'HTTP_429', status: 429, retryable: true, retryDelayMs: 7000, perDayQuota: false }, '429 with Retry-After')
  t.same(classifyOpenAiError(new APIError(undefined, { message: 'model crashed' }, undefined, new Headers())),
    { code: 'STREAM_ERROR', retryable: true, perDayQuota: false }, 'an error object inside a 200 stream')
  t.same(classifyOpenAiError(new APIConnectionError({ message: 'Connection error.' })), { code: 'NETWORK_ERROR', retryable: true, perDayQuota: false })
  t.same(classifyOpenAiError(new APIUserAbortError()), { code: 'NETWORK_ERROR', retryable: true, perDayQuota: false })
  t.same(classifyOpenAiError(new SyntaxError('Unexpected token')), { code: 'NETWORK_ERROR', retryable: true, perDayQuota: false }, 'an unparsable chunk')
})

t.test('Retry-After: retry-after-ms, seconds, an HTTP date; junk is ignored', async (t) => {
  const now = Date.parse('2026-01-01T00:00:00Z')
  const wait = (headers: Record<string, string>) => retryAfterMs(new Headers(headers), now)
  t.equal(wait({ 'retry-after': '3' }), 3000)
  t.equal(wait({ 'retry-after': '1.5' }), 1500)
  t.equal(wait({ 'retry-after-ms': '250', 'retry-after': '3' }), 250, 'OpenAI\'s finer header first')
  t.equal(wait({ 'retry-after': 'Thu, 01 Jan 2026 00:00:09 GMT' }), 9000)
  t.equal(wait({ 'retry-after': 'Wed, 31 Dec 2025 23:59:00 GMT' }), 0, 'a date in the past: no wait')
  t.equal(wait({ 'retry-after': 'soon' }), undefined)
  t.equal(wait({ 'retry-after': '-3' }), undefined)
  t.equal(wait({}), undefined)
  t.equal(retryAfterMs(undefined), undefined)
})

t.test('only upstream-health failures count toward the circuit', async (t) => {
  for (const status of [429, 500, 502, 503, 504]) t.equal(isUpstreamHealthFailure({ code: '', status, retryable: true, perDayQuota: false }), true, `${status}`)
  for (const status of [400, 401, 403, 404, 413, 422]) t.equal(isUpstreamHealthFailure({ code: '', status, retryable: false, perDayQuota: false }), false, `${status}`)
  t.equal(isUpstreamHealthFailure(TIMEOUT), true, 'timeout')
  t.equal(isUpstreamHealthFailure(classifyOpenAiError(new TypeError('fetch failed'))), true, 'network')
})

t.test('backoff doubles from the base with equal jitter', async (t) => {
  t.equal(backoffDelay(0, 1000, () => 0), 500, 'first retry: at least half of the base')
  t.equal(backoffDelay(0, 1000, () => 1), 1000, 'first retry: at most the base')
  t.equal(backoffDelay(1, 1000, () => 0), 1000)
  t.equal(backoffDelay(1, 1000, () => 1), 2000)
  t.equal(backoffDelay(2, 1000, () => 0.5), 3000, 'third retry: between 2000 and 4000')
  for (let i = 0; i < 200; i++) {
    const wait = backoffDelay(3, 100, Math.random)
    if (wait < 400 || wait > 800) t.fail(`wait ${wait} outside [400, 800]`)
  }
})

t.test('retry decisions', async (t) => {
  const policy = { maxAttempts: 3, baseMs: 1000, timeoutMs: 20000, random: () => 0 }
  const retryable = { code: 'HTTP_503', status: 503, retryable: true, perDayQuota: false }
  t.equal(nextRetryDelay(retryable, 1, policy), 500)
  t.equal(nextRetryDelay(retryable, 2, policy), 1000)
  t.equal(nextRetryDelay(retryable, 3, policy), undefined, 'AI_MAX_ATTEMPTS reached')
  t.equal(nextRetryDelay({ ...retryable, retryable: false }, 1, policy), undefined, 'not retryable')
  t.equal(nextRetryDelay({ ...retryable, retryDelayMs: 7000 }, 1, policy), 7000, 'RetryInfo shorter than the timeout is honoured')
  t.equal(nextRetryDelay({ ...retryable, retryDelayMs: 20000 }, 1, policy), undefined, 'RetryInfo as long as the timeout ends the retries')
  t.equal(nextRetryDelay({ ...retryable, retryDelayMs: 1000 }, 3, policy), undefined, 'attempts still bound RetryInfo waits')
})

t.test('circuit breaker: 5 consecutive failures open it for 30 s, then one trial decides', async (t) => {
  let now = 0
  const breaker = createCircuitBreaker({ now: () => now })
  for (let i = 0; i < 4; i++) breaker.failure()
  breaker.success()
  for (let i = 0; i < 4; i++) breaker.failure()
  t.equal(breaker.state(), 'closed', 'a success resets the count')
  breaker.failure()
  t.equal(breaker.state(), 'open')
  t.equal(breaker.allow(), false)
  t.equal(breaker.remainingMs(), 30000)
  now = 29999
  t.equal(breaker.allow(), false)
  t.equal(breaker.remainingMs(), 1)
  now = 30000
  t.equal(breaker.state(), 'half-open')
  t.equal(breaker.remainingMs(), 0)
  t.equal(breaker.allow(), true, 'the trial')
  t.equal(breaker.allow(), false, 'only one trial at a time')
  breaker.failure()
  t.equal(breaker.state(), 'open', 'a failed trial opens it again')
  t.equal(breaker.remainingMs(), 30000)
  now = 60000
  t.equal(breaker.allow(), true)
  breaker.abandon()
  t.equal(breaker.allow(), true, 'an abandoned trial (client gone) lets the next request try')
  breaker.success()
  t.equal(breaker.state(), 'closed', 'a successful trial closes it')
  t.equal(breaker.allow(), true)
  breaker.openFor(900_000)
  t.equal(breaker.state(), 'open', 'opened at once (per-day quota)')
  t.equal(breaker.remainingMs(), 900_000)
})

t.test('limiter: at most max at once, a bounded queue, a bounded wait', async (t) => {
  const limiter = createConcurrencyLimiter({ max: 2, maxQueue: 1, maxWaitMs: 100 })
  const first = await limiter.acquire()
  const second = await limiter.acquire()
  t.equal(limiter.active, 2)
  const queued = limiter.acquire()
  t.equal(limiter.waiting, 1)
  await t.rejects(limiter.acquire(), new LimiterRejection('QUEUE_FULL'), 'beyond the queue: refused at once')
  first()
  first()
  const third = await queued
  t.equal(limiter.active, 2, 'the slot passed to the waiter; a second release is ignored')
  t.equal(limiter.waiting, 0)

  const started = Date.now()
  await t.rejects(limiter.acquire(), new LimiterRejection('QUEUE_TIMEOUT'), 'waited too long')
  t.ok(Date.now() - started >= 95, 'after the bounded wait')
  t.equal(limiter.waiting, 0, 'the timed-out waiter left the queue')

  const controller = new AbortController()
  const abandoned = limiter.acquire(controller.signal)
  controller.abort(new Error('client gone'))
  await t.rejects(abandoned, new Error('client gone'))
  t.equal(limiter.waiting, 0, 'an aborted waiter left the queue')

  second()
  third()
  t.equal(limiter.active, 0)
})
