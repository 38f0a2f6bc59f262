/**
 * The committed WebAssembly module is what its source compiles to: rebuilding asm/kernels.ts with
 * the pinned asc (in memory, as `npm run build:wasm` does) reproduces src/kernels/wasm/kernels.ts
 * byte for byte. If this fails after editing asm/, run `npm run build:wasm` and commit the result.
 */
import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { compileKernels, renderModule, TARGET } from '../../scripts/build-wasm.js'
import { renderTables, TABLES_TARGET } from '../../scripts/number-tables.js'

describe('wasm build', () => {
  it(`rebuilding asm/kernels.ts reproduces ${TARGET}`, async () => {
    const committed = readFileSync(new URL(`../../${TARGET}`, import.meta.url), 'utf8')
    const rebuilt = renderModule(await compileKernels())
    expect(rebuilt === committed, 'src/kernels/wasm/kernels.ts is stale: run `npm run build:wasm`').toBe(true)
  }, 60000)
  it(`regenerating the tables reproduces ${TABLES_TARGET}`, () => {
    const committed = readFileSync(new URL(`../../${TABLES_TARGET}`, import.meta.url), 'utf8')
    expect(renderTables() === committed, `${TABLES_TARGET} is stale: run \`npm run build:wasm\``).toBe(true)
  })
})
