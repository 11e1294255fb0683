import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import fastifyStatic from '@fastify/static'
import t from 'tap'
import { buildTestApp, tempDir } from './helper.js'

/*
 * package.json `overrides` pin two transitive dependencies to releases that
 * support Node 20 (the newest want Node 22 and made `npm install` warn
 * EBADENGINE): cookie@1 under light-my-request (inject's `cookies`) and
 * content-disposition@2 under @fastify/static (downloads). These prove the
 * paths using them still work.
 */

t.test('inject encodes `cookies` into the Cookie header (light-my-request → cookie)', async (t) => {
  const app = await buildTestApp(t, {}, (app) => {
    app.get('/test/cookie', { config: { rateLimit: false } }, async (request) => ({ cookie: request.headers.cookie ?? null }))
  })
  const response = await app.inject({ url: '/test/cookie', cookies: { sid: 'a b;c', theme: 'dark' } })
  t.equal(response.statusCode, 200)
  t.same(response.json(), { cookie: 'sid=a%20b%3Bc; theme=dark' })
})

t.test('a download names its file in Content-Disposition (@fastify/static → content-disposition)', async (t) => {
  const root = await tempDir(t)
  await writeFile(join(root, 'report.txt'), 'hello\n')
  const app = await buildTestApp(t, {}, (app) => {
    app.register(async (scope) => {
      await scope.register(fastifyStatic, { root, serve: false })
      scope.get('/test/download', { config: { rateLimit: false } }, (_request, reply) => reply.download('report.txt', 'Bericht für dich.txt'))
    })
  })
  const response = await app.inject({ url: '/test/download' })
  t.equal(response.statusCode, 200)
  t.equal(response.body, 'hello\n')
  t.equal(response.headers['content-disposition'], 'attachment; filename="Bericht f?r dich.txt"; filename*=UTF-8\'\'Bericht%20f%C3%BCr%20dich.txt')
})

t.test('the Swagger UI\'s static files are served (@fastify/static)', async (t) => {
  const app = await buildTestApp(t)
  const response = await app.inject({ url: '/docs/static/swagger-ui.css' })
  t.equal(response.statusCode, 200)
  t.match(response.headers['content-type'], /^text\/css/)
  t.ok(response.body.length > 1000)
})
