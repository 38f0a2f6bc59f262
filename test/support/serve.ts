/**
 * Starts the service as `npm start` does (same drain on signals), from the sources, with a
 * slow worker so a request can be in flight when the signal arrives.
 * Usage: tsx test/support/serve.ts   (PORT, WORKERS, SHUTDOWN_GRACE_MS, SLOW_WORKER_MS from the environment)
 */
import { loadConfig } from '../../src/config.js'
import { start } from '../../src/server.js'

const app = await start({ ...loadConfig(), inlineMaxFlops: 0, workerFile: new URL('./slow-worker.mjs', import.meta.url).href })
process.stdout.write(`listening ${(app.server.address() as { port: number }).port}\n`)
