import { readFileSync } from 'node:fs'
import { setImmediate as nextTurn } from 'node:timers/promises'
import t from 'tap'
import { openRollingFile } from '../src/services/logs/rolling-file.js'
import { batchPerTurn } from '../src/services/logs/turn-batch.js'
import { tempDir } from './helper.js'

/* Log lines of one event-loop turn reach their file in one write; flushing first writes out what is pending. */

t.test('lines written in one turn are in the file after it, all together; flushSync and end write out what is pending', async (t) => {
  const folder = await tempDir(t)
  const rolling = await openRollingFile({ folder, name: 'batched', maxBytes: 1024 * 1024 })
  const file = batchPerTurn(rolling)
  // Read synchronously: an asynchronous read would let the turn end first.
  const content = () => readFileSync(rolling.file, 'utf8')

  for (const n of [1, 2, 3]) t.equal(file.write(`{"n":${n}}\n`), true)
  t.equal(content(), '', 'nothing written during the turn')
  await nextTurn()
  t.equal(content(), '{"n":1}\n{"n":2}\n{"n":3}\n')

  file.write('{"n":4}\n')
  file.flushSync()
  t.equal(content(), '{"n":1}\n{"n":2}\n{"n":3}\n{"n":4}\n', 'flushSync (process exit) writes the pending line at once')

  file.write('{"n":5}\n')
  await file.end()
  t.equal(content(), '{"n":1}\n{"n":2}\n{"n":3}\n{"n":4}\n{"n":5}\n', 'and so does end (close)')
})
