/**
 * Whether this instance is draining. Set the moment a shutdown signal
 * arrives, before the server stops listening, so readiness turns 503 at once.
 */
export function createLifecycle () {
  let shuttingDown = false
  return {
    get shuttingDown () { return shuttingDown },
    beginShutdown () { shuttingDown = true }
  }
}

export type Lifecycle = ReturnType<typeof createLifecycle>
