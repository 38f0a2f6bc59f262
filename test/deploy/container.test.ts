/**
 * The container image without a container engine: the Dockerfile is parsed and its two stages
 * are replayed in temporary directories. The build stage gets exactly the files its COPY lines
 * name and runs its npm steps (npm ci with the dev dependencies, npm run build:server); the runtime
 * stage gets exactly what it copies (package files from the context, dist/ from the build
 * stage), runs `npm ci --omit=dev`, and its CMD is started with the stage's ENV. The service
 * must then answer /health, /ready, /docs, the playground and a matmul, pass the HEALTHCHECK command, and exit 0
 * on SIGTERM: the runtime file set and the production dependencies are complete.
 *
 * Slow (a full `npm ci` of the dev dependencies): it runs as `npm run test:container`, not in
 * `npm test`. apt-get steps are not replayed (they need the image's Debian); the test checks
 * that tini is installed there and is the ENTRYPOINT.
 */
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, realpathSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, dirname, join, posix, relative, sep } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  type Dockerfile, dockerIgnored, execForm, type Instruction, parseCopy, parseDockerfile, parseDockerignore,
  parseEnv, parseHealthcheck, splitRun, type Stage
} from './dockerfile.js'
import {
  cleanEnv, freePort, MATMUL_BODY, MATMUL_RESULT, type Proc, readRepoFile, repoRoot, run, startProcess,
  stopProcess, waitForHttp
} from './helpers.js'

const STEP_TIMEOUT = 300_000

/** What replaying one stage left behind. */
interface Replayed {
  stage: Stage
  /** Host directory standing for the stage's WORKDIR. */
  dir: string
  /** The stage's WORKDIR (container path). */
  workdir: string
  env: Record<string, string>
  user: string | null
  cmd: string[] | null
  entrypoint: string[] | null
  healthcheck: ReturnType<typeof parseHealthcheck>
  exposed: string[]
  /** The RUN commands that were not replayed (apt-get), as words. */
  skippedRuns: string[][]
  /** The npm commands that were replayed, as run. */
  npmRuns: string[][]
  /** What each COPY brought in: container destination <- source (context path or stage:path). */
  copies: Array<{ from: string | null, sources: string[], dest: string }>
}

const GLOB = /[*?[\]]/

/** Maps a container path of a replayed stage (under its WORKDIR) to the host. */
function toHost (r: { dir: string, workdir: string }, containerPath: string): string {
  const rel = posix.relative(r.workdir, containerPath)
  if (rel.startsWith('..') || posix.isAbsolute(rel)) {
    throw new Error(`${containerPath} is outside the stage's WORKDIR ${r.workdir}: this test cannot reproduce it`)
  }
  return join(r.dir, ...rel.split('/').filter((p) => p !== ''))
}

