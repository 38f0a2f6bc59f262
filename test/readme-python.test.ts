/**
 * The Python recipes of docs/clients.md ("Python with NumPy"), extracted from the page and run as printed
 * with Debian's Python (python3-numpy, python3-requests: .ci/run installs them) against the app on
 * an ephemeral port: each must print exactly the output shown under it.
 */
import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { promisify } from 'node:util'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../src/app.js'
import { listen } from './helpers/bodies.js'
import { PYTHON, skipWithoutPython } from './helpers/python.js'

const run = promisify(execFile)
const page = readFileSync(new URL('../docs/clients.md', import.meta.url), 'utf8')
const start = page.indexOf('## Python with NumPy')
const end = page.indexOf('\n## ', start)
const section = start < 0 ? '' : page.slice(start, end < 0 ? undefined : end)
const recipes = [...section.matchAll(/```python\n([\s\S]*?)```\n```text\n([\s\S]*?)```/g)].map(m => ({ program: m[1], output: m[2] }))

const python = skipWithoutPython(['numpy', 'requests'])

describe.skipIf(python.skip)('docs/clients.md: Python with NumPy' + python.note, () => {
  let app: FastifyInstance
  let url = ''

  beforeAll(async () => {
    app = await buildApp({ logLevel: 'silent', workers: 1 })
    url = await listen(app)
  })
  afterAll(async () => { await app?.close() })

  it('finds the recipes: nested lists, base64, a gradient, safetensors files', () => {
    expect(recipes).toHaveLength(4)
    expect(recipes[1].program).toContain('base64')
    expect(recipes[2].program).toContain('/backward')
    expect(recipes[3].program).toContain("'content-type': 'application/octet-stream'")
  })

  for (const [i, { program, output }] of recipes.entries()) {
    it(`recipe ${i + 1} prints what the page shows`, async () => {
      const { stdout } = await run(PYTHON, ['-c', program], { env: { ...process.env, TENSOR_URL: url }, timeout: 60_000 })
      expect(stdout).toBe(output)
    }, 70_000)
  }
})
