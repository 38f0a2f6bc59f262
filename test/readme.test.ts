import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../src/app.js'
import { listen } from './helpers/bodies.js'
import { PYTHON, skipWithoutPython } from './helpers/python.js'

/** Every curl example in the README, with the output printed under it. */
const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8')
const examples = [...readme.matchAll(/```sh\ncurl -s localhost:3000(\/\S+) -H 'content-type: application\/json' \\\n {2}-d '([^']*)'\n```\n```json\n(.*)\n```/g)]
  .map(m => ({ url: m[1], body: m[2], output: m[3] }))
/** The examples that post a file (a path from the repository's root) and ask for JSON. */
const fileExamples = [...readme.matchAll(/```sh\ncurl -s localhost:3000(\/\S+) -H 'content-type: application\/octet-stream' -H 'accept: application\/json' \\\n {2}--data-binary @(\S+)\n```\n```json\n(.*)\n```/g)]
  .map(m => ({ url: m[1], file: m[2], output: m[3] }))
const binarySection = readme.slice(readme.indexOf('### Binary bodies: safetensors'), readme.indexOf('### Compression'))
const pyProgram = /```python\n([\s\S]*?)```/.exec(binarySection)?.[1] ?? ''
const pyOutput = /It prints:\n\n```\n([\s\S]*?)```/.exec(binarySection)?.[1] ?? ''

describe('README examples print what the README shows', () => {
  let app: FastifyInstance
  beforeAll(async () => { app = await buildApp({ logLevel: 'silent', workers: 1 }) })
  afterAll(async () => { await app.close() })

  it('finds the examples (one per operation at least, and a safetensors file)', () => {
    expect(examples.length).toBeGreaterThanOrEqual(5)
    for (const op of ['matmul', 'dot', 'linear', 'conv2d', 'attention']) {
      expect(examples.some(e => e.url === `/v1/${op}`)).toBe(true)
    }
    expect(fileExamples.length).toBeGreaterThanOrEqual(1)
  })

  for (const [i, e] of examples.entries()) {
    it(`example ${i + 1}: POST ${e.url}`, async () => {
      const res = await app.inject({ method: 'POST', url: e.url, payload: e.body, headers: { 'content-type': 'application/json' } })
      expect(res.body).toBe(e.output)
    })
  }

  for (const e of fileExamples) {
    it(`POST ${e.url} with the file ${e.file}`, async () => {
      const payload = readFileSync(new URL(`../${e.file}`, import.meta.url))
      const res = await app.inject({ method: 'POST', url: e.url, payload, headers: { 'content-type': 'application/octet-stream', accept: 'application/json' } })
      expect(res.body).toBe(e.output)
    })
  }
})

const python = skipWithoutPython(['numpy', 'requests'])

describe.skipIf(python.skip)('README: the Python safetensors example' + python.note, () => {
  let app: FastifyInstance
  let url: string
  let dir: string
  beforeAll(async () => {
    app = await buildApp({ logLevel: 'silent', workers: 1 })
    url = await listen(app)
    dir = mkdtempSync(join(tmpdir(), 'readme-'))
  })
  afterAll(async () => {
    await app?.close()
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
  })

  it('prints what the README shows (Debian\'s Python; safetensors.numpy from test/support/python, a stand-in)', async () => {
    expect(pyProgram).toContain('from safetensors.numpy import load, save')
    const file = join(dir, 'example.py')
    writeFileSync(file, pyProgram)
    const { stdout } = await promisify(execFile)(PYTHON, [file], {
      env: { ...process.env, TENSOR_URL: url, PYTHONPATH: new URL('./support/python', import.meta.url).pathname },
      timeout: 60_000
    })
    expect(stdout).toBe(pyOutput)
  }, 70_000)
})
