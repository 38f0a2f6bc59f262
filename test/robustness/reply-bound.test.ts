/**
 * Replies are bounded. [4096,1]·[1,4096] is 16.8 million values: 64 MB as float32, hundreds of MB
 * as nested JSON text. The real server process (default limits, one worker) refuses the nested
 * JSON reply from the shapes with 413 TOO_LARGE, keeps its resident memory (peak, VmHWM) within a
 * small multiple of the 64 MB binary result, and /health answers throughout; the same product
 * asked for in safetensors is computed and sent.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { checkFile } from '../helpers/safetensors.js'

const MB = 1024 * 1024
const RESULT_BYTES = 4096 * 4096 * 4

let child: ChildProcess
let base = ''

/** The process's current and peak resident memory, in bytes (Linux). */
function rss (): { now: number, peak: number } {
  const status = readFileSync(`/proc/${child.pid}/status`, 'utf8')
  const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1]) * 1024
  return { now: kb('VmRSS'), peak: kb('VmHWM') }
}

/** Resets the peak (VmHWM) to the current RSS (Linux 4.0 and later). */
function resetPeak (): void {
  writeFileSync(`/proc/${child.pid}/clear_refs`, '5')
}

beforeAll(async () => {
  child = spawn(process.execPath, ['--import', 'tsx', 'test/support/serve-plain.ts'], {
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'warn', WORKERS: '1' },
    stdio: ['ignore', 'pipe', 'inherit']
  })
  const port = await new Promise<number>((resolve, reject) => {
    let out = ''
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString()
      const m = /listening (\d+)/.exec(out)
      if (m !== null) resolve(Number(m[1]))
    })
    child.once('exit', () => reject(new Error(`server exited early: ${out}`)))
  })
  base = `http://127.0.0.1:${port}`
}, 60_000)

afterAll(() => { child?.kill('SIGKILL') })

const column = (dtype: string): object => ({ shape: [4096, 1], dtype, data: Array.from({ length: 4096 }, (_, i) => [((i % 97) - 48) / 7]) })
const row = (dtype: string): object => ({ shape: [1, 4096], dtype, data: [Array.from({ length: 4096 }, (_, i) => ((i % 89) - 44) / 3)] })

async function post (body: object, headers: Record<string, string> = {}): Promise<Response> {
  return await fetch(base + '/v1/matmul', { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) })
}

describe('a reply too big for JSON text', () => {
  it('[4096,1]·[1,4096] nested (float32 and float64): 413 TOO_LARGE from the shapes; RSS stays low; /health answers', async () => {
    // warm up (the workers, the engine, the parser), then measure from here
    expect((await post({ a: [[1]], b: [[2]] })).status).toBe(200)
    resetPeak()
    const before = rss()
    let healthy = 0
    const state = { polling: true }
    const poll = (async () => {
      while (state.polling) {
        const res = await fetch(base + '/health')
        expect(res.status).toBe(200)
        await res.text()
        healthy++
        await new Promise(resolve => setTimeout(resolve, 20))
      }
    })()
    for (const dtype of ['float32', 'float64']) {
      for (let i = 0; i < 3; i++) {
        const res = await post({ a: column(dtype), b: row(dtype) })
        expect(res.status).toBe(413)
        const body = await res.json() as { code: string, message: string }
        expect(body.code).toBe('TOO_LARGE')
        expect(body.message).toContain('result [4096,4096]')
        expect(body.message).toContain('"encoding": "base64"')
        expect(body.message).toContain('safetensors')
      }
    }
    // the bare nested arrays of the first report (float64)
    const bare = await post({ a: Array.from({ length: 4096 }, (_, i) => [i / 7]), b: [Array.from({ length: 4096 }, (_, i) => i / 3)] })
    expect(bare.status).toBe(413)
    await bare.text()
    state.polling = false
    await poll
    const after = rss()
    console.log(`RSS before ${(before.now / MB).toFixed(0)} MB, peak during the refused nested requests ${(after.peak / MB).toFixed(0)} MB`)
    expect(healthy).toBeGreaterThan(0)
    expect(after.peak - before.now).toBeLessThan(RESULT_BYTES)
  }, 120_000)

  it('the same product in safetensors is computed and sent: 64 MB, RSS within a small multiple of it; /health answers', async () => {
    resetPeak()
    const before = rss()
    const res = await post({ a: column('float32'), b: row('float32') }, { accept: 'application/octet-stream' })
    expect(res.status).toBe(200)
    const file = new Uint8Array(await res.arrayBuffer())
    expect(file.length).toBeGreaterThan(RESULT_BYTES)
    const n = Number(Buffer.from(file.buffer, 0, 8).readBigUInt64LE(0))
    expect(JSON.parse(Buffer.from(file.buffer, 8, n).toString())).toEqual({ result: { dtype: 'F32', shape: [4096, 4096], data_offsets: [0, RESULT_BYTES] } })
    const values = new Float32Array(file.buffer, 8 + n, 4096 * 4096)
    expect(values[0]).toBe(Math.fround((-48 / 7) * Math.fround(-44 / 3)))
    expect((await fetch(base + '/health')).status).toBe(200)
    const after = rss()
    console.log(`RSS before ${(before.now / MB).toFixed(0)} MB, peak with the 64 MB safetensors reply ${(after.peak / MB).toFixed(0)} MB`)
    expect(after.peak - before.now).toBeLessThan(5 * RESULT_BYTES)
    // (checkFile reads every value: a smaller file)
    const small = await post({ a: [[1], [2]], b: [[3, 4]] }, { accept: 'application/octet-stream' })
    expect(checkFile(new Uint8Array(await small.arrayBuffer())).tensors.result.values).toEqual([3, 4, 6, 8])
  }, 120_000)
})
