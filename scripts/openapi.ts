/**
 * Writes the OpenAPI document the app generates to openapi/openapi.json, and the client's types
 * generated from it to client/src/openapi.ts (npm run openapi).
 */
import { writeFileSync } from 'node:fs'
import { buildApp } from '../src/app.js'
import { openapiText } from '../src/openapi.js'
import { clientTypes } from './client-types.js'

const app = await buildApp({ logLevel: 'silent', workers: 1 })
await app.ready()
const doc = JSON.parse(openapiText(app.swagger()))
writeFileSync(new URL('../openapi/openapi.json', import.meta.url), openapiText(doc))
writeFileSync(new URL('../client/src/openapi.ts', import.meta.url), await clientTypes(doc))
await app.close()
