import t from 'tap'
import { createMessageRate, RATE_ABUSIVE, RATE_LIMITED, RATE_OK, type RateWindow } from '../src/services/chat/limits.js'

/* The per-connection message window (SPEC §3), and what a history sent on request is charged. */

t.test('a charge uses up the window but never, by itself, makes the next frame abusive', async (t) => {
  let now = 1000
  const rate = createMessageRate({ rate: 3, windowMs: 10_000, now: () => now })
  const window: RateWindow = { windowStart: 0, count: 0 }
  t.equal(rate.check(window), RATE_OK)
  rate.charge(window, 50) // a re-join's 500 events: far past twice the rate
  t.equal(window.count, 3, 'capped at the rate')
  t.equal(rate.check(window), RATE_LIMITED, 'the next frame is refused, not the connection cut')
  t.equal(rate.check(window), RATE_LIMITED)
  t.equal(rate.check(window), RATE_LIMITED)
  t.equal(rate.check(window), RATE_ABUSIVE, 'frames the client sends still can')

  now += 10_000
  rate.charge(window, 2)
  t.same(window, { windowStart: 11_000, count: 2 }, 'a charge in a new window starts it')
  t.equal(rate.check(window), RATE_OK)
  t.equal(rate.check(window), RATE_LIMITED)
})
