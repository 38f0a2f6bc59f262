/**
 * The playground (GET /playground) in a real browser: Debian's headless Chromium, driven by
 * playwright-core (never a downloaded browser), as a learner uses it. It types two matrices,
 * reads the result cells, points at one and reads its explanation and the highlighted row of A
 * and column of B; reaches a cell by keyboard; follows a neuron's input row, weights column and
 * bias; lays a convolution kernel on the input; reads the
 * attention heat map (each row sums to 1); taps a cell on a phone-sized screen. Every request the
 * page makes is recorded (and any outside the service's origin blocked): none may leave it, and
 * the content security policy reports no violation. Screenshots go to the test's output
 * (their paths are printed): /tmp/playground-*.png.
 *
 * Skipped only when /usr/bin/chromium is missing outside CI; in CI (.ci/run installs it) it runs.
 */
import type { FastifyInstance } from 'fastify'
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../../src/app.js'
import { listen } from '../helpers/bodies.js'
import { skipWithout } from './helpers.js'

// the browser's globals, in the functions playwright runs in the page (this project's TypeScript has no DOM library)
declare const document: any
declare const window: any
declare function getComputedStyle (element: unknown, pseudo?: string): any

const CHROMIUM = '/usr/bin/chromium'
const skip = skipWithout(CHROMIUM)

const title = 'the playground at /playground in headless Chromium' +
  (skip ? ` - SKIPPED: no ${CHROMIUM} on this machine (apt-get install -y chromium); in CI it always runs` : '')

