/**
 * The "Train over HTTP" programs of docs/gradients.md, run as printed against the service on an ephemeral
 * port: a two-layer network learns XOR through one graph request per step, from a fixed start, in
 * TypeScript (the client's graph builder) and in Python (requests); and the classification program of
 * docs/graphs.md, which must end above 95% accuracy. Each must print a falling loss that ends
 * below 0.01.
 */
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

const run = promisify(execFile)
const page = readFileSync(new URL('../docs/gradients.md', import.meta.url), 'utf8')
const start = page.indexOf('## Train over HTTP')
const section = start < 0 ? '' : page.slice(start)
const tsProgram = /```ts\n([\s\S]*?)```/.exec(section)?.[1] ?? ''
const pyProgram = /```python\n([\s\S]*?)```/.exec(section)?.[1] ?? ''
const TSX = new URL('../node_modules/.bin/tsx', import.meta.url).pathname

/** The losses printed ("epoch N: loss X" lines), in order. */
function losses (stdout: string): number[] {
  return [...stdout.matchAll(/^epoch \d+: loss (\S+)$/gm)].map(m => Number(m[1]))
}

function expectLearned (stdout: string): void {
  const ls = losses(stdout)
  expect(ls.length, stdout).toBe(4)
  for (let i = 1; i < ls.length; i++) expect(ls[i], stdout).toBeLessThan(ls[i - 1])
  expect(ls[ls.length - 1], stdout).toBeLessThan(0.01)
}

// one service and one directory for the programs of both pages
let app: FastifyInstance
let url: string
let dir: string

beforeAll(async () => {
  app = await buildApp({ logLevel: 'silent', workers: 1 })
  url = await listen(app)
  dir = mkdtempSync(join(tmpdir(), 'train-'))
})

afterAll(async () => {
  await app?.close()
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
})

describe('docs/gradients.md: train over HTTP', () => {
  it('finds both programs: one graph request per step', () => {
    expect(tsProgram).toContain('client.graph(')
    expect(pyProgram).toContain("/v1/graph'")
  })

  it('the TypeScript program learns XOR: its loss falls below 0.01', async () => {
    const file = join(dir, 'xor.mts')
    // run from the repository, it imports the client's sources: here from a temporary directory
    expect(tsProgram).toContain("from './client/src/index.ts'")
    writeFileSync(file, tsProgram.replace("from './client/src/index.ts'", `from ${JSON.stringify(new URL('../client/src/index.ts', import.meta.url).href)}`))
    const { stdout } = await run(TSX, [file], { env: { ...process.env, TENSOR_URL: url }, timeout: 120_000 })
    expectLearned(stdout)
  }, 130_000)

  const python = skipWithoutPython(['requests'])
  it.skipIf(python.skip)('the Python program learns XOR: its loss falls below 0.01' + python.note, async () => {
    const file = join(dir, 'xor.py')
    writeFileSync(file, pyProgram)
    // Debian's Python, with python3-requests (.ci/run installs it)
    const { stdout } = await run(PYTHON, [file], { env: { ...process.env, TENSOR_URL: url }, timeout: 120_000 })
    expectLearned(stdout)
  }, 130_000)
})

const graphsPage = readFileSync(new URL('../docs/graphs.md', import.meta.url), 'utf8')
const circleSection = graphsPage.slice(graphsPage.indexOf('## Learn a classification over HTTP'))
const circleProgram = /```ts\n([\s\S]*?)```/.exec(circleSection)?.[1] ?? ''

describe('docs/graphs.md: learn a classification over HTTP', () => {
  it('the program makes its data set and learns it: its loss falls and its accuracy ends above 0.95', async () => {
    expect(circleProgram).toContain("from './client/src/index.ts'")
    const file = join(dir, 'circle.mts')
    writeFileSync(file, circleProgram.replace("from './client/src/index.ts'", `from ${JSON.stringify(new URL('../client/src/index.ts', import.meta.url).href)}`))
    const { stdout } = await run(TSX, [file], { env: { ...process.env, TENSOR_URL: url }, timeout: 120_000 })
    const lines = [...stdout.matchAll(/^step \d+: loss (\S+), accuracy (\S+)$/gm)].map(m => [Number(m[1]), Number(m[2])])
    expect(lines.length, stdout).toBe(3)
    for (let i = 1; i < lines.length; i++) expect(lines[i][0], stdout).toBeLessThan(lines[i - 1][0])
    expect(lines[lines.length - 1][1], stdout).toBeGreaterThan(0.95)
  }, 130_000)
})
