/**
 * Starts the service as `npm start` does, from the sources, configured by the environment alone.
 * Usage: node --import tsx test/support/serve-plain.ts   (prints "listening <port>")
 */
import { loadConfig } from '../../src/config.js'
import { start } from '../../src/server.js'

const app = await start(loadConfig())
process.stdout.write(`listening ${(app.server.address() as { port: number }).port}\n`)
