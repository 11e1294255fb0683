import fp from 'fastify-plugin'
import { createAiService, type AiService } from '../services/ai/service.js'

declare module 'fastify' {
  interface FastifyInstance { ai: AiService }
}

const IDLE_WAIT_MS = 1000

/**
 * The AI companion service (SPEC §4), configured from the environment. Each
 * AI request's outcome becomes one ai-requests.log line (never any text) and
 * a metrics sample. Without GEMINI_API_KEY it runs offline, said loudly.
 */
export default fp(async (app) => {
  const config = app.config
  const aiLog = app.logFiles['ai-requests']
  const { metrics } = app

  const ai = createAiService({
    apiKey: config.GEMINI_API_KEY,
    baseUrl: config.GEMINI_BASE_URL,
    model: config.GEMINI_MODEL,
    timeoutMs: config.AI_TIMEOUT_MS,
    maxAttempts: config.AI_MAX_ATTEMPTS,
    retryBaseMs: config.AI_RETRY_BASE_MS,
    historyMessages: config.AI_HISTORY_MESSAGES,
    maxConcurrency: config.AI_MAX_CONCURRENCY,
    onOutcome: (outcome) => {
      aiLog.info(outcome, 'ai request')
      metrics.recordAi(outcome)
    }
  })

  if (config.GEMINI_API_KEY === undefined) {
    app.log.warn('GEMINI_API_KEY is not set: the AI companion runs in OFFLINE MODE and answers with canned replies. Set GEMINI_API_KEY to use Gemini.')
  }

  app.decorate('ai', ai)

  // Calls cut off at shutdown (connections closed after SHUTDOWN_TIMEOUT_MS)
  // are aborted and report a moment later; this hook runs before the logging
  // plugin's (onClose runs in reverse registration order), so their
  // ai-requests.log lines are written before the files close. Bounded in case
  // the SDK hangs, well within server.ts's margin after the drain.
  app.addHook('onClose', async () => {
    if (!await ai.idle(IDLE_WAIT_MS)) app.log.warn({ waitedMs: IDLE_WAIT_MS }, 'AI requests still in flight at shutdown: their ai-requests.log lines may be lost')
  })
}, { name: 'ai', dependencies: ['config', 'logging', 'metrics'] })