describe.skipIf(skip)(title, () => {
  let app: FastifyInstance
  let browser: Browser
  let origin = ''
  const requested: string[] = []
  const problems: string[] = []

  beforeAll(async () => {
    app = await buildApp({ logLevel: 'silent', workers: 1 })
    origin = await listen(app)
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', '--disable-quic']
    })
  }, 60_000)

  afterAll(async () => {
    await browser?.close()
    await app?.close()
  })

  /** A page in a context of its own, every request recorded and any leaving the origin blocked. */
  async function open (options: Parameters<Browser['newContext']>[0] = {}): Promise<{ context: BrowserContext, page: Page }> {
    const context = await browser.newContext({ viewport: { width: 1200, height: 900 }, ...options })
    await context.route('**/*', async (route) => {
      const url = route.request().url()
      if (url.startsWith(origin + '/') || url.startsWith('data:')) await route.continue()
      else await route.abort('blockedbyclient')
    })
    const page = await context.newPage()
    page.on('request', req => requested.push(req.url()))
    page.on('pageerror', err => problems.push(`page error: ${err.message}`))
    page.on('console', (msg) => { if (msg.type() === 'error' || msg.type() === 'warning') problems.push(`console ${msg.type()}: ${msg.text()}`) })
    const res = await page.goto(`${origin}/playground`, { waitUntil: 'load' })
    expect(res?.status()).toBe(200)
    expect(res?.headers()['content-security-policy']).toMatch(/script-src 'self'/)
    return { context, page }
  }

  async function shot (page: Page, name: string): Promise<void> {
    const path = `/tmp/playground-${name}.png`
    await page.screenshot({ path, fullPage: true })
    console.log(`screenshot: ${path}`)
  }

  /** The texts of a grid's cells, row by row. */
  async function cells (page: Page, caption: RegExp): Promise<string[][]> {
    const table = page.locator('figure.matrix').filter({ has: page.locator('figcaption', { hasText: caption }) }).locator('table')
    return await table.locator('tr').evaluateAll(rows => rows.map(r => [...r.querySelectorAll('td')].map(td => (td.textContent ?? '').trim())))
  }

  /** [row, column] of every highlighted cell of a grid. */
  async function marked (page: Page, caption: RegExp): Promise<number[][]> {
    const table = page.locator('figure.matrix').filter({ has: page.locator('figcaption', { hasText: caption }) }).locator('table')
    return await table.locator('tr').evaluateAll(rows => rows.flatMap((r, i) =>
      [...r.querySelectorAll('td')].flatMap((td, j) => td.classList.contains('hl') ? [[i, j]] : [])))
  }

  it('matrix product: type A and B, read C, point at a cell: its explanation, its row of A and column of B', async () => {
    const { context, page } = await open()
    await page.getByLabel('A', { exact: true }).fill('1 2 3\n4 5 6')
    await page.getByLabel('B', { exact: true }).fill('7 8\n9 10\n11 12')
    await page.getByRole('button', { name: 'Compute' }).click()
    await expect.poll(async () => await cells(page, /^C = A·B/), { timeout: 10_000 }).toEqual([['58', '64'], ['139', '154']])

    await page.getByRole('button', { name: 'C[1,0] = 139' }).hover()
    await expect.poll(async () => await page.locator('#explain-text').innerText()).toBe('C[1,0] = 4*7 + 5*9 + 6*11 = 139')
    await expect(page.locator('#explain-steps li').allInnerTexts()).resolves.toEqual(['4 × 7', '5 × 9', '6 × 11'])
    await expect(marked(page, /^A /)).resolves.toEqual([[1, 0], [1, 1], [1, 2]])
    await expect(marked(page, /^B /)).resolves.toEqual([[0, 0], [1, 0], [2, 0]])
    // marked by outline and weight, not by colour alone
    const style = await page.locator('figure.matrix td.hl').first().evaluate(td => {
      const s = getComputedStyle(td)
      return { outline: s.outlineStyle, weight: s.fontWeight }
    })
    expect(style).toEqual({ outline: 'solid', weight: '700' })
    await shot(page, 'matmul')

    // by keyboard: Tab from the Compute button reaches the result's cells, and focus explains
    await page.getByRole('button', { name: 'Compute' }).focus()
    for (let i = 0; i < 10 && !(await page.evaluate(() => document.activeElement?.classList.contains('cell') ?? false)); i++) await page.keyboard.press('Tab')
    await expect(page.evaluate(() => document.activeElement?.getAttribute('aria-label'))).resolves.toBe('C[0,0] = 58')
    await expect.poll(async () => await page.locator('#explain-text').innerText()).toBe('C[0,0] = 1*7 + 2*9 + 3*11 = 58')
    await page.keyboard.press('Tab')
    await expect.poll(async () => await page.locator('#explain-text').innerText()).toBe('C[0,1] = 1*8 + 2*10 + 3*12 = 64')
    await expect(marked(page, /^B /)).resolves.toEqual([[0, 1], [1, 1], [2, 1]])

    // a mistake is explained, not thrown
    await page.getByLabel('B', { exact: true }).fill('7 8\n9 10')
    await page.getByRole('button', { name: 'Compute' }).click()
    await expect.poll(async () => await page.locator('#error').innerText()).toMatch(/400 SHAPE_MISMATCH: .*a \[2,3\] and b \[2,2\]/)
    await page.getByLabel('B', { exact: true }).fill('7 x')
    await page.getByRole('button', { name: 'Compute' }).click()
    await expect.poll(async () => await page.locator('#error').innerText()).toMatch(/B, row 1: "x" is not a number/)
    await context.close()
  }, 60_000)

  it('convolution: the kernel\'s window on the input, with its weights, and the sum', async () => {
    const { context, page } = await open()
    await page.getByRole('tab', { name: 'Convolution' }).click()
    const panel = page.getByRole('tabpanel', { name: 'Convolution' })
    await panel.getByLabel('Input', { exact: true }).fill('1 2 3\n4 5 6\n7 8 9')
    await panel.getByLabel('Kernel', { exact: true }).fill('1 0\n0 -1')
    await panel.getByLabel('Bias', { exact: true }).fill('0.5')
    await page.getByRole('button', { name: 'Compute' }).click()
    await expect.poll(async () => await cells(page, /^Output/), { timeout: 10_000 }).toEqual([['-3.5', '-3.5'], ['-3.5', '-3.5']])
    await page.getByRole('button', { name: 'out[1,0] = -3.5' }).hover()
    await expect.poll(async () => await page.locator('#explain-text').innerText()).toBe('out[0,0,1,0] = (4*1 + 5*0 + 7*0 + 8*-1) + 0.5 = -4 + 0.5 = -3.5')
    await expect(marked(page, /^Input/)).resolves.toEqual([[1, 0], [1, 1], [2, 0], [2, 1]])
    // each window cell shows the weight it is multiplied by
    await expect(page.locator('figure.matrix td.hl').evaluateAll(tds => tds.map(td => getComputedStyle(td, '::after').content)))
      .resolves.toEqual(['"×1"', '"×0"', '"×0"', '"×-1"'])
    await shot(page, 'conv2d')
    await context.close()
  }, 60_000)

  it('a neuron: the input row, the weights column and the bias of an output, through its activation', async () => {
    const { context, page } = await open()
    await page.getByRole('tab', { name: 'Neuron' }).click()
    const panel = page.getByRole('tabpanel', { name: 'Neuron' })
    await panel.getByLabel('Input', { exact: true }).fill('0.5 -1\n1 1')
    await panel.getByLabel('Weights', { exact: true }).fill('1 2\n2 1')
    await panel.getByLabel('Bias', { exact: true }).fill('0.1 0.2')
    await panel.getByLabel('Activation').selectOption('relu')
    await page.getByRole('button', { name: 'Compute' }).click()
    await expect.poll(async () => await cells(page, /^Output/), { timeout: 10_000 }).toEqual([['0', '0.2'], ['3.1', '3.2']])
    await page.getByRole('button', { name: 'out[0,0] = 0' }).hover()
    await expect.poll(async () => await page.locator('#explain-text').innerText()).toBe('out[0,0] = relu(0.5*1 + -1*2 + 0.1) = 0')
    await expect(page.locator('#explain-steps li').allInnerTexts()).resolves.toEqual(['0.5 × 1', '-1 × 2', 'bias 0.1', 'relu of -1.4'])
    await expect(marked(page, /^Input/)).resolves.toEqual([[0, 0], [0, 1]])
    await expect(marked(page, /^Weights/)).resolves.toEqual([[0, 0], [1, 0]])
    await expect(marked(page, /^Bias/)).resolves.toEqual([[0, 0]])
    await shot(page, 'neuron')
    await context.close()
  }, 60_000)

  it('attention: a heat map of the weights whose rows sum to 1, and each output\'s scores and weighted sum', async () => {
    const { context, page } = await open()
    await page.getByRole('tab', { name: 'Attention' }).click()
    await page.getByLabel('Q (queries)').fill('1 0\n0 1')
    await page.getByLabel('K (keys)').fill('1 0\n0 1\n1 1')
    await page.getByLabel('V (values)').fill('1 2\n3 4\n5 6')
    await page.getByLabel(/Causal/).check()
    await page.getByRole('button', { name: 'Compute' }).click()
    await expect.poll(async () => await cells(page, /^Output/), { timeout: 10_000 }).toEqual([['1', '2'], ['2.3395230986533138', '3.3395230986533138']])
    const heat = await cells(page, /^Weights/)
    expect(heat).toEqual([['1.000', '0.000', '0.000', 'Σ 1.000'], ['0.330', '0.670', '0.000', 'Σ 1.000']])
    // the shade follows the weight (set through the CSSOM, which the policy allows)
    const shades = await page.locator('figure.heat tr').first().locator('td').evaluateAll(tds => tds.slice(0, 3).map(td => getComputedStyle(td).backgroundColor))
    expect(shades[0]).not.toBe(shades[1])
    expect(shades[1]).toBe(shades[2])

    await page.getByRole('button', { name: 'out[1,0] = 2.3395230986533138' }).hover()
    await expect.poll(async () => await page.locator('#explain-text').innerText()).toMatch(
      /^out\[1,0\] = 0\.3302384506733431\*1 \+ 0\.6697615493266569\*3 \+ 0\*5 = 2\.3395230986533138, weights = softmax\(\[\(0\*1 \+ 1\*0\)\*0\.7071067811865475, \(0\*0 \+ 1\*1\)\*0\.7071067811865475, hidden\]\)/)
    await expect(marked(page, /^Weights/)).resolves.toEqual([[1, 0], [1, 1], [1, 2]])
    await expect(marked(page, /^V /)).resolves.toEqual([[0, 0], [1, 0], [2, 0]])
    await expect(marked(page, /^Q /)).resolves.toEqual([[1, 0], [1, 1]])
    await shot(page, 'attention')
    await context.close()
  }, 60_000)

  it('a phone-sized screen: nothing wider than the screen but the grids, which scroll; a tap explains', async () => {
    const { context, page } = await open({ viewport: { width: 375, height: 740 }, isMobile: true, hasTouch: true })
    await page.locator('button.cell').first().waitFor({ timeout: 10_000 })
    expect(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth)).toBe(true)
    await page.getByRole('button', { name: 'C[1,1] = 50' }).tap()
    await expect.poll(async () => await page.locator('#explain-text').innerText()).toBe('C[1,1] = 3*6 + 4*8 = 50')
    await shot(page, 'phone')
    await context.close()
  }, 60_000)

  it('made no request outside the service, and broke no rule of the content security policy', () => {
    expect(requested.length).toBeGreaterThan(10)
    expect(requested.filter(url => !url.startsWith(origin + '/') && !url.startsWith('data:'))).toEqual([])
    expect(requested).toContain(`${origin}/playground/playground.js`)
    expect(requested.filter(url => url === `${origin}/v1/matmul`).length).toBeGreaterThan(0)
    expect(problems.filter(p => !/status of 400/.test(p))).toEqual([])
  })
})
