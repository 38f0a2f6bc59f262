/**
 * Scale-out behind the committed load balancer: two instances of the compiled service (dist/)
 * behind Debian's nginx running deploy/nginx/nginx.conf itself, with only the addresses and the
 * pid, log and temp paths substituted (so it runs on loopback as root without touching /etc or
 * /var). Every request is answered correctly, both instances serve, and one instance drained
 * with SIGTERM under load costs no request: nginx retries the other instance on connection
 * errors and on the draining instance's 503 (`proxy_next_upstream ... http_503 non_idempotent`,
 * acceptable because every route is a pure, stateless computation).
 *
 * Skipped only when nginx is missing outside CI; in CI (.ci/run installs nginx) it always runs.
 */
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  cleanEnv, distIsFresh, dotFrom, freePort, MATMUL_BODY, MATMUL_RESULT, type Proc, readRepoFile, repoRoot, run, skipWithout,
  startProcess, stopProcess, waitForHttp, which
} from './helpers.js'

const nginx = which('nginx')
const skip = skipWithout(nginx)

/**
 * deploy/nginx/nginx.conf made runnable here: the upstream `api:3000` becomes the given
 * addresses (same server parameters), `listen 8080` becomes loopback:port, and pid, logs and
 * temp files go to `prefix`. Every other line stays as committed (the test checks that).
 */
export function localNginxConf (committed: string, upstreams: string[], listenPort: number, prefix: string): string {
  const replaceOnce = (text: string, re: RegExp, by: (m: RegExpExecArray) => string): string => {
    const matches = [...text.matchAll(new RegExp(re.source, re.flags.includes('g') ? re.flags : re.flags + 'g'))]
    if (matches.length !== 1) throw new Error(`nginx.conf: expected exactly one match of ${re}, found ${matches.length}`)
    const m = re.exec(text) as RegExpExecArray
    return text.slice(0, m.index) + by(m) + text.slice(m.index + m[0].length)
  }
  let conf = committed
  conf = replaceOnce(conf, /^(\s*)server\s+api:3000((?:\s+[^;\s]+)*)\s*;/m,
    (m) => upstreams.map((u) => `${m[1]}server ${u}${m[2]};`).join('\n'))
  conf = replaceOnce(conf, /^(\s*)listen\s+8080\s*;/m, (m) => `${m[1]}listen 127.0.0.1:${listenPort};`)
  conf = replaceOnce(conf, /^pid\s+\S+;/m, () => `pid ${prefix}/nginx.pid;`)
  conf = replaceOnce(conf, /^error_log\s+\S+(\s+\w+)?;/m, (m) => `error_log ${prefix}/error.log${m[1] ?? ''};`)
  conf = replaceOnce(conf, /^(\s*)access_log\s+\S+(\s+\w+)?;/m, (m) => `${m[1]}access_log ${prefix}/access.log${m[2] ?? ''};`)
  conf = replaceOnce(conf, /^http\s*\{/m, (m) => [
    m[0],
    ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `  ${t}_temp_path ${prefix}/${t}_temp;`)
  ].join('\n'))
  return conf
}

interface Outcome { status: number, ok: boolean, detail: string }

async function matmul (base: string): Promise<Outcome> {
  try {
    const res = await fetch(`${base}/v1/matmul`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(MATMUL_BODY),
      signal: AbortSignal.timeout(15_000)
    })
    const text = await res.text()
    let ok = false
    try {
      ok = res.status === 200 && JSON.stringify(JSON.parse(text)) === JSON.stringify({ result: MATMUL_RESULT })
    } catch {}
    return { status: res.status, ok, detail: text.slice(0, 300) }
  } catch (err) {
    return { status: 0, ok: false, detail: (err as Error).message }
  }
}

/** `total` requests, `concurrency` at a time; `onProgress` sees the count of finished ones. */
async function load (base: string, total: number, concurrency: number, onProgress?: (done: number) => void): Promise<Outcome[]> {
  const outcomes: Outcome[] = []
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < total) {
      next++
      outcomes.push(await matmul(base))
      onProgress?.(outcomes.length)
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  return outcomes
}

/** The access log's lines for matmul, as the upstream address(es) each went to. */
function upstreamsOf (prefix: string): string[][] {
  const log = existsSync(join(prefix, 'access.log')) ? readFileSync(join(prefix, 'access.log'), 'utf8') : ''
  return log.split('\n').filter((l) => l.includes('/v1/matmul')).map((l) => {
    const m = /upstream=(.*?) upstream_status=/.exec(l)
    return m === null ? [] : m[1].split(/,\s*|\s*:\s+/).filter((a) => a !== '')
  })
}

