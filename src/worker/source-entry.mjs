// Worker entry for runs from the TypeScript sources (vitest, tsx): Node 20 cannot start a worker
// from a .ts file, even with --import tsx in its execArgv, so this module loads it through tsx.
// The compiled service (dist/) starts dist/worker/index.js directly and never uses this file.
// Its exports must be index.ts's, every one (test/worker-entry.test.ts checks).
import { tsImport } from 'tsx/esm/api'

const kernels = await tsImport('./index.ts', import.meta.url)

export const { ping, request, run } = kernels
