/** Writes the OpenAPI document the app generates to openapi/openapi.json (npm run openapi). */
import { writeFileSync } from 'node:fs'
import { buildApp } from '../src/app.js'
import { openapiText } from '../src/openapi.js'

const app = await buildApp({ logLevel: 'silent', workers: 1 })
await app.ready()
writeFileSync(new URL('../openapi/openapi.json', import.meta.url), openapiText(app.swagger()))
await app.close()
