/**
 * The client as a user gets it: `npm pack` in client/ builds it and packs what its source maps
 * point to; the tarball installs into a fresh project outside the repository (offline: the
 * client has no dependencies), its README's example type-checks there with `tsc` and runs with
 * tsx against the app, printing what its comments say. And a service that cannot be reached is
 * the client's own error, naming the URL.
 */
import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { TensorClient, TensorServiceError } from '../client/src/index.js'
import { buildApp } from '../src/app.js'
import { listen } from './helpers/bodies.js'

const run = promisify(execFile)
const CLIENT = new URL('../client/', import.meta.url).pathname
const TSC = new URL('../node_modules/typescript/bin/tsc', import.meta.url).pathname
const TSX = new URL('../node_modules/.bin/tsx', import.meta.url).pathname
const readme = readFileSync(join(CLIENT, 'README.md'), 'utf8')
const example = /```ts\n([\s\S]*?)```/.exec(readme)?.[1] ?? ''

describe('the client, packed and installed as a user would', () => {
  let app: FastifyInstance
  let url = ''
  let dir = ''
  beforeAll(async () => {
    app = await buildApp({ logLevel: 'silent', workers: 1 })
    url = await listen(app)
    dir = mkdtempSync(join(tmpdir(), 'client-user-'))
  })
  afterAll(async () => {
    await app?.close()
    if (dir !== '') rmSync(dir, { recursive: true, force: true })
  })

  it('npm pack builds it; the tarball holds the build, the sources its maps point to, and the README', async () => {
    const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', dir], { cwd: CLIENT, timeout: 120_000 })
    const [packed] = JSON.parse(stdout.slice(stdout.indexOf('['))) as Array<{ filename: string, files: Array<{ path: string }> }>
    const files = packed.files.map(f => f.path)
    expect(files).toEqual(expect.arrayContaining(['README.md', 'package.json', 'dist/index.js', 'dist/index.d.ts', 'dist/index.js.map', 'src/index.ts']))
    const map = JSON.parse(readFileSync(join(CLIENT, 'dist/index.js.map'), 'utf8')) as { sources: string[] }
    for (const source of map.sources) expect(files).toContain(join('dist', source).replace(/^src\//, 'src/'))
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'user-project', private: true, type: 'module' }))
    await run('npm', ['install', '--offline', '--no-audit', '--no-fund', join(dir, packed.filename)], { cwd: dir, timeout: 120_000 })
  }, 240_000)

  it('the README example type-checks in the user\'s project and prints what its comments say', async () => {
    expect(example).toContain("from '@tensor-service/client'")
    writeFileSync(join(dir, 'example.mts'), example.replace("'http://localhost:3000'", JSON.stringify(url)))
    writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({
      compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, lib: ['ES2022', 'DOM'], types: [] },
      files: ['example.mts']
    }))
    await run(process.execPath, [TSC, '-p', dir], { cwd: dir, timeout: 120_000 })
    const { stdout } = await run(TSX, ['example.mts'], { cwd: dir, timeout: 60_000 })
    const promised = [...example.matchAll(/console\.log\(.*\) \/\/ (.*)$/gm)].map(m => m[1])
    expect(promised).toHaveLength(2)
    expect(stdout.trim().split('\n')).toEqual(promised)
  }, 240_000)
})

describe('a service that cannot be reached', () => {
  it('is a TensorServiceError UNREACHABLE naming the URL, with the cause', async () => {
    // a port that was free a moment ago: nothing listens there
    const app = await buildApp({ logLevel: 'silent', workers: 1 })
    const url = await listen(app)
    await app.close()
    const client = new TensorClient({ baseUrl: url, maxRetries: 0 })
    const err = await client.dot({ a: [1, 2], b: [3, 4] }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(TensorServiceError)
    expect(err).toMatchObject({ status: 0, code: 'UNREACHABLE' })
    expect((err as Error).message).toContain(`${url}/v1/dot`)
    expect((err as Error).message).toMatch(/ECONNREFUSED/)
    expect((err as Error).cause).toBeInstanceOf(Error)
    // an aborted call stays an abort
    const controller = new AbortController()
    controller.abort()
    await expect(client.dot({ a: [1], b: [2] }, { signal: controller.signal })).rejects.toMatchObject({ name: 'AbortError' })
  })
})
