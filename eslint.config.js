import neostandard from 'neostandard'

export default [
  ...neostandard({ ts: true, ignores: ['dist/**', 'scratch/**', 'coverage/**', 'node_modules/**', 'asm/number-tables.ts', 'client/dist/**', 'client/src/openapi.ts'] })
]
