import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { chromium, type BrowserContext, type Page } from 'playwright-core'
import t from 'tap'
import { VERSION } from '../src/version.js'
import { aiEnv, startFakeGemini } from './fake-gemini.js'
import { ROOT, startServer, tempDir, until } from './helper.js'
import { TestClient } from './ws-client.js'

/*
 * GET /dashboard in a real browser: Debian's Chromium driven by
 * playwright-core (never a downloaded browser), against a real server. The
 * screenshots land in test-results/ (gitignored) for a person to look at.
 */

type Test = Parameters<typeof tempDir>[0]

const CHROMIUM = '/usr/bin/chromium'
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'
]
const SCREENSHOTS = join(ROOT, 'test-results')
const PROBE = join(ROOT, 'test/fixtures/dashboard-probe.js')
const CHART_IDS = ['chart-requests', 'chart-latency', 'chart-ai', 'chart-load', 'chart-memory', 'chart-event-loop']

/** Figures sampled fast, limits out of the way (the page polls every 2 s). */
const dashboardEnv = { STATS_SAMPLE_INTERVAL_MS: 200, RATE_LIMIT_MAX: 100000, SLOW_DOWN_AFTER: 100000 }

/** A fresh browser profile per test, closed with it. */
async function openBrowser (t: Test, extraArgs: string[] = []): Promise<BrowserContext> {
  const context = await chromium.launchPersistentContext(await tempDir(t, 'lc-chromium-'), {
    executablePath: CHROMIUM,
    args: [...CHROMIUM_ARGS, ...extraArgs],
    headless: true,
    viewport: { width: 1280, height: 900 }
  })
  t.teardown(() => context.close())
  return context
}

/**
 * A page that records what must not happen: console errors and warnings,
 * uncaught errors, CSP violations (seen by the probe's listener, installed
 * before any of the page's scripts), and every URL it requests.
 * In-page code is plain JavaScript (the probe) called by name: a function
 * passed from here would carry the TypeScript compiler's helpers along.
 */
async function watchedPage (context: BrowserContext) {
  const page = context.pages()[0] ?? await context.newPage()
  const problems: string[] = []
  const requests: Array<{ url: string, authorization: string | undefined }> = []
  page.on('console', (message) => {
    if (message.type() === 'error' || message.type() === 'warning') problems.push(`console ${message.type()}: ${message.text()}`)
  })
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`))
  page.on('request', (request) => requests.push({ url: request.url(), authorization: request.headers().authorization }))
  await page.addInitScript({ path: PROBE })
  const cspViolations = () => page.evaluate('window.cspViolations') as Promise<string[]>
  return { page, problems, requests, cspViolations }
}

const seriesPixels = (page: Page) => page.evaluate(`window.seriesPixels(${JSON.stringify(CHART_IDS)})`) as Promise<Record<string, number>>

async function waitForCharts (page: Page, what: string): Promise<Record<string, number>> {
  let counts: Record<string, number> = {}
  const deadline = Date.now() + 15_000
  for (;;) {
    counts = await seriesPixels(page)
    if (Object.values(counts).every((count) => count > 20)) return counts
    if (Date.now() > deadline) throw new Error(`charts not drawn (${what}): ${JSON.stringify(counts)}`)
    await page.waitForTimeout(200)
  }
}

const text = (page: Page, id: string) => page.locator(`#${id}`).innerText()

async function traffic (url: string, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const response = await fetch(`${url}/${i % 5 === 0 ? 'no-such-page' : ''}`)
    await response.arrayBuffer()
  }
}

async function screenshot (page: Page, name: string): Promise<void> {
  await mkdir(SCREENSHOTS, { recursive: true })
  await page.screenshot({ path: join(SCREENSHOTS, name), fullPage: true })
}