const title = 'two instances behind deploy/nginx/nginx.conf (Debian nginx on loopback)' +
  (skip ? ' - SKIPPED: no nginx on this machine (apt-get install -y nginx); in CI it always runs' : '')

describe.skipIf(skip)(title, () => {
  let prefix = ''
  let lb: Proc | undefined
  const instances: Proc[] = []
  const ports: number[] = []
  let base = ''

  beforeAll(async () => {
    if (!distIsFresh()) await run('npm', ['run', 'build'], { cwd: repoRoot, env: cleanEnv({}) })
    prefix = mkdtempSync(join(tmpdir(), 'tensor-lb-'))
    // nginx's workers run as an unprivileged user: they must reach the temp directories
    chmodSync(prefix, 0o755)
    for (let i = 0; i < 2; i++) {
      const port = await freePort()
      ports.push(port)
      instances.push(startProcess(process.execPath, ['dist/server.js'], {
        cwd: repoRoot,
        env: cleanEnv({ PORT: String(port), HOST: '127.0.0.1', WORKERS: '1', LOG_LEVEL: 'warn', NODE_ENV: 'production' })
      }))
    }
    for (let i = 0; i < 2; i++) await waitForHttp(`http://127.0.0.1:${ports[i]}/ready`, { proc: instances[i] })

    const lbPort = await freePort()
    const committed = readRepoFile('deploy/nginx/nginx.conf')
    const conf = localNginxConf(committed, ports.map((p) => `127.0.0.1:${p}`), lbPort, prefix)
    writeFileSync(join(prefix, 'nginx.conf'), conf)
    await run(nginx as string, ['-t', '-p', prefix, '-c', join(prefix, 'nginx.conf')], { cwd: prefix, env: cleanEnv({}) })
    lb = startProcess(nginx as string, ['-p', prefix, '-c', join(prefix, 'nginx.conf'), '-g', 'daemon off;'], { cwd: prefix, env: cleanEnv({}) })
    base = `http://127.0.0.1:${lbPort}`
    await waitForHttp(`${base}/health`, { proc: lb, timeoutMs: 15_000 })
  }, 120_000)

  afterAll(async () => {
    for (const p of instances) await stopProcess(p, 'SIGTERM')
    await stopProcess(lb, 'SIGTERM')
    if (prefix !== '') rmSync(prefix, { recursive: true, force: true })
  })

  it('runs the committed file with only addresses and paths changed', () => {
    const committed = readRepoFile('deploy/nginx/nginx.conf').split('\n')
    const local = readFileSync(join(prefix, 'nginx.conf'), 'utf8').split('\n')
    const changed = committed.filter((line) => !local.includes(line)).map((l) => l.trim())
    expect(changed.map((l) => l.split(/\s+/)[0]).sort()).toEqual(['access_log', 'error_log', 'listen', 'pid', 'server'])
    expect(committed.find((l) => /^\s*upstream api\s*\{/.test(l))).toBeDefined()
    expect(committed.join('\n')).toMatch(/proxy_next_upstream\s+error timeout http_503 non_idempotent;/)
  })

  it('answers every request correctly and spreads them over both instances', async () => {
    const outcomes = await load(base, 300, 8)
    const failed = outcomes.filter((o) => !o.ok)
    expect(failed.slice(0, 5), `${failed.length} of ${outcomes.length} failed`).toEqual([])
    expect(outcomes).toHaveLength(300)
    const served = new Map<string, number>()
    for (const addrs of upstreamsOf(prefix)) {
      const last = addrs.at(-1) ?? '?'
      served.set(last, (served.get(last) ?? 0) + 1)
    }
    for (const port of ports) {
      // round robin: about half each
      expect(served.get(`127.0.0.1:${port}`) ?? 0, JSON.stringify([...served])).toBeGreaterThan(60)
    }
  }, 60_000)

  it('loses no request while one instance drains on SIGTERM and exits 0', async () => {
    const logBefore = upstreamsOf(prefix).length
    const [drained, survivor] = instances
    let signalled = false
    const outcomes = await load(base, 400, 8, (done) => {
      if (!signalled && done >= 100) {
        signalled = true
        drained.child.kill('SIGTERM')
      }
    })
    expect(signalled).toBe(true)
    const code = await Promise.race([drained.exited, new Promise((resolve) => setTimeout(() => resolve('still running'), 20_000))])
    expect(code, drained.output().slice(-2000)).toBe(0)
    const failed = outcomes.filter((o) => !o.ok)
    expect(failed.slice(0, 5), `${failed.length} of ${outcomes.length} failed`).toEqual([])
    expect(outcomes).toHaveLength(400)
    // after the drain the survivor served the rest
    const after = upstreamsOf(prefix).slice(logBefore)
    expect(after).toHaveLength(400)
    const lastServed = after.slice(-100).map((a) => a.at(-1))
    expect(new Set(lastServed)).toEqual(new Set([`127.0.0.1:${ports[1]}`]))
    expect(survivor.child.exitCode).toBeNull()
  }, 60_000)

  it('answers a JSON error of its own when no instance is left', async () => {
    expect(await stopProcess(instances[1], 'SIGTERM')).toBe(0)
    const res = await fetch(`${base}/v1/matmul`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(MATMUL_BODY)
    })
    expect(res.status).toBe(502)
    expect(res.headers.get('content-type')).toMatch(/^application\/json/)
    expect(await res.json()).toMatchObject({ statusCode: 502, code: 'BAD_GATEWAY' })
  }, 30_000)
})

