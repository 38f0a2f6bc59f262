import { execFile } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, posix } from 'node:path'
import { promisify } from 'node:util'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../src/app.js'
import { ROUTES } from '../src/operations/index.js'
import { skipWithout, which } from './deploy/helpers.js'
import { listen } from './helpers/bodies.js'
import { PYTHON, skipWithoutPython } from './helpers/python.js'

/** README.md and the reference pages under docs/, by their path from the repository's root. */
const ROOT = new URL('../', import.meta.url)
const pages = ['README.md', ...readdirSync(new URL('docs/', ROOT)).filter(f => f.endsWith('.md')).sort().map(f => `docs/${f}`)]
  .map(path => ({ path, text: readFileSync(new URL(path, ROOT), 'utf8') }))
const readme = pages[0].text

/** Every shell example printed with its output (a ```sh block followed by a ```json block), on any page. */
const printed = pages.flatMap(({ path, text }) => [...text.matchAll(/```sh\n((?:(?!```)[\s\S])*)```\n```json\n(.*)\n```/g)]
  .map(m => ({ page: path, command: m[1], output: m[2] })))
/** The curl examples that post JSON, replayed with inject. */
const examples = printed.flatMap(e => {
  const m = /^curl -s localhost:3000(\/\S+) -H 'content-type: application\/json' \\\n {2}-d '([^']*)'\n$/.exec(e.command)
  return m === null ? [] : [{ ...e, url: m[1], body: m[2] }]
})
/** The examples that post a file (a path from the repository's root) and ask for JSON. */
const fileExamples = printed.flatMap(e => {
  const m = /^curl -s localhost:3000(\/\S+) -H 'content-type: application\/octet-stream' -H 'accept: application\/json' \\\n {2}--data-binary @(\S+)\n$/.exec(e.command)
  return m === null ? [] : [{ ...e, url: m[1], file: m[2] }]
})
/** The rest (the compression example: a file written, gzipped and piped to curl), run by the shell as printed. */
const shellExamples = printed.filter(e => !examples.some(x => x.command === e.command) && !fileExamples.some(x => x.command === e.command))

const formats = pages.find(p => p.path === 'docs/formats.md')?.text ?? ''
const binarySection = formats.slice(formats.indexOf('## Binary bodies: safetensors'), formats.indexOf('## Compression'))
const pyProgram = /```python\n([\s\S]*?)```/.exec(binarySection)?.[1] ?? ''
const pyOutput = /It prints:\n\n```\n([\s\S]*?)```/.exec(binarySection)?.[1] ?? ''

describe('README and docs/ examples print what the pages show', () => {
  let app: FastifyInstance
  beforeAll(async () => { app = await buildApp({ logLevel: 'silent', workers: 1 }) })
  afterAll(async () => { await app.close() })

  it('finds the examples: the README one per operation route at least, a safetensors file, the compression pipeline', () => {
    for (const route of ROUTES.filter(r => !r.endsWith('/backward'))) {
      expect(examples.some(e => e.page === 'README.md' && e.url === `/v1/${route}`), route).toBe(true)
    }
    // the 17 curl examples of the README before its reference moved to docs/: none lost on the way
    expect(examples.length).toBeGreaterThanOrEqual(17)
    expect(fileExamples.length).toBeGreaterThanOrEqual(1)
    expect(shellExamples.some(e => e.command.includes('content-encoding: gzip'))).toBe(true)
  })

  for (const [i, e] of examples.entries()) {
    it(`example ${i + 1} (${e.page}): POST ${e.url}`, async () => {
      const res = await app.inject({ method: 'POST', url: e.url, payload: e.body, headers: { 'content-type': 'application/json' } })
      expect(res.body).toBe(e.output)
    })
  }

  for (const e of fileExamples) {
    it(`${e.page}: POST ${e.url} with the file ${e.file}`, async () => {
      const payload = readFileSync(new URL(e.file, ROOT))
      const res = await app.inject({ method: 'POST', url: e.url, payload, headers: { 'content-type': 'application/octet-stream', accept: 'application/json' } })
      expect(res.body).toBe(e.output)
    })
  }
})

const noShell = skipWithout(which('curl')) || skipWithout(which('gzip'))

describe.skipIf(noShell)('docs/ shell examples run as printed' + (noShell ? ' - SKIPPED: curl or gzip missing; in CI it always runs' : ''), () => {
  let app: FastifyInstance
  let host: string
  let dir: string
  beforeAll(async () => {
    app = await buildApp({ logLevel: 'silent', workers: 1 })
    host = (await listen(app)).replace('http://', '')
    dir = mkdtempSync(join(tmpdir(), 'readme-sh-'))
  })
  afterAll(async () => {
    await app?.close()
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
  })

  for (const e of shellExamples) {
    it(`${e.page}: ${e.command.split('\n').filter(l => l.includes('localhost:3000'))[0].replace(/ \\$/, '')}`, async () => {
      // in an empty directory, as a reader would: the example writes any file it needs itself
      const { stdout } = await promisify(execFile)('sh', ['-ec', e.command.replaceAll('localhost:3000', host)], { cwd: dir, timeout: 30_000 })
      expect(stdout).toBe(e.output)
    })
  }
})

/** Headings' anchors as GitHub makes them: lower case, punctuation dropped, spaces to hyphens, -1, -2 for repeats. */
function anchors (markdown: string): Set<string> {
  const seen = new Map<string, number>()
  const out = new Set<string>()
  for (const m of withoutFences(markdown).matchAll(/^#{1,6} +(.+?) *$/gm)) {
    const base = m[1].toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, '').replace(/ /g, '-')
    const n = seen.get(base) ?? 0
    seen.set(base, n + 1)
    out.add(n === 0 ? base : `${base}-${n}`)
  }
  return out
}

/** The text outside fenced code blocks. */
function withoutFences (markdown: string): string {
  return markdown.replace(/^ *```[\s\S]*?^ *```$/gm, '')
}

/** The text outside fenced code blocks, with inline code spans emptied (their text is not markdown). */
function withoutCode (markdown: string): string {
  return withoutFences(markdown).replace(/`[^`\n]*`/g, '``')
}

