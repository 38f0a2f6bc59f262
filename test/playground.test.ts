/**
 * GET /playground without a browser (test/deploy/playground.test.ts drives it in Chromium): the
 * page and its two files, under the security headers; nothing in them from another origin; the
 * page's requests go to the routes that explain; an API key guards the operations, not the page.
 */
import { readFileSync } from 'node:fs'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../src/app.js'
import { OPERATIONS } from '../src/operations/index.js'

const FILES = {
  '/playground': 'text/html; charset=utf-8',
  '/playground/playground.js': 'text/javascript; charset=utf-8',
  '/playground/playground.css': 'text/css; charset=utf-8'
}

let app: FastifyInstance
let secured: FastifyInstance
beforeAll(async () => {
  app = await buildApp({ logLevel: 'silent', workers: 1 })
  secured = await buildApp({ logLevel: 'silent', workers: 1, apiKeys: ['playground-test-key-0123456789'] })
})
afterAll(async () => { await Promise.all([app?.close(), secured?.close()]) })

describe('GET /playground', () => {
  it('serves the page and its script and styles, under the content security policy', async () => {
    for (const [url, type] of Object.entries(FILES)) {
      const res = await app.inject({ method: 'GET', url })
      expect(res.statusCode, url).toBe(200)
      expect(res.headers['content-type'], url).toBe(type)
      expect(res.headers['content-security-policy'], url).toMatch(/default-src 'self'.*script-src 'self'.*style-src 'self'/)
      expect(res.headers['x-content-type-options'], url).toBe('nosniff')
      // the files as they are in the repository (the build copies them into dist/)
      const name = url === '/playground' ? 'index.html' : url.slice('/playground/'.length)
      expect(res.body).toBe(readFileSync(new URL(`../src/playground/${name}`, import.meta.url), 'utf8'))
    }
    expect((await app.inject({ method: 'GET', url: '/playground/other.js' })).statusCode).toBe(404)
  })

  it('loads nothing from elsewhere: no absolute URL, no inline script or style', async () => {
    const html = (await app.inject({ method: 'GET', url: '/playground' })).body
    const refs = [...html.matchAll(/\s(?:src|href)="([^"]*)"/g)].map(m => m[1])
    expect(refs).toEqual(['data:,', 'playground/playground.css', 'playground/playground.js', 'docs'])
    expect(html).not.toMatch(/<script>|<style|\sstyle=|\son[a-z]+=/i)
    for (const url of Object.keys(FILES)) {
      expect((await app.inject({ method: 'GET', url })).body, url).not.toMatch(/https?:\/\/|url\(|@import/)
    }
  })

  it('asks only routes that explain, with explain: true', async () => {
    const script = (await app.inject({ method: 'GET', url: '/playground/playground.js' })).body
    const modes = [...script.matchAll(/^ {2}(\w+): \{$/gm)].map(m => m[1])
    expect(modes).toEqual(['matmul', 'linear', 'conv2d', 'attention'])
    for (const mode of modes) expect(OPERATIONS[mode as keyof typeof OPERATIONS].explain, mode).toBeTypeOf('function')
    expect(script).toMatch(/fetch\(`v1\/\$\{mode\}`/)
    expect(script).toMatch(/explain: true/)
  })

  it('with API keys, the page opens without one; its requests need one, sent as x-api-key', async () => {
    expect((await secured.inject({ method: 'GET', url: '/playground' })).statusCode).toBe(200)
    const body = { a: [[1]], b: [[2]], explain: true }
    expect((await secured.inject({ method: 'POST', url: '/v1/matmul', payload: body })).statusCode).toBe(401)
    const res = await secured.inject({ method: 'POST', url: '/v1/matmul', payload: body, headers: { 'x-api-key': 'playground-test-key-0123456789' } })
    expect(res.statusCode).toBe(200)
  })
})
