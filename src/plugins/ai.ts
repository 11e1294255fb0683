import fp from 'fastify-plugin'
import { aiProvider, type Config } from '../config.js'
import type { FastifyBaseLogger } from 'fastify'
import type { ModelProvider } from '../services/ai/provider.js'
import { createOfflineProvider } from '../services/ai/providers/offline.js'
import { createAiService, type AiService } from '../services/ai/service.js'

declare module 'fastify' {
  interface FastifyInstance { ai: AiService }
}

const IDLE_WAIT_MS = 1000

/**
 * The provider AI_PROVIDER names or the configuration implies (SPEC §4.9);
 * config.ts has checked it is complete. Only the SDK in use is loaded: each
 * takes ~0.5–1 s to import, which every start (and every test process) paid.
 */
async function createProvider (config: Config, log: FastifyBaseLogger): Promise<ModelProvider> {
  const generation = { maxOutputTokens: config.AI_MAX_OUTPUT_TOKENS, temperature: config.AI_TEMPERATURE }
  switch (aiProvider(config)) {
    case 'gemini': {
      const { createGeminiProvider, thinkingBudget } = await import('../services/ai/providers/gemini.js')
      const budget = thinkingBudget(config.GEMINI_MODEL, config.GEMINI_THINKING_BUDGET)
      if (budget !== config.GEMINI_THINKING_BUDGET) {
        log.info({ model: config.GEMINI_MODEL, thinkingBudget: budget },
          `${config.GEMINI_MODEL} cannot turn thinking off: GEMINI_THINKING_BUDGET 0 becomes ${budget}, its smallest budget`)
      }
      return createGeminiProvider({
        apiKey: config.GEMINI_API_KEY ?? '',
        baseUrl: config.GEMINI_BASE_URL,
        model: config.GEMINI_MODEL,
        thinkingBudget: config.GEMINI_THINKING_BUDGET,
        ...generation
      })
    }
    case 'openai': {
      const { createOpenAiProvider } = await import('../services/ai/providers/openai.js')
      return createOpenAiProvider({
        baseUrl: config.OPENAI_BASE_URL ?? '',
        apiKey: config.OPENAI_API_KEY,
        model: config.OPENAI_MODEL ?? '',
        ...generation
      })
    }
    case 'offline':
      return createOfflineProvider(config.GEMINI_MODEL)
  }
}

/**
 * The AI companion service (SPEC §4), configured from the environment. Each
 * AI request's outcome becomes one ai-requests.log line (never any text) and
 * a metrics sample. Without a provider configured it runs offline, said loudly.
 */
export default fp(async (app) => {
  const config = app.config
  const aiLog = app.logFiles['ai-requests']
  const { metrics } = app
  const provider = await createProvider(config, app.log)

  const ai = createAiService({
    provider,
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

  if (provider.name === 'offline') {
    app.log.warn('No AI provider is configured: the AI companion runs in OFFLINE MODE and answers with canned replies. Set GEMINI_API_KEY to use Gemini, or OPENAI_BASE_URL and OPENAI_MODEL for an OpenAI-compatible server (README "AI providers").')
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
