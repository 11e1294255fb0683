import t from 'tap'
import { aiEnv, startFakeGemini } from './fake-gemini.js'
import { startServer } from './helper.js'
import { postJson } from './http-client.js'
import { TestClient } from './ws-client.js'

/*
 * Issue 15, item 5: a lone surrogate ("\udfff" in JSON) is no text. It used
 * to pass validation and reach the model, whose 400 counted against the
 * circuit. Every user text field refuses it with a 400 (or a WebSocket
 * error) naming the field; surrogate pairs (emoji) are text as ever.
 */

const companionConfig = { name: 'Ava', personality: 'warm, playful', identity: 'a long-distance partner', gender: 'female', role: 'girlfriend' }
const CONTROL = 'must be text without control characters (tab, CR and LF are allowed)'
const NAME = 'must be text on one line, without control characters'

t.test('HTTP: every companion text field refuses a lone surrogate, before any AI call or session', async (t) => {
  const fake = await startFakeGemini(t)
  const { app, url } = await startServer(t, aiEnv(fake))
  // JSON.stringify writes a lone surrogate as the escape "\udfff", as an attacker's client would.
  t.equal(JSON.stringify({ message: 'a\udfffb' }), '{"message":"a\\udfffb"}')
  const cases: Array<[string, object, string]> = [
    ['chat', { message: 'hi \udfff', companionConfig }, `message ${CONTROL}`],
    ['chat', { message: '\ud83d', companionConfig }, `message ${CONTROL}`],
    ['chat', { message: 'reversed \udc9e\ud83d pair', companionConfig }, `message ${CONTROL}`],
    ['initialize', { companionConfig: { ...companionConfig, name: 'Ava\udfff' } }, `companionConfig.name ${NAME}`],
    ['initialize', { companionConfig: { ...companionConfig, personality: '\udfff' } }, `companionConfig.personality ${CONTROL}`],
    ['initialize', { companionConfig: { ...companionConfig, identity: 'x\ud800' } }, `companionConfig.identity ${CONTROL}`],
    ['initialize', { companionConfig: { ...companionConfig, gender: '\udbff' } }, `companionConfig.gender ${CONTROL}`],
    ['initialize', { companionConfig: { ...companionConfig, role: 'partner\udc00' } }, `companionConfig.role ${CONTROL}`],
    ['chat', { message: 'hi', companionConfig: { ...companionConfig, role: '\udfff' } }, `companionConfig.role ${CONTROL}`]
  ]
  for (const [route, body, error] of cases) {
    const response = await postJson(`${url}/api/ai-companion/${route}`, body)
    t.equal(response.status, 400, error)
    t.same(await response.json(), { error, code: 'VALIDATION_ERROR', statusCode: 400 })
  }
  t.equal(fake.requests.length, 0, 'nothing reached the model')
  t.same(await app.sessions.counts(), { companion: 0, multiplayer: 0 }, 'nothing stored')

  const pair = await postJson(`${url}/api/ai-companion/chat`, { message: '💞 \ud83d\udc9e', companionConfig: { ...companionConfig, name: 'Ava 💞' } })
  t.equal(pair.status, 200, 'surrogate pairs are characters')
  t.same(fake.requests[0].body.contents, [{ role: 'user', parts: [{ text: '💞 💞' }] }])
})

t.test('WebSocket: every text field refuses a lone surrogate with an error naming it', async (t) => {
  const { url } = await startServer(t)
  const a = await TestClient.connect(t, url)
  const b = await TestClient.connect(t, url)
  await a.join('room')
  await b.join('room')
  await a.next() // b joined
  const refused = async (event: string, data: object, message: string) => {
    a.send(event, data, 'x')
    t.same(await a.next(), { event: 'error', data: { message, code: 'INVALID_MESSAGE', id: 'x' } }, message)
  }
  await refused('chat message', { sessionId: 'room', text: 'hi \udfff' },
    'data.text must be a string of 1–2000 characters without control characters (tab, CR and LF are allowed)')
  await refused('ask-question', { sessionId: 'room', question: '\ud83d?' },
    'data.question must be a string of 1–1000 characters without control characters (tab, CR and LF are allowed)')
  await refused('question-answer', { sessionId: 'room', answer: 'yes\udc00' },
    'data.answer must be a string of 1–2000 characters without control characters (tab, CR and LF are allowed)')
  await refused('question-answer', { sessionId: 'room', question: '\udfff', answer: 'yes' },
    'data.question must be a string of 0–1000 characters without control characters (tab, CR and LF are allowed)')
  await refused('join-session', { sessionId: 'other', playerName: 'Bo\udfff' },
    'data.playerName must be a string of 1–50 characters on one line, without control characters')
  t.equal(b.pending, 0, 'nothing was delivered')

  a.send('chat message', { sessionId: 'room', text: 'love \ud83d\udc9e' }, 'ok')
  t.same(await a.next(), { event: 'ack', data: { id: 'ok' } })
  t.equal((await b.next()).data.text, 'love 💞', 'a surrogate pair is delivered')
})
