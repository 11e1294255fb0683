/*
 * Calls made in one tick (before process.nextTick callbacks run) go to
 * Redis as one command, each caller still getting its own result. Under
 * fan-out load each recorded message was one script call, and a command's
 * fixed cost in ioredis (its object, promise, timeout timer, encoding and
 * reply dispatch) was most of the sending instance's time. Hand-written:
 * ioredis' autopipelining still sends one command per call, and DataLoader
 * (the usual per-tick batcher) caches by key, which a write must not.
 */

interface Waiting<I, O> {
  item: I
  resolve: (result: O) => void
  reject: (error: unknown) => void
}

/**
 * `run` gets the items of one tick in call order (at most `maxSize`, so one
 * script never holds Redis for long) and answers one result per item; when
 * it fails, every call of its batch fails with its error.
 */
export function batchPerTick<I, O> (run: (items: I[]) => Promise<O[]>, maxSize: number): (item: I) => Promise<O> {
  let pending: Array<Waiting<I, O>> = []

  /** Settles every call of the batch; never rejects. */
  async function flush (batch: Array<Waiting<I, O>>): Promise<void> {
    try {
      const results = await run(batch.map((waiting) => waiting.item))
      for (let i = 0; i < batch.length; i++) batch[i].resolve(results[i])
    } catch (error) {
      for (const waiting of batch) waiting.reject(error)
    }
  }

  function flushPending (): void {
    // Nothing left when the batch filled up and was sent before the tick ended.
    if (pending.length === 0) return
    const batch = pending
    pending = []
    flush(batch).catch(() => undefined)
  }

  return (item) => new Promise<O>((resolve, reject) => {
    if (pending.length === 0) process.nextTick(flushPending)
    pending.push({ item, resolve, reject })
    if (pending.length === maxSize) flushPending()
  })
}