/** Every file under `path` (relative to the repository), `/`-separated. */
function filesUnder (path: string): string[] {
  const abs = join(repoRoot, path)
  if (!statSync(abs).isDirectory()) return [path]
  return readdirSync(abs, { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile())
    .map((d) => relative(repoRoot, join(d.parentPath, d.name)).split(sep).join('/'))
}

async function replayStage (stage: Stage, dir: string, done: Map<string, Replayed>, ignore: string[]): Promise<Replayed> {
  const r: Replayed = {
    stage,
    dir,
    workdir: '',
    env: {},
    user: null,
    cmd: null,
    entrypoint: null,
    healthcheck: null,
    exposed: [],
    skippedRuns: [],
    npmRuns: [],
    copies: []
  }
  const needWorkdir = (ins: Instruction): void => {
    if (r.workdir === '') throw new Error(`Dockerfile line ${ins.line}: ${ins.keyword} before WORKDIR (this test maps WORKDIR to a temporary directory)`)
  }
  for (const ins of stage.instructions) {
    switch (ins.keyword) {
      case 'WORKDIR': {
        const next = posix.resolve(r.workdir === '' ? '/' : r.workdir, ins.args.trim())
        if (r.workdir !== '' && next !== r.workdir) throw new Error(`Dockerfile line ${ins.line}: a second WORKDIR is not supported by this test`)
        r.workdir = next
        mkdirSync(dir, { recursive: true })
        break
      }
      case 'COPY': {
        needWorkdir(ins)
        for (const flag of Object.keys(ins.flags)) {
          if (!['from', 'chown', 'chmod'].includes(flag)) throw new Error(`Dockerfile line ${ins.line}: COPY --${flag} is not supported by this test`)
        }
        const { sources, dest } = parseCopy(ins.args)
        const from = ins.flags.from ?? null
        const destContainer = posix.resolve(r.workdir, dest)
        const destHost = toHost(r, destContainer)
        const intoDir = dest.endsWith('/') || sources.length > 1
        for (const src of sources) {
          if (GLOB.test(src)) throw new Error(`Dockerfile line ${ins.line}: wildcards in COPY are not supported by this test`)
          let srcHost: string
          if (from !== null) {
            const other = done.get(from)
            if (other === undefined) throw new Error(`Dockerfile line ${ins.line}: COPY --from=${from} names no earlier stage`)
            srcHost = toHost(other, posix.resolve(other.workdir, src))
          } else {
            const rel = posix.normalize(src).replace(/^\.\/|\/$/g, '')
            if (rel.startsWith('..') || posix.isAbsolute(rel)) throw new Error(`COPY ${src} leaves the build context`)
            srcHost = join(repoRoot, rel)
            if (!existsSync(srcHost)) throw new Error(`Dockerfile line ${ins.line}: COPY ${src}: no such file in the repository`)
            // a real build fails (or silently misses files) when .dockerignore excludes what COPY names
            const excluded = filesUnder(rel).filter((f) => dockerIgnored(ignore, f))
            if (excluded.length > 0) throw new Error(`Dockerfile line ${ins.line}: .dockerignore excludes ${excluded.slice(0, 5).join(', ')} that COPY ${src} needs`)
          }
          if (!existsSync(srcHost)) throw new Error(`Dockerfile line ${ins.line}: COPY ${src}: the source is missing`)
          if (statSync(srcHost).isDirectory()) {
            // Docker copies a directory's contents into the destination
            cpSync(srcHost, destHost, { recursive: true })
          } else {
            const target = intoDir ? join(destHost, basename(src)) : destHost
            mkdirSync(dirname(target), { recursive: true })
            cpSync(srcHost, target)
          }
        }
        r.copies.push({ from, sources, dest: destContainer })
        break
      }
      case 'RUN': {
        if (Object.keys(ins.flags).length > 0) throw new Error(`Dockerfile line ${ins.line}: RUN options are not supported by this test`)
        const commands = splitRun(ins.args)
        if (commands.some((words) => words[0] === 'apt-get')) {
          // the image's Debian packages cannot be installed here; the test checks what they are
          r.skippedRuns.push(...commands)
          break
        }
        needWorkdir(ins)
        for (const words of commands) {
          if (words[0] !== 'npm') throw new Error(`Dockerfile line ${ins.line}: RUN ${words.join(' ')} is neither npm nor apt-get: this test cannot replay it`)
          if (words[1] === 'cache') {
            // `npm cache clean` would empty this machine's shared cache; it only makes the image smaller
            r.skippedRuns.push(words)
            continue
          }
          const args = words.slice(1)
          // the npm cache of this machine (filled by CI's own npm ci) stands for the registry
          if (args[0] === 'ci' || args[0] === 'install') args.push('--prefer-offline')
          r.npmRuns.push(['npm', ...args])
          await run('npm', args, { cwd: toHost(r, r.workdir), env: cleanEnv(r.env) })
        }
        break
      }
      case 'ENV':
        for (const [k, v] of parseEnv(ins.args)) r.env[k] = v
        break
      case 'USER':
        r.user = ins.args.trim()
        break
      case 'CMD':
        r.cmd = execForm(ins.args)
        break
      case 'ENTRYPOINT':
        r.entrypoint = execForm(ins.args)
        break
      case 'HEALTHCHECK':
        r.healthcheck = parseHealthcheck(ins)
        break
      case 'EXPOSE':
        r.exposed.push(...ins.args.trim().split(/\s+/))
        break
      case 'ARG':
      case 'LABEL':
        break
      default:
        throw new Error(`Dockerfile line ${ins.line}: ${ins.keyword} is not replayed by this test`)
    }
  }
  return r
}

describe('the Dockerfile, replayed without a container engine', () => {
  const dockerfile: Dockerfile = parseDockerfile(readRepoFile('Dockerfile'))
  const ignore = parseDockerignore(readRepoFile('.dockerignore'))
  const pkg = JSON.parse(readRepoFile('package.json')) as {
    main: string
    engines: { node: string }
    scripts: Record<string, string>
    dependencies: Record<string, string>
    devDependencies: Record<string, string>
  }
  const done = new Map<string, Replayed>()
  let work = ''
  let server: Proc | undefined

  beforeAll(() => {
    work = realpathSync(mkdtempSync(join(tmpdir(), 'tensor-image-')))
  })

  afterAll(async () => {
    await stopProcess(server, 'SIGKILL')
    // two node_modules trees: rm is much faster than fs.rmSync at this
    if (work !== '') await run('rm', ['-rf', work], { env: cleanEnv({}) }).catch(() => rmSync(work, { recursive: true, force: true }))
  }, 180_000)

  it('is a two-stage build on node:22-slim that follows the Node images\' practices', () => {
    expect(dockerfile.stages.map((s) => s.image)).toEqual(['node:22-slim', 'node:22-slim'])
    // the image's Node (22) satisfies package.json's engines
    expect(pkg.engines.node).toMatch(/^>=\s*(20|21|22)(\.|$)/)
    const build = dockerfile.stage('build')
    const runtime = dockerfile.stages[dockerfile.stages.length - 1]
    expect(runtime.name).not.toBe('build')
    const runs = (s: Stage): string[] => s.instructions.filter((i) => i.keyword === 'RUN').map((i) => i.args)
    expect(runs(build).some((a) => /^npm ci\b/.test(a) && !a.includes('--omit=dev'))).toBe(true)
    expect(runs(build)).toContain('npm run build:server')
    expect(runs(runtime).some((a) => /^npm ci\b.*--omit=dev/.test(a))).toBe(true)
    // the runtime stage takes from the build stage only the compiled dist/
    const fromBuild = runtime.instructions.filter((i) => i.keyword === 'COPY' && i.flags.from !== undefined)
    expect(fromBuild.map((i) => [i.flags.from, parseCopy(i.args).sources])).toEqual([['build', ['/app/dist']]])
    // and from the context only the package files
    const fromContext = runtime.instructions.filter((i) => i.keyword === 'COPY' && i.flags.from === undefined)
    expect(fromContext.flatMap((i) => parseCopy(i.args).sources).sort()).toEqual(['package-lock.json', 'package.json'])
    // tini from Debian, as PID 1
    const apt = runs(runtime).find((a) => a.includes('apt-get install'))
    expect(apt).toBeDefined()
    expect(apt).toMatch(/apt-get install -y --no-install-recommends tini\b/)
    expect(apt).toMatch(/rm -rf \/var\/lib\/apt\/lists/)
    const last = (s: Stage, k: string): Instruction | undefined => s.instructions.filter((i) => i.keyword === k).at(-1)
    expect(execForm(last(runtime, 'ENTRYPOINT')?.args ?? 'null')).toEqual(['/usr/bin/tini', '--'])
    // node itself, in exec form; the file is package.json's main (npm start runs the same file)
    const cmd = execForm(last(runtime, 'CMD')?.args ?? 'null')
    expect(cmd).toEqual(['node', pkg.main])
    // npm start sets the allocator's settings that the image sets in its ENV (checked below)
    expect(pkg.scripts.start).toMatch(new RegExp(`^GLIBC_TUNABLES=\\S+ node ${pkg.main}$`))
    // not root; USER comes after every RUN
    expect(last(runtime, 'USER')?.args).toBe('node')
    const userAt = runtime.instructions.findIndex((i) => i.keyword === 'USER')
    expect(runtime.instructions.findLastIndex((i) => i.keyword === 'RUN')).toBeLessThan(userAt)
    const env = Object.fromEntries(runtime.instructions.filter((i) => i.keyword === 'ENV').flatMap((i) => parseEnv(i.args)))
    expect(env).toMatchObject({ HOST: '0.0.0.0', NODE_ENV: 'production', PORT: '3000' })
    expect(env.GLIBC_TUNABLES).toBe(/^GLIBC_TUNABLES=(\S+) /.exec(pkg.scripts.start)?.[1])
    expect(env.GLIBC_TUNABLES).toMatch(/glibc\.malloc\.mmap_threshold=\d+/)
    expect(last(runtime, 'EXPOSE')?.args).toBe('3000')
    // a health check with node's fetch: the slim image has no curl or wget
    const hc = parseHealthcheck(last(runtime, 'HEALTHCHECK') as Instruction)
    expect(hc?.command.slice(0, 2)).toEqual(['node', '-e'])
    expect(hc?.command[2]).toMatch(/fetch\(.*\/health/)
    expect(hc?.command.join(' ')).not.toMatch(/curl|wget/)
    // .dockerignore keeps the heavy and private parts out of the context
    for (const path of ['node_modules/x/index.js', 'dist/server.js', 'test/a.test.ts', '.git/config', 'npm-debug.log']) {
      expect(dockerIgnored(ignore, path), path).toBe(true)
    }
    for (const path of ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'src/server.ts']) {
      expect(dockerIgnored(ignore, path), path).toBe(false)
    }
  })

  it('build stage: npm ci and npm run build:server from exactly the copied files give dist/', async () => {
    const build = await replayStage(dockerfile.stage('build'), join(work, 'build'), done, ignore)
    done.set('build', build)
    expect(build.npmRuns.map((w) => w.slice(0, 3).join(' '))).toEqual(['npm ci --ignore-scripts', 'npm run build:server'])
    expect(existsSync(join(build.dir, 'dist', 'server.js'))).toBe(true)
    // the pool starts its worker from this compiled file
    expect(existsSync(join(build.dir, 'dist', 'worker', 'index.js'))).toBe(true)
  }, STEP_TIMEOUT)

  it('runtime stage: production dependencies and dist/ only start, serve, pass the health check and drain on SIGTERM', async () => {
    const build = done.get('build')
    expect(build, 'the build stage ran').toBeDefined()
    const stage = dockerfile.stages[dockerfile.stages.length - 1]
    const rt = await replayStage(stage, join(work, 'runtime'), done, ignore)

    // tini and its ENTRYPOINT are not replayed, but they are there
    expect(rt.skippedRuns.find((w) => w[0] === 'apt-get' && w[1] === 'install')).toEqual(
      ['apt-get', 'install', '-y', '--no-install-recommends', 'tini'])
    expect(rt.entrypoint).toEqual(['/usr/bin/tini', '--'])
    expect(rt.user).toBe('node')

    // what the image holds: package files, production node_modules, dist/; no sources, no dev tools
    expect(readdirSync(rt.dir).sort()).toEqual(['dist', 'node_modules', 'package-lock.json', 'package.json'])
    for (const dev of ['typescript', 'vitest', 'tsx', 'eslint', 'playwright-core']) {
      expect(pkg.dependencies[dev], `${dev} is a production dependency`).toBeUndefined()
      expect(existsSync(join(rt.dir, 'node_modules', dev)), `${dev} in the runtime node_modules`).toBe(false)
    }
    for (const dep of Object.keys(pkg.dependencies)) {
      expect(existsSync(join(rt.dir, 'node_modules', ...dep.split('/'), 'package.json')), dep).toBe(true)
    }
    // the native engine's binaries of this platform only (the image's: npm run prune-platforms)
    const napi = join(rt.dir, 'node_modules', 'onnxruntime-node', 'bin', 'napi-v6')
    expect(readdirSync(napi)).toEqual([process.platform])
    expect(readdirSync(join(napi, process.platform))).toEqual([process.arch])
    // nothing above the runtime directory can lend it a module
    for (let d = dirname(rt.dir); ; d = dirname(d)) {
      expect(existsSync(join(d, 'node_modules')), `${d}/node_modules would be visible to the service`).toBe(false)
      if (dirname(d) === d) break
    }

    // CMD with the stage's ENV; the port and address overridden for this machine
    const port = await freePort()
    const env = cleanEnv({ ...rt.env, PORT: String(port), HOST: '127.0.0.1', WORKERS: '1' })
    expect(rt.cmd?.[0]).toBe('node')
    server = startProcess(process.execPath, (rt.cmd as string[]).slice(1), { cwd: toHost(rt, rt.workdir), env })
    const base = `http://127.0.0.1:${port}`
    await waitForHttp(`${base}/health`, { proc: server, timeoutMs: 30_000 })
    expect(await (await fetch(`${base}/health`)).json()).toEqual({ status: 'ok' })
    await waitForHttp(`${base}/ready`, { proc: server, timeoutMs: 10_000 })

    const res = await fetch(`${base}/v1/matmul`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(MATMUL_BODY)
    })
    expect(res.status, server.output().slice(-2000)).toBe(200)
    expect(await res.json()).toEqual({ result: MATMUL_RESULT })
    // a product large enough for a worker, whose native engine loads from the pruned binaries
    const n = 64
    const big = await fetch(`${base}/v1/matmul`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        a: { shape: [n, n], data: new Array(n * n).fill(1) },
        b: { shape: [n, n], data: Array.from({ length: n * n }, (_, i) => i % n) },
        encoding: 'flat'
      })
    })
    expect(big.status, server.output().slice(-2000)).toBe(200)
    expect(((await big.json()) as { result: { data: number[] } }).result.data).toEqual(Array.from({ length: n * n }, (_, i) => n * (i % n)))

    // Swagger UI's assets come from a production dependency
    const docs = await fetch(`${base}/docs/`)
    expect(docs.status).toBe(200)
    const html = await docs.text()
    const script = /src="\.?\/?([^"]*swagger-ui-bundle\.js)"/.exec(html)
    expect(script, html.slice(0, 500)).not.toBeNull()
    const bundle = await fetch(new URL(script?.[1] ?? '', `${base}/docs/`))
    expect(bundle.status).toBe(200)
    await bundle.arrayBuffer()
    // the playground's files, which the build copies into dist/
    for (const path of ['/playground', '/playground/playground.js', '/playground/playground.css']) {
      const file = await fetch(`${base}${path}`)
      expect(file.status, path).toBe(200)
      expect((await file.text()).length, path).toBeGreaterThan(1000)
    }
    const doc = await fetch(`${base}/openapi.json`)
    expect(doc.status).toBe(200)
    await doc.arrayBuffer() // an unread body keeps its connection busy, and the drain would wait on it

    // the HEALTHCHECK command, as the engine runs it inside the container (same environment)
    const hc = rt.healthcheck?.command ?? []
    expect(hc[0]).toBe('node')
    const healthy = startProcess(process.execPath, hc.slice(1), { cwd: toHost(rt, rt.workdir), env })
    expect(await healthy.exited, healthy.output()).toBe(0)

    // SIGTERM (tini passes it on): the service drains and exits 0
    server.child.kill('SIGTERM')
    const timer = setTimeout(() => server?.child.kill('SIGKILL'), 20_000)
    const code = await server.exited
    clearTimeout(timer)
    expect(code, server.output().slice(-2000)).toBe(0)
    expect(server.output()).toMatch(/draining/)

    // and the health check now fails
    const unhealthy = startProcess(process.execPath, hc.slice(1), { cwd: toHost(rt, rt.workdir), env })
    expect(await unhealthy.exited).not.toBe(0)
  }, STEP_TIMEOUT)
})