t.test('the page, its script, styles and uPlot come from the service; none of it is counted as traffic', async (t) => {
  const { url } = await startServer(t, dashboardEnv)
  const page = await fetch(`${url}/dashboard`)
  t.equal(page.status, 200)
  t.match(page.headers.get('content-type'), /^text\/html/)
  const serviceCsp = (await fetch(`${url}/health/live`)).headers.get('content-security-policy')!
  t.match(serviceCsp, /;upgrade-insecure-requests$/)
  t.equal(page.headers.get('content-security-policy'), serviceCsp.replace(';upgrade-insecure-requests', ''),
    'under the service\'s CSP, less the upgrade of its own requests to HTTPS')
  const html = await page.text()
  t.notMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/, 'no inline script')
  t.notMatch(html, /\son[a-z]+=|\sstyle=/i, 'no inline handlers or style attributes')
  t.notMatch(html, /https?:\/\//, 'nothing from another origin')

  for (const [path, type] of [
    ['/dashboard/dashboard.js', /^text\/javascript|^application\/javascript/],
    ['/dashboard/dashboard.css', /^text\/css/],
    ['/dashboard/vendor/uPlot.iife.min.js', /^text\/javascript|^application\/javascript/],
    ['/dashboard/vendor/uPlot.min.css', /^text\/css/]
  ] as const) {
    const response = await fetch(`${url}${path}`)
    t.equal(response.status, 200, path)
    t.match(response.headers.get('content-type'), type, path)
    await response.arrayBuffer()
  }
  // Only the files the page uses, not the rest of the package or anything else.
  for (const path of ['/dashboard/vendor/uPlot.cjs.js', '/dashboard/nope.js']) {
    const response = await fetch(`${url}${path}`)
    t.equal(response.status, 404, path)
    t.equal((await response.json() as { code: string }).code, 'NOT_FOUND')
  }
  const stats = await (await fetch(`${url}/api/stats`)).json() as Record<string, any>
  t.equal(stats.requests.total, 2, 'only the two 404s count, not the page and its files')

  t.match(await (await fetch(url)).json(), { dashboard: '/dashboard' }, 'linked from GET /')
})

t.test('in Chromium: charts, figures, alerts and a phone-width layout, with no error and no CSP violation', async (t) => {
  const fake = await startFakeGemini(t)
  const { app, url } = await startServer(t, aiEnv(fake, { ...dashboardEnv, HIGH_CONNECTIONS: 1 }))
  const { origin } = new URL(url)

  // An hour's history in miniature before the page opens: requests, an AI call.
  await traffic(url, 20)
  const initialize = await fetch(`${url}/api/ai-companion/initialize`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ companionConfig: { name: 'Ava', personality: 'warm', identity: 'a partner', role: 'girlfriend' } })
  })
  t.equal(initialize.status, 200)
  await initialize.arrayBuffer()
  await until(() => app.metrics.history().some((sample) => sample.aiRequests > 0), 5000, 'the AI call in the history')

  const context = await openBrowser(t)
  const { page, problems, requests, cspViolations } = await watchedPage(context)
  const opened = await page.goto(`${url}/dashboard`)
  t.equal(opened?.status(), 200)
  await page.locator('#board').waitFor({ state: 'visible' })
  t.equal(await page.locator('#token-form').isVisible(), false, 'no token asked when none is configured')

  const drawn = await waitForCharts(page, 'from the history')
  t.same(Object.keys(drawn), CHART_IDS, 'six charts, each with a series line')

  const stats = await (await fetch(`${url}/api/stats`)).json() as Record<string, any>
  t.equal(await text(page, 'fact-version'), VERSION)
  t.equal(await text(page, 'fact-provider'), 'gemini')
  t.equal(await text(page, 'fact-model'), stats.ai.model)
  t.equal(await text(page, 'fact-circuit'), 'closed')
  t.match(await text(page, 'fact-health'), /^(healthy|degraded)$/)
  t.match(await text(page, 'fact-uptime'), /^\d+ s$|min/)
  if (stats.instanceId === undefined) {
    t.equal(await page.locator('#fact-instance-row').isVisible(), false, 'no instance id to show')
  } else {
    t.equal(await text(page, 'fact-instance'), stats.instanceId)
  }
  t.equal(await text(page, 'no-alerts'), 'None.')

  // Traffic after the page opened moves its figures within a couple of refreshes.
  const before = Number(await text(page, 'fact-requests'))
  await traffic(url, 30)
  await until(async () => Number(await text(page, 'fact-requests')) >= before + 30, 10_000, 'the request count to move')

  // Two WebSocket connections with HIGH_CONNECTIONS=1: an active alert.
  await TestClient.connect(t, url)
  await TestClient.connect(t, url)
  const alert = page.locator('#alert-list li', { hasText: 'highConnections' })
  await alert.waitFor({ state: 'visible', timeout: 10_000 })
  t.match(await alert.innerText(), /highConnections warning: 2 \(threshold 1\)/)
  t.equal(await page.locator('#no-alerts').isVisible(), false)
  await until(async () => await text(page, 'fact-connections') === '2', 10_000, 'two connections shown')
  await screenshot(page, 'dashboard-desktop.png')

  // A phone: nothing wider than the screen.
  await page.setViewportSize({ width: 390, height: 844 })
  // The charts follow their boxes after a ResizeObserver callback: let it run.
  const pageWidths = () => page.evaluate('window.pageWidths()') as Promise<{ scroll: number, client: number, widest: number }>
  await until(async () => (await pageWidths()).widest <= 390, 5000).catch(() => undefined)
  const widths = await pageWidths()
  t.ok(widths.scroll <= widths.client, `no horizontal scroll at 390 px (${JSON.stringify(widths)})`)
  t.ok(widths.widest <= 390, 'every element fits')
  await waitForCharts(page, 'at phone width')
  await screenshot(page, 'dashboard-phone.png')

  t.same(problems, [], 'no console error or warning, no page error')
  t.same(await cspViolations(), [], 'no CSP violation')
  const foreign = requests.filter((request) => new URL(request.url).origin !== origin && !request.url.startsWith('data:'))
  t.same(foreign, [], 'every request stays on the service\'s origin')
  t.ok(requests.some((request) => request.url === `${url}/api/stats/history`), 'history loaded')
  t.ok(requests.filter((request) => request.url === `${url}/api/stats`).length >= 2, 'stats polled')
})

