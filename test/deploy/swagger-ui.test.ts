/**
 * Swagger UI in a real browser: Debian's headless Chromium (driven by playwright-core, never a
 * downloaded browser) opens /docs of the app listening on loopback, finds every operation, and
 * for each one expands it, turns on "Try it out", presses "Execute" and reads a 200 response
 * with a "result" on the page, as a person would. Every request the page makes is recorded:
 * none may leave the service's own origin (requests elsewhere are also blocked, so a failure
 * here never sends traffic off the machine). The page is saved to /tmp/swagger.png, the first
 * operation's live response to /tmp/swagger-response.png.
 *
 * Skipped only when /usr/bin/chromium is missing outside CI; in CI (.ci/run installs it) it runs.
 */
import type { FastifyInstance } from 'fastify'
import { type Browser, chromium, type Locator, type Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../../src/app.js'
import { ROUTES } from '../../src/operations/index.js'
import { listen } from '../helpers/bodies.js'
import { skipWithout } from './helpers.js'

const CHROMIUM = '/usr/bin/chromium'
const skip = skipWithout(CHROMIUM)
const OPERATIONS = ROUTES.map(route => `/v1/${route}`)
const SCREENSHOT = '/tmp/swagger.png'
/** A line holding one number and nothing else: Swagger UI's own layout of an array. */
const ALONE = /^\s*-?[\d.e+]+,?$/m
const RESPONSE_SHOT = '/tmp/swagger-response.png'

const title = 'Swagger UI at /docs in headless Chromium' +
  (skip ? ` - SKIPPED: no ${CHROMIUM} on this machine (apt-get install -y chromium); in CI it always runs` : '')

describe.skipIf(skip)(title, () => {
  let app: FastifyInstance
  let browser: Browser
  let page: Page
  let origin = ''
  let doc: Promise<any>
  const requested: string[] = []
  const pageErrors: string[] = []

  beforeAll(async () => {
    app = await buildApp({ logLevel: 'silent', workers: 1 })
    origin = await listen(app)
    doc = fetch(`${origin}/openapi.json`).then(async res => await res.json())
    ;({ browser, page } = await openPage(origin))
    page.on('request', (req) => requested.push(req.url()))
    page.on('pageerror', (err) => pageErrors.push(err.message))
  }, 60_000)

  afterAll(async () => {
    await browser?.close()
    await app?.close()
  })

  it('lists every operation', async () => {
    await page.goto(`${origin}/docs`, { waitUntil: 'load' })
    await page.locator('.swagger-ui .opblock').first().waitFor({ timeout: 20_000 })
    for (const path of OPERATIONS) {
      await expect(operation(page, path).count(), path).resolves.toBe(1)
    }
    await expect(page.locator('.swagger-ui .info .title').innerText()).resolves.toMatch(/Tensor service/)
  }, 60_000)

  it('runs each operation\'s example: expand, Try it out, Execute, 200 with a result', async () => {
    for (const path of OPERATIONS) {
      const op = operation(page, path)
      await op.locator('.opblock-summary').first().click()
      const body = op.locator('.opblock-body')
      await body.waitFor({ timeout: 10_000 })
      // "Try it out": the app's uiConfig turns it on from the start (the button then reads
      // "Cancel"), so switch it off and press "Try it out" as a person would
      const tryOut = op.locator('button.try-out__btn')
      await tryOut.waitFor({ timeout: 10_000 })
      if ((await tryOut.innerText()).trim() === 'Cancel') await tryOut.click()
      await expect(tryOut.innerText()).resolves.toBe('Try it out')
      await expect(op.locator('button.execute').count()).resolves.toBe(0)
      await tryOut.click()
      await expect(tryOut.innerText()).resolves.toBe('Cancel')
      // the example body is in the editor, one matrix row per line (never a number alone on a line),
      // and the reply example shown is the document's (the reply the service gives to that body)
      const media = (await doc).paths[path].post
      const editor = await op.locator('textarea.body-param__text').inputValue()
      expect(JSON.parse(editor), path).toEqual(media.requestBody.content['application/json'].example)
      expect(editor, path).not.toMatch(ALONE)
      const replyExample = await op.locator('.responses-wrapper tr.response[data-code="200"] .microlight').first().innerText()
      expect(JSON.parse(replyExample), path).toEqual(media.responses['200'].content['application/json'].example)
      expect(replyExample, path).not.toMatch(ALONE)
      await op.locator('button.execute').click()
      const status = op.locator('.live-responses-table .response .response-col_status').first()
      await status.waitFor({ timeout: 20_000 })
      await expect(status.innerText(), path).resolves.toMatch(/^\s*200/)
      const shown = await op.locator('.live-responses-table .response-col_description .microlight, .live-responses-table .response-col_description pre').first().innerText()
      expect(shown, path).toContain(path.endsWith('/backward') ? '"grads"' : path === '/v1/optimizer/step' ? '"params"' : path === '/v1/graph' ? '"outputs"' : '"result"')
      if (path === OPERATIONS[0]) await op.locator('.live-responses-table').screenshot({ path: RESPONSE_SHOT })
    }
    // the top of the page: title, the operations, the first one opened
    await page.evaluate('window.scrollTo(0, 0)')
    await page.screenshot({ path: SCREENSHOT })
  }, 30_000 + 10_000 * OPERATIONS.length) // (about 4 s an operation alone, more beside the rest of the suite)

  it('made requests only to the service', () => {
    expect(requested.length).toBeGreaterThan(0)
    const foreign = requested.filter((url) => !(url.startsWith(origin + '/') || url.startsWith('data:') || url.startsWith('blob:')))
    expect(foreign).toEqual([])
    // the Execute presses went to the service
    for (const path of OPERATIONS) expect(requested).toContain(`${origin}${path}`)
    expect(pageErrors).toEqual([])
  })
})

describe.skipIf(skip)(`${title}: "Authorize" with an API key`, () => {
  const KEY = 'k-swagger-0123456789abcdef0123456789abcdef'
  let app: FastifyInstance
  let browser: Browser
  let page: Page
  let origin = ''

  beforeAll(async () => {
    app = await buildApp({ logLevel: 'silent', workers: 1, apiKeys: [KEY] })
    origin = await listen(app)
    ;({ browser, page } = await openPage(origin))
  }, 60_000)

  afterAll(async () => {
    await browser?.close()
    await app?.close()
  })

  /** Executes /v1/dot's example from the page; returns the status Swagger UI shows. */
  async function executeDot (): Promise<string> {
    const op = operation(page, '/v1/dot')
    if (await op.locator('button.execute').count() === 0) {
      await op.locator('.opblock-summary').first().click()
      const tryOut = op.locator('button.try-out__btn')
      await tryOut.waitFor({ timeout: 10_000 })
      if ((await tryOut.innerText()).trim() !== 'Cancel') await tryOut.click()
    }
    // wait for this press's own reply: the table may still show the previous one
    const reply = page.waitForResponse((r) => r.url() === `${origin}/v1/dot` && r.request().method() === 'POST', { timeout: 20_000 })
    await op.locator('button.execute').click()
    const code = String((await reply).status())
    const status = op.locator('.live-responses-table .response .response-col_status').first()
    await expect.poll(async () => (await status.innerText().catch(() => '')).trim(), { timeout: 20_000 }).toMatch(new RegExp(`^${code}`))
    return (await status.innerText()).trim()
  }

  it('answers 401 before a key is given, and 200 once one is entered under "Authorize"', async () => {
    await page.goto(`${origin}/docs`, { waitUntil: 'load' })
    await page.locator('.swagger-ui .opblock').first().waitFor({ timeout: 20_000 })
    expect(await executeDot()).toMatch(/^401/)
    await page.locator('.swagger-ui button.btn.authorize').first().click()
    const dialog = page.locator('.swagger-ui .dialog-ux .modal-ux')
    await dialog.waitFor({ timeout: 10_000 })
    // the first scheme's form (bearer or x-api-key, both take the key as it is)
    const form = dialog.locator('.auth-container').first()
    await form.locator('input').first().fill(KEY)
    await form.locator('button.authorize').click()
    // Swagger UI swaps the form's button for "Logout" once the key is stored
    await form.locator('button', { hasText: 'Logout' }).waitFor({ timeout: 10_000 })
    await dialog.locator('button.btn-done').first().click()
    expect(await executeDot()).toMatch(/^200/)
  }, 120_000)
})

/**
 * Debian's Chromium, headless, and a page of it. Nothing leaves the machine: a request for
 * another origin is refused (and recorded by the caller's listener).
 */
async function openPage (origin: string): Promise<{ browser: Browser, page: Page }> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-quic']
  })
  const context = await browser.newContext({ viewport: { width: 1280, height: 1000 } })
  await context.route('**/*', async (route) => {
    const url = route.request().url()
    if (url.startsWith(origin + '/') || url.startsWith('data:') || url.startsWith('blob:')) await route.continue()
    else await route.abort('blockedbyclient')
  })
  return { browser, page: await context.newPage() }
}

/** The operation block of POST `path`. */
function operation (page: Page, path: string): Locator {
  return page.locator('.swagger-ui .opblock.opblock-post').filter({
    has: page.locator(`.opblock-summary-path[data-path="${path}"]`)
  })
}
