import { setTimeout as sleep } from 'node:timers/promises'
import closeWithGrace from 'close-with-grace'
import { pino } from 'pino'
import { buildApp } from './app.js'
import { ConfigError, loadConfig, readEnvironment, type Config } from './config.js'
import { baseLoggerOptions } from './services/logs/log-files.js'

/*
 * The process: configuration from the environment, the stdout logger,
 * listening, signals and exit codes. Everything else is in app.ts.
 */

function configOrExit (): Config {
  try {
    return loadConfig(readEnvironment())
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error
    process.stderr.write(`${error.message}\n`)
    process.exit(1)
  }
}

const config = configOrExit()
const logger = pino({ ...baseLoggerOptions, level: config.LOG_LEVEL })
const app = await buildApp(config, logger)

// After SHUTDOWN_TIMEOUT_MS of draining, remaining connections are cut; the
// grace delay is the last resort if even closing hangs.
const CLOSE_MARGIN_MS = 2000

closeWithGrace({
  delay: config.SHUTDOWN_TIMEOUT_MS + CLOSE_MARGIN_MS,
  logger: { error: (message: unknown) => logger.error(message) }
}, async ({ signal, err }) => {
  if (err !== undefined) {
    // A process-level fault: record it durably, then let the supervisor
    // restart a clean process (exit 1) rather than run on in an unknown state.
    app.logFiles.errors.fatal({ err }, 'process fault')
    logger.fatal({ errType: err.name, errMessage: err.message }, 'process fault, exiting')
    await new Promise<void>((resolve) => app.logFiles.errors.flush(() => resolve()))
    return
  }
  logger.info({ signal }, 'shutting down: draining in-flight requests')
  app.lifecycle.beginShutdown()
  const closing = app.close()
  const drained = await Promise.race([closing.then(() => true), sleep(config.SHUTDOWN_TIMEOUT_MS, false)])
  if (!drained) {
    logger.warn({ timeoutMs: config.SHUTDOWN_TIMEOUT_MS }, 'drain timed out: closing remaining connections')
    app.server.closeAllConnections()
    await closing
  }
  logger.info('shutdown complete')
})

await app.listen({ port: config.PORT, host: config.HOST })
const address = app.server.address()
logger.info({ port: typeof address === 'object' && address !== null ? address.port : config.PORT }, 'ready')
