/**
 * Starts the FastAPI + NumPy peer (bench/peer/app.py) for the HTTP benchmark: Debian's /usr/bin/python3
 * running uvicorn with 2 workers, uvloop and httptools, no access log, on a free loopback port, with
 * OPENBLAS_NUM_THREADS=1 and without OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE.
 *
 * Needs: apt-get install python3-numpy libopenblas0-pthread python3-torch python3-fastapi python3-uvicorn python3-uvloop python3-httptools
 */
import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { freePort } from './serve.js'

export const PYTHON = '/usr/bin/python3'

/** The Debian package of each Python module the peers import. */
const PACKAGES: Record<string, string> = {
  numpy: 'python3-numpy',
  torch: 'python3-torch',
  fastapi: 'python3-fastapi',
  uvicorn: 'python3-uvicorn',
  uvloop: 'python3-uvloop',
  httptools: 'python3-httptools'
}

/** The environment of a NumPy peer: one BLAS thread, OpenBLAS's own detection of the core and its caches, glibc's allocator as it comes. */
export function peerEnv (): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, OPENBLAS_NUM_THREADS: '1' }
  delete env.OPENBLAS_CORETYPE
  delete env.OPENBLAS_L2_SIZE
  // (as a user starts it: glibc's allocator with its defaults)
  delete env.GLIBC_TUNABLES
  return env
}

/** Throws, naming the Debian packages to install, unless /usr/bin/python3 can import every module given. */
export function checkPython (modules: string[]): void {
  const probe = 'import importlib.util, sys\nprint(" ".join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))'
  const r = spawnSync(PYTHON, ['-c', probe, ...modules], { encoding: 'utf8' })
  const missing = r.error !== undefined || r.status !== 0 ? modules : r.stdout.trim().split(/\s+/).filter(m => m !== '')
  if (missing.length > 0) {
    const packages = [...(r.error !== undefined ? ['python3'] : []), ...missing.map(m => PACKAGES[m] ?? `python3-${m}`)]
    if (missing.includes('numpy')) packages.push('libopenblas0-pthread')
    throw new Error(`${PYTHON} ${r.error !== undefined ? `cannot run (${r.error.message})` : `lacks ${missing.join(', ')}`}: ` +
      `apt-get install ${packages.join(' ')}`)
  }
}

/**
 * Starts the peer and resolves once POST /v1/matmul answers 200; `stop` sends SIGTERM (SIGKILL after 10 s)
 * and waits for the exit. The peer's stdout is dropped and its stderr kept for the error if it does not start.
 */
export async function startPeer (): Promise<{ base: string, stop: () => Promise<void> }> {
  checkPython(['numpy', 'torch', 'fastapi', 'uvicorn', 'uvloop', 'httptools'])
  const port = await freePort()
  const base = `http://127.0.0.1:${port}`
  const server = spawn(PYTHON, [
    '-m', 'uvicorn', 'app:app', '--app-dir', fileURLToPath(new URL('peer', import.meta.url)),
    '--host', '127.0.0.1', '--port', String(port),
    '--workers', '2', '--loop', 'uvloop', '--http', 'httptools', '--no-access-log', '--log-level', 'warning'
  ], { env: peerEnv(), stdio: ['ignore', 'ignore', 'pipe'] })
  // The peer's log is kept, not shown: a benchmark client that stops mid-upload makes uvicorn log a
  // ClientDisconnect traceback. Its tail goes into the error if the peer does not start.
  let log = ''
  server.stderr.setEncoding('utf8').on('data', (chunk: string) => { log = (log + chunk).slice(-16_384) })
  const exited = once(server, 'exit')
  let gone = false
  server.on('exit', () => { gone = true })
  const stop = async (): Promise<void> => {
    if (gone) return
    server.kill('SIGTERM')
    const timer = setTimeout(() => server.kill('SIGKILL'), 10_000)
    await exited
    clearTimeout(timer)
  }
  const probe = JSON.stringify({ a: [[1, 2], [3, 4]], b: [[1, 0], [0, 1]] })
  for (let i = 0; ; i++) {
    const ok = await fetch(`${base}/v1/matmul`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: probe })
      .then(async r => { await r.arrayBuffer(); return r.ok }, () => false)
    if (ok) break
    if (gone || i > 150) {
      await stop()
      throw new Error(`the FastAPI peer did not answer on ${base} (${gone ? `exited with ${server.exitCode ?? server.signalCode}` : 'timed out'}); its log:\n${log}`)
    }
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  return { base, stop }
}
