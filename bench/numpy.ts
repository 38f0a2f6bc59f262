/**
 * The NumPy peer of the kernel benchmark: runs bench/numpy_kernels.py with Debian's /usr/bin/python3
 * (python3-numpy, libopenblas0-pthread) on one BLAS thread, OPENBLAS_NUM_THREADS=1, and without
 * OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, so OpenBLAS picks its kernels for this CPU itself.
 * Each case's time is the median of several runs after a warm-up (see the script's docstring).
 */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { PYTHON, checkPython, peerEnv } from './peer.js'

type DType = 'float32' | 'float64'

/** One case; `name` keys the result and must be unique. conv2d has stride 1. `backward`: its gradients instead. */
export type NumpyCase = { name: string, dtype: DType, backward?: boolean } & (
  | { kind: 'matmul', m: number, k: number, n: number }
  | { kind: 'batched', batch: number, m: number, k: number, n: number }
  | { kind: 'conv2d', N: number, C: number, H: number, W: number, K: number, kh: number, kw: number, pad: number }
  | { kind: 'attention', B: number, L: number, E: number }
  | { kind: 'einsum', equation: string, shapes: number[][], flops: number }
  /** An elementwise operation or a reduction (`a + b`, `np.exp(x)`, `x.sum(axis)`, …): its "gflops" are GB/s, `bytes` read and written per call. */
  | { kind: 'elementwise', op: string, shapes: number[][], bytes: number, axis?: number }
)

export interface NumpyResult { gflops: number, ms: number }

/** Times the cases in NumPy; `blas` names the BLAS library NumPy loaded, its configuration and threads. */
export async function numpyRun (cases: NumpyCase[]): Promise<{ blas: string, results: Map<string, NumpyResult> }> {
  const names = new Set(cases.map(c => c.name))
  if (names.size !== cases.length) throw new Error('numpy cases need distinct names')
  checkPython(['numpy'])
  const child = spawn(PYTHON, [fileURLToPath(new URL('numpy_kernels.py', import.meta.url))], {
    env: peerEnv(),
    stdio: ['pipe', 'pipe', 'pipe']
  })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (s: string) => { stdout += s })
  child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s })
  const exited = once(child, 'close')
  child.stdin.end(JSON.stringify(cases))
  const [code, signal] = await exited as [number | null, NodeJS.Signals | null]
  if (code !== 0) throw new Error(`bench/numpy_kernels.py failed (${code ?? signal}): ${stderr}`)
  const out = JSON.parse(stdout) as { blas: string, results: Array<{ name: string } & NumpyResult> }
  return { blas: out.blas, results: new Map(out.results.map(r => [r.name, { gflops: r.gflops, ms: r.ms }])) }
}

/** GFLOP/s and median ms of each case in NumPy, by case name. */
export async function runNumpy (cases: NumpyCase[]): Promise<Map<string, NumpyResult>> {
  return (await numpyRun(cases)).results
}