t.test('with STATS_TOKEN: asks once, says when the token is wrong, keeps the right one for the tab', async (t) => {
  const TOKEN = 'dashboard-s3cret'
  const { app, url } = await startServer(t, { ...dashboardEnv, STATS_TOKEN: TOKEN })
  await traffic(url, 10)
  await until(() => app.metrics.history().some((sample) => sample.successful > 0), 5000, 'the traffic in the history')
  const context = await openBrowser(t)
  const { page, problems, requests, cspViolations } = await watchedPage(context)

  t.equal((await page.goto(`${url}/dashboard`))?.status(), 200, 'the page itself needs no token')
  const form = page.locator('#token-form')
  await form.waitFor({ state: 'visible' })
  t.equal(await page.locator('#board').isVisible(), false, 'no figures without the token')
  t.equal(await page.locator('#token-error').isVisible(), false, 'asked, not yet told off')

  await page.locator('#token').fill('not-the-token')
  await page.locator('#token-form button').click()
  const error = page.locator('#token-error')
  await error.waitFor({ state: 'visible' })
  t.match(await error.innerText(), /not accepted/)
  t.equal(await form.isVisible(), true, 'asked again')
  t.equal(await page.evaluate('sessionStorage.length'), 0, 'a wrong token is not kept')

  await page.locator('#token').fill(TOKEN)
  await page.locator('#token-form button').click()
  await page.locator('#board').waitFor({ state: 'visible' })
  await waitForCharts(page, 'with the token')
  t.equal(await form.isVisible(), false)
  t.same(await page.evaluate('Object.values(sessionStorage)'), [TOKEN], 'kept in sessionStorage')

  // A reload in the same tab: straight to the figures, the token sent as a bearer header.
  const sentBefore = requests.length
  await page.reload()
  await page.locator('#board').waitFor({ state: 'visible' })
  await until(async () => await text(page, 'fact-requests') !== '–', 10_000, 'figures after the reload')
  t.equal(await form.isVisible(), false, 'not asked again')
  const reads = requests.slice(sentBefore).filter((request) => /\/api\/stats/.test(request.url))
  t.ok(reads.length >= 2)
  t.ok(reads.every((request) => request.authorization === `Bearer ${TOKEN}`), 'every read carries the token')

  // The browser reports each refused read (401) in the console: those, and only those.
  const unexpected = problems.filter((problem) => !/status of 401/.test(problem))
  t.same(unexpected, [], 'no other console error, no page error')
  t.equal(problems.length, 2, 'one 401 for the first try without a token, one for the wrong token')
  t.same(await cspViolations(), [])
})

t.test('over plain HTTP by a host name (one instance reached inside the network), the page still works', async (t) => {
  const { url, port } = await startServer(t, dashboardEnv)
  await traffic(url, 10)
  // Chromium resolves the name to the loopback server; the origin stays an
  // ordinary, non-secure one, where an upgrade-insecure-requests CSP would
  // send the page's script and styles to https:// and leave it blank.
  const context = await openBrowser(t, ['--host-resolver-rules=MAP dashboard.test 127.0.0.1'])
  const { page, problems, requests, cspViolations } = await watchedPage(context)
  const origin = `http://dashboard.test:${port}`
  t.equal((await page.goto(`${origin}/dashboard`))?.status(), 200)
  await page.locator('#board').waitFor({ state: 'visible' })
  await waitForCharts(page, 'over plain HTTP')
  t.same(requests.filter((request) => !request.url.startsWith(`${origin}/`) && !request.url.startsWith('data:')), [], 'nothing upgraded, nothing elsewhere')
  t.same(await cspViolations(), [])
  // What Chromium says about helmet's isolation headers on a non-secure origin, and nothing else.
  const ignoredOnHttp = /Cross-Origin-Opener-Policy header has been ignored|origin-keyed agent cluster/
  t.same(problems.filter((problem) => !ignoredOnHttp.test(problem)), [])
})