describe('README and docs/ pages', () => {
  it('the README is a front page: at most 300 lines', () => {
    expect(readme.split('\n').length - (readme.endsWith('\n') ? 1 : 0)).toBeLessThanOrEqual(300)
  })

  it('docs/ holds the reference pages, and the README links to each', () => {
    expect(pages.length).toBeGreaterThan(1)
    for (const { path } of pages.slice(1)) expect(readme, path).toContain(`](${path})`)
  })

  for (const { path, text } of pages) {
    it(`every relative link in ${path} points at a file that exists (and at a heading there, for #anchors)`, () => {
      const links = [...withoutCode(text).matchAll(/\]\(([^)\s]+)\)/g)].map(m => m[1]).filter(l => !/^[a-z][a-z0-9+.-]*:/i.test(l))
      expect(links.length).toBeGreaterThan(0)
      for (const link of links) {
        const [target, anchor] = link.split('#')
        const file = target === '' ? path : posix.normalize(posix.join(posix.dirname(path), target))
        expect(file.startsWith('../'), `${link}: outside the repository`).toBe(false)
        expect(existsSync(new URL(file, ROOT)), `${link}: ${file} does not exist`).toBe(true)
        if (anchor !== undefined && file.endsWith('.md')) {
          expect([...anchors(readFileSync(new URL(file, ROOT), 'utf8'))], `${link}: no such heading in ${file}`).toContain(anchor)
        }
      }
    })
  }
})

const python = skipWithoutPython(['numpy', 'requests'])

describe.skipIf(python.skip)('docs/formats.md: the Python safetensors example' + python.note, () => {
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

  it('prints what the page shows (Debian\'s Python; safetensors.numpy from test/support/python, a stand-in)', async () => {
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
