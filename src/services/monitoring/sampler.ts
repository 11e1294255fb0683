import { monitorEventLoopDelay, performance } from 'node:perf_hooks'
import { getHeapStatistics } from 'node:v8'
import type { ResourceFigures } from './metrics.js'

/*
 * Samples memory and event-loop delay once per interval, so reading them on
 * every probe costs nothing. Hand-written rather than @fastify/under-pressure
 * (which did this before): its sampling timer calls process.memoryUsage()
 * without a catch, and that call opens /proc/self/stat — with every file
 * descriptor taken (an idle-connection flood) it throws EMFILE, an uncaught
 * exception that ended the process. Here a failed reading keeps the last
 * figures and is reported, never thrown.
 */

export interface ResourceSamplerOptions {
  intervalMs: number
  /** A reading failed (EMFILE, …); called once per run of failures, not per sample. */
  onError: (error: unknown) => void
}

/** Histogram resolution; its own timer, so it is subtracted from the mean delay. */
const RESOLUTION_MS = 10

/**
 * Period of the stall watch. The longest delay is not the histogram's max:
 * histogram.reset() forgets when it last ticked, so the first delay after
 * each sample is never recorded, and a loop blocked for longer than a
 * sample interval, with few turns between blocks, showed no stall at all.
 */
const WATCH_MS = 100

export function createResourceSampler ({ intervalMs, onError }: ResourceSamplerOptions) {
  const histogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS })
  histogram.enable()
  let failing = false
  const figures: ResourceFigures = { rssBytes: 0, heapUsedBytes: getHeapStatistics().used_heap_size, eventLoopDelayMs: 0, eventLoopLongestDelayMs: 0 }

  function readMemory (): void {
    try {
      const { rss, heapUsed } = process.memoryUsage()
      figures.rssBytes = rss
      figures.heapUsedBytes = heapUsed
      failing = false
    } catch (error) {
      // The heap figure needs no file; RSS keeps its last value.
      figures.heapUsedBytes = getHeapStatistics().used_heap_size
      if (!failing) onError(error)
      failing = true
    }
  }

  let lastSample = performance.now()
  let lastTurn = lastSample
  let longestGap = 0

  /** A turn of the loop at `at`: the gap since the last one, past the watch's period, is a delay. */
  function turn (at: number): void {
    longestGap = Math.max(longestGap, at - lastTurn - WATCH_MS)
    lastTurn = at
  }

  function sample (): void {
    const at = performance.now()
    // No histogram tick in the interval (NaN mean; seen right after startup):
    // this timer's own lateness is then the delay.
    const mean = histogram.mean / 1e6
    const late = Math.max(0, at - lastSample - intervalMs)
    figures.eventLoopDelayMs = Number.isNaN(mean) ? late : Math.max(0, mean - RESOLUTION_MS)
    // This sample is a turn too: a block that ended just now counts in this sample, not the next.
    turn(at)
    figures.eventLoopLongestDelayMs = longestGap
    longestGap = 0
    lastSample = at
    histogram.reset()
    readMemory()
  }

  readMemory()
  const timer = setInterval(sample, intervalMs).unref()
  const watch = setInterval(() => { turn(performance.now()) }, WATCH_MS).unref()

  return {
    /** The latest sampled figures (one object, updated in place). */
    figures: (): Readonly<ResourceFigures> => figures,
    close (): void {
      clearInterval(timer)
      clearInterval(watch)
      histogram.disable()
    }
  }
}