const proxyTitle = 'TRUST_PROXY behind deploy/nginx/nginx.conf: clients limited apart, spoofing ignored' +
  (skip ? ' - SKIPPED: no nginx on this machine (apt-get install -y nginx); in CI it always runs' : '')

describe.skipIf(skip)(proxyTitle, () => {
  let prefix = ''
  let lb: Proc | undefined
  let instance: Proc | undefined
  let direct = ''
  let base = ''

  beforeAll(async () => {
    if (!distIsFresh()) await run('npm', ['run', 'build'], { cwd: repoRoot, env: cleanEnv({}) })
    prefix = mkdtempSync(join(tmpdir(), 'tensor-proxy-'))
    chmodSync(prefix, 0o755)
    const port = await freePort()
    direct = `http://127.0.0.1:${port}`
    // nginx connects from 127.0.0.1: that address alone is trusted; 3 operation requests a minute per client
    instance = startProcess(process.execPath, ['dist/server.js'], {
      cwd: repoRoot,
      env: cleanEnv({ PORT: String(port), HOST: '127.0.0.1', WORKERS: '1', LOG_LEVEL: 'warn', TRUST_PROXY: '127.0.0.1', RATE_LIMIT_MAX: '3' })
    })
    await waitForHttp(`${direct}/ready`, { proc: instance })
    const lbPort = await freePort()
    writeFileSync(join(prefix, 'nginx.conf'), localNginxConf(readRepoFile('deploy/nginx/nginx.conf'), [`127.0.0.1:${port}`], lbPort, prefix))
    lb = startProcess(nginx as string, ['-p', prefix, '-c', join(prefix, 'nginx.conf'), '-g', 'daemon off;'], { cwd: prefix, env: cleanEnv({}) })
    base = `http://127.0.0.1:${lbPort}`
    await waitForHttp(`${base}/health`, { proc: lb, timeoutMs: 15_000 })
  }, 120_000)

  afterAll(async () => {
    await stopProcess(instance, 'SIGTERM')
    await stopProcess(lb, 'SIGTERM')
    if (prefix !== '') rmSync(prefix, { recursive: true, force: true })
  })

  it('two clients behind nginx (127.0.0.2 and 127.0.0.3) have a limit each', async () => {
    const first: number[] = []
    for (let i = 0; i < 4; i++) first.push(await dotFrom(base, '127.0.0.2'))
    expect(first).toEqual([200, 200, 200, 429])
    // the second client's own count, though nginx connects from the same address for both
    expect(await dotFrom(base, '127.0.0.3')).toBe(200)
    // a client's own X-Forwarded-For is kept by nginx, left of the address nginx saw: not believed
    expect(await dotFrom(base, '127.0.0.2', { 'x-forwarded-for': '10.1.2.3' })).toBe(429)
  })

  it('a spoofed X-Forwarded-For sent straight to the replica changes nothing', async () => {
    const spoofed: number[] = []
    for (let i = 0; i < 4; i++) spoofed.push(await dotFrom(direct, '127.0.0.4', { 'x-forwarded-for': `10.9.0.${i}` }))
    expect(spoofed).toEqual([200, 200, 200, 429])
    // nor does naming another client's address: it is this peer that is counted
    expect(await dotFrom(direct, '127.0.0.5', { 'x-forwarded-for': '127.0.0.3' })).toBe(200)
  })
})
