import t from 'tap'
import { batchPerTick } from '../src/services/redis/tick-batch.js'

/* Calls of one tick reach `run` together, in order, each answered for itself; a failure fails its own batch only. */

t.test('the calls of one tick are one batch in call order; each gets its own result; the next tick starts another', async (t) => {
  const batches: number[][] = []
  const double = batchPerTick(async (items: number[]) => {
    batches.push(items)
    return items.map((item) => item * 2)
  }, 100)

  const first = [double(1), double(2), double(3)]
  t.same(batches, [], 'nothing sent before the tick ends')
  t.same(await Promise.all(first), [2, 4, 6])
  t.same(await double(4), 8)
  t.same(batches, [[1, 2, 3], [4]])
})

t.test('a batch that fails rejects each of its calls with its error, and only them', async (t) => {
  const broken = new Error('Redis went away')
  let calls = 0
  const answer = batchPerTick(async (items: string[]) => {
    if (++calls === 1) throw broken
    return items
  }, 100)

  const failed = await Promise.allSettled([answer('a'), answer('b')])
  t.same(failed, [{ status: 'rejected', reason: broken }, { status: 'rejected', reason: broken }])
  t.same(await Promise.all([answer('c'), answer('d')]), ['c', 'd'], 'the next batch is sent as usual')
})

t.test('a batch is sent as soon as it holds maxSize calls; the rest of the tick goes in the next one', async (t) => {
  const batches: number[][] = []
  const echo = batchPerTick(async (items: number[]) => {
    batches.push(items)
    return items
  }, 3)

  const results = Array.from({ length: 7 }, (_, i) => echo(i))
  t.same(batches, [[0, 1, 2], [3, 4, 5]], 'the full ones at once')
  t.same(await Promise.all(results), [0, 1, 2, 3, 4, 5, 6])
  t.same(batches, [[0, 1, 2], [3, 4, 5], [6]], 'the remainder when the tick ends; no empty batch')
})
