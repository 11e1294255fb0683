import { dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import fastifyStatic from '@fastify/static'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { securityHeaders } from '../services/http/security-headers.js'

// Outside src/, so `npm start` (dist/) serves the same files: both
// src/routes/ and dist/routes/ are two levels below the project folder.
const PAGE_DIR = fileURLToPath(new URL('../../public/dashboard/', import.meta.url))
// The chart library comes from its npm package, served by us (no CDN, SPEC §8.1).
const UPLOT_DIR = dirname(fileURLToPath(import.meta.resolve('uplot')))
const UPLOT_FILES = ['uPlot.iife.min.js', 'uPlot.min.css']

/**
 * GET /dashboard (SPEC §8.1): a static page, its script and styles, and
 * uPlot. The page holds no figures: it reads them from /api/stats/history
 * and /api/stats (which STATS_TOKEN protects), so it needs no token itself.
 * Opening it is an operator's look, not user traffic: kept out of the
 * request metrics, like the stats reads it makes. Still rate-limited.
 * @see https://github.com/fastify/fastify-static
 */
const dashboard: FastifyPluginAsyncTypebox = async (app) => {
  // The page's own CSP is the service's minus `upgrade-insecure-requests`.
  // Each instance shows its own figures, so an operator opens one instance
  // by its address, often plain HTTP inside the network; there that
  // directive makes the browser fetch the page's script and styles over
  // HTTPS, and the page stays blank. Every source rule stays as it is (the
  // page loads only from 'self'; over HTTPS, browsers block mixed content anyway).
  const pageCsp = securityHeaders(app.config)
    .find(([name]) => name === 'content-security-policy')?.[1]
    .split(';').filter((directive) => directive.trim() !== 'upgrade-insecure-requests').join(';')
  if (pageCsp === undefined) throw new Error('the service sets no Content-Security-Policy for the dashboard to follow')

  // Encapsulated: marks this plugin's routes only, @fastify/static's included.
  app.addHook('onRoute', (route) => { route.config = { ...route.config, metrics: false } })

  // wildcard: false → one route per file found at startup; any other path is
  // an ordinary 404. index: false → the page is served by the route below.
  await app.register(fastifyStatic, { root: PAGE_DIR, prefix: '/dashboard/', wildcard: false, index: false })

  app.get('/dashboard', {
    schema: {
      summary: 'Live monitoring page (charts over the last hour, health, alerts)',
      response: { 200: { description: 'HTML page', content: { 'text/html': { schema: Type.String() } } } }
    }
  }, async (_request, reply) => reply.header('content-security-policy', pageCsp).sendFile('index.html'))

  for (const file of UPLOT_FILES) {
    app.get(`/dashboard/vendor/${file}`, { schema: { hide: true } }, async (_request, reply) => reply.sendFile(file, UPLOT_DIR))
  }
}

export default dashboard
