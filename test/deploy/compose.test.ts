/**
 * docker-compose.yml without an engine: the `api` service scales (no fixed host port), carries
 * the configuration of docs/configuration.md with its defaults, the Dockerfile's health check and a stop grace
 * period longer than the drain; the `lb` service runs deploy/nginx/nginx.conf, which balances
 * over `api:3000` and retries on the other instances. (scaleout.test.ts runs that nginx file.)
 */
import { describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { defaultConfig } from '../../src/config.js'
import { parseDockerfile, parseHealthcheck } from './dockerfile.js'
import { readmeConfiguration, readRepoFile } from './helpers.js'

/** "40s", "1m30s" -> seconds. */
function seconds (duration: string): number {
  let total = 0
  for (const [, n, unit] of duration.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) {
    total += Number(n) * ({ ms: 0.001, s: 1, m: 60, h: 3600 } as Record<string, number>)[unit]
  }
  return total
}

/** `${NAME:-default}` -> default; a literal stays as it is. */
function defaultOf (value: unknown): string {
  const s = String(value)
  const m = /^\$\{([A-Z_][A-Z0-9_]*):-(.*)\}$/.exec(s)
  return m === null ? s : defaultOf(m[2]) // (a default may be another variable's: ${WORKERS:-${API_CPUS:-2}})
}

/** nginx's size syntax (65m, 1k, 1048576) in bytes. */
function bytes (size: string): number {
  const m = /^(\d+)([kKmMgG]?)$/.exec(size)
  if (m === null) return NaN
  return Number(m[1]) * ({ '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 } as Record<string, number>)[m[2].toLowerCase()]
}

describe('docker-compose.yml', () => {
  const compose = parse(readRepoFile('docker-compose.yml'))
  const api = compose.services.api
  const lb = compose.services.lb

  it('has the api, redis and lb services; api builds this repository and publishes no host port', () => {
    expect(Object.keys(compose.services).sort()).toEqual(['api', 'lb', 'redis'])
    // the replicas' shared rate-limit counts: reachable on the compose network only
    expect(compose.services.redis.ports).toBeUndefined()
    expect(api.build).toBe('.')
    expect(api.ports).toBeUndefined()
    expect(api.container_name).toBeUndefined()
    expect(api.restart).toBe('unless-stopped')
    expect(api.deploy.resources.limits.cpus).toBeDefined()
    // the CPU limit is a variable (API_CPUS), so a one-CPU Docker host can lower it, and WORKERS follows it
    // eslint-disable-next-line no-template-curly-in-string
    expect(api.deploy.resources.limits.cpus).toBe('${API_CPUS:-2}')
    // eslint-disable-next-line no-template-curly-in-string
    expect(api.environment.WORKERS).toBe('${WORKERS:-${API_CPUS:-2}}')
    expect(api.deploy.resources.limits.memory).toBeDefined()
  })

  it('api carries every configuration variable of docs/configuration.md with its default', () => {
    const documented = readmeConfiguration()
    const env = api.environment as Record<string, unknown>
    expect(Object.keys(env).sort(), 'compose carries exactly the documented variables').toEqual([...documented.keys()].sort())
    for (const [name, value] of Object.entries(env)) {
      // HOST is 0.0.0.0 in a container; WORKERS follows the CPU limit rather than the host's cores
      if (name === 'HOST') expect(value).toBe('0.0.0.0')
      else if (name === 'WORKERS') expect(Number(defaultOf(value))).toBe(Number(defaultOf(api.deploy.resources.limits.cpus)))
      // pressure shedding, off by default, is switched on here: memory below the container's limit
      else if (name === 'MAX_EVENT_LOOP_DELAY_MS') expect(Number(defaultOf(value))).toBeGreaterThan(0)
      else if (name === 'MAX_RSS_BYTES') {
        const limit = /^(\d+)g$/.exec(api.deploy.resources.limits.memory)
        expect(limit).not.toBeNull()
        expect(Number(defaultOf(value))).toBeGreaterThan(0)
        expect(Number(defaultOf(value))).toBeLessThan(Number(limit![1]) * 2 ** 30)
      } else if (name === 'RATE_LIMIT_REDIS_URL') expect(defaultOf(value)).toBe('redis://redis:6379') // the redis service
      else if (name === 'TRUST_PROXY') expect(defaultOf(value)).toBe('uniquelocal') // nginx in front, on the compose network
      else if (documented.get(name) === 'unset') expect(defaultOf(value), name).toBe('')
      else expect(defaultOf(value), name).toBe(documented.get(name))
    }
  })

  it('api\'s health check is the Dockerfile\'s, and it stops later than the drain can take', () => {
    const runtime = parseDockerfile(readRepoFile('Dockerfile')).stages.at(-1)
    const hc = parseHealthcheck(runtime?.instructions.find((i) => i.keyword === 'HEALTHCHECK') as never)
    expect(api.healthcheck.test).toEqual(['CMD', ...(hc?.command ?? [])])
    // the drain ends by itself after SHUTDOWN_GRACE_MS (the service's default unless compose sets it)
    const drain = Number(api.environment.SHUTDOWN_GRACE_MS !== undefined ? defaultOf(api.environment.SHUTDOWN_GRACE_MS) : defaultConfig().shutdownGraceMs) / 1000
    expect(drain).toBeGreaterThan(0)
    expect(seconds(api.stop_grace_period)).toBeGreaterThan(drain)
  })

  it('lb is nginx with the committed configuration, on port 8080, after api is healthy', () => {
    expect(lb.image).toMatch(/^nginx:1\.2[7-9]|^nginx:1\.[3-9]\d/)
    expect(lb.ports).toEqual(['8080:8080'])
    expect(lb.volumes).toContain('./deploy/nginx/nginx.conf:/etc/nginx/nginx.conf:ro')
    expect(lb.depends_on.api.condition).toBe('service_healthy')
    const conf = readRepoFile('deploy/nginx/nginx.conf')
    expect(conf).toMatch(/upstream api \{[^}]*server api:3000\b/)
    expect(conf).toMatch(/^\s*listen 8080;/m)
    expect(conf).toMatch(/proxy_pass http:\/\/api;/)
    expect(conf).toMatch(/proxy_next_upstream error timeout http_503 non_idempotent;/)
    // nginx waits longer than the service's own task timeout, and takes a larger body than the
    // service: each is the partner of a setting of api (the compose file names the pairs)
    const read = /proxy_read_timeout (\w+);/.exec(conf)?.[1] ?? '0s'
    expect(seconds(read)).toBeGreaterThan(Number(defaultOf(api.environment.TASK_TIMEOUT_MS)) / 1000)
    const body = /client_max_body_size (\w+);/.exec(conf)?.[1] ?? '0'
    expect(bytes(body)).toBeGreaterThan(Number(defaultOf(api.environment.BODY_LIMIT_BYTES)))
    const text = readRepoFile('docker-compose.yml')
    expect(text).toMatch(/proxy_read_timeout/)
    expect(text).toMatch(/client_max_body_size/)
  })
})
