import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { Errors } from '../src/errors.js'
import { ROOT } from './helper.js'

/* What README.md promises users must match what the server does. */

/** SPEC §3: the codes of WebSocket `error` events. */
const WS_ERROR_CODES = ['INVALID_JSON', 'INVALID_MESSAGE', 'UNKNOWN_EVENT', 'NOT_IN_SESSION', 'SESSION_FULL',
  'TOO_MANY_SESSIONS', 'RATE_LIMITED', 'STORE_UNAVAILABLE', 'INTERNAL_ERROR']

t.test('the README lists exactly the WebSocket error codes the server sends', async (t) => {
  const readme = await readFile(join(ROOT, 'README.md'), 'utf8')
  const section = readme.split('\n## ').find((part) => part.startsWith('Multiplayer WebSocket protocol')) ?? ''
  // The bullet, over however many lines it is wrapped.
  const bullet = section.split('\n- ').find((item) => item.startsWith('Error codes')) ?? ''
  t.same([...bullet.matchAll(/`([A-Z_]+)`/g)].map((match) => match[1]).sort(), [...WS_ERROR_CODES].sort(), bullet)
  for (const code of WS_ERROR_CODES) t.ok(code in Errors, `${code} is one of our coded errors`)
})
