/**
 * The Kubernetes manifests (deploy/k8s, kustomize): each validated against the Kubernetes
 * OpenAPI schemas shipped by the `kubernetes-models` package, checked again by the TypeScript
 * compiler against the same package's types (which, unlike the schemas, reject unknown fields,
 * as the API server's strict field validation does), and checked against the app itself: the
 * probe paths answer 200, the ports agree, every variable is one docs/configuration.md documents, the
 * grace period covers the drain.
 */
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { Deployment } from 'kubernetes-models/apps/v1'
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2'
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1'
import { Service } from 'kubernetes-models/v1'
import ts from 'typescript'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseAllDocuments } from 'yaml'
import { buildApp } from '../../src/app.js'
import { defaultConfig } from '../../src/config.js'
import { parseDockerfile, parseHealthcheck } from './dockerfile.js'
import { readmeConfiguration, readRepoFile, repoRoot } from './helpers.js'

const K8S_DIR = join(repoRoot, 'deploy', 'k8s')

interface Manifest { file: string, doc: any }

/** The model class (schema validation) and the type (excess-property check) of each kind. */
const KINDS: Record<string, { model: { new (data: any): { validate: () => void } }, module: string, type: string }> = {
  'apps/v1 Deployment': { model: Deployment, module: 'kubernetes-models/apps/v1', type: 'IDeployment' },
  'v1 Service': { model: Service, module: 'kubernetes-models/v1', type: 'IService' },
  'autoscaling/v2 HorizontalPodAutoscaler': { model: HorizontalPodAutoscaler, module: 'kubernetes-models/autoscaling/v2', type: 'IHorizontalPodAutoscaler' },
  'policy/v1 PodDisruptionBudget': { model: PodDisruptionBudget, module: 'kubernetes-models/policy/v1', type: 'IPodDisruptionBudget' }
}

function loadManifests (): { kustomization: any, manifests: Manifest[], files: string[] } {
  const files = readdirSync(K8S_DIR).filter((f) => /\.ya?ml$/.test(f)).sort()
  let kustomization: any = null
  const manifests: Manifest[] = []
  for (const file of files) {
    const docs = parseAllDocuments(readFileSync(join(K8S_DIR, file), 'utf8'))
    for (const d of docs) {
      if (d.errors.length > 0) throw new Error(`${file}: ${d.errors.map((e) => e.message).join('; ')}`)
      const doc = d.toJS()
      if (doc === null || doc === undefined) continue
      if (file === 'kustomization.yaml') kustomization = doc
      else manifests.push({ file, doc })
    }
  }
  return { kustomization, manifests, files }
}

/** TypeScript diagnostics of `const m: IKind = <manifest>` for every manifest: unknown or mistyped fields. */
function typeCheck (manifests: Manifest[]): string[] {
  const fileName = join(repoRoot, 'test', 'deploy', '__k8s_manifests__.ts')
  const lines: string[] = []
  manifests.forEach(({ doc }, i) => {
    const kind = KINDS[`${doc.apiVersion} ${doc.kind}`]
    lines.unshift(`import type { ${kind.type} as T${i} } from '${kind.module}'`)
    lines.push(`export const m${i}: T${i} = ${JSON.stringify(doc, null, 2)}`)
  })
  const source = lines.join('\n') + '\n'
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    types: []
  }
  const host = ts.createCompilerHost(options)
  const getSourceFile = host.getSourceFile.bind(host)
  host.getSourceFile = (name, languageVersion, ...rest) =>
    name === fileName ? ts.createSourceFile(name, source, languageVersion) : getSourceFile(name, languageVersion, ...rest)
  const fileExists = host.fileExists.bind(host)
  host.fileExists = (name) => name === fileName || fileExists(name)
  const program = ts.createProgram([fileName], options, host)
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const where = d.file !== undefined && d.start !== undefined
      ? `${d.file.fileName === fileName ? 'manifest' : d.file.fileName}:${d.file.getLineAndCharacterOfPosition(d.start).line + 1}: `
      : ''
    return where + ts.flattenDiagnosticMessageText(d.messageText, '\n')
  })
}

describe('Kubernetes manifests (deploy/k8s)', () => {
  const { kustomization, manifests, files } = loadManifests()
  const byKind = (kind: string): any => {
    const found = manifests.filter((m) => m.doc.kind === kind)
    expect(found, kind).toHaveLength(1)
    return found[0].doc
  }
  const deployment = byKind('Deployment')
  const service = byKind('Service')
  const hpa = byKind('HorizontalPodAutoscaler')
  const pdb = byKind('PodDisruptionBudget')
  const pod = deployment.spec.template.spec
  const container = pod.containers[0]
  let app: FastifyInstance

  beforeAll(async () => {
    app = await buildApp({ logLevel: 'silent', workers: 1 })
    await app.ready()
  })

  afterAll(async () => {
    await app?.close()
  })

  it('kustomization lists every manifest file, and only those', () => {
    expect(kustomization).toMatchObject({ apiVersion: 'kustomize.config.k8s.io/v1beta1', kind: 'Kustomization' })
    expect([...kustomization.resources].sort()).toEqual(files.filter((f) => f !== 'kustomization.yaml'))
    expect(files).toEqual(['deployment.yaml', 'hpa.yaml', 'kustomization.yaml', 'pdb.yaml', 'service.yaml'])
    // its image override names the Deployment's image
    const imageName = String(container.image).split(':')[0]
    expect(kustomization.images.map((i: any) => i.name)).toContain(imageName)
  })

  it('every manifest validates against the Kubernetes schemas', () => {
    expect(manifests).toHaveLength(4)
    for (const { file, doc } of manifests) {
      const kind = KINDS[`${doc.apiVersion} ${doc.kind}`]
      expect(kind, `${file}: ${doc.apiVersion} ${doc.kind}`).toBeDefined()
      const Model = kind.model
      expect(() => new Model(doc).validate(), file).not.toThrow()
    }
  })

  it('has no unknown or mistyped field (TypeScript against the models\' types)', () => {
    expect(typeCheck(manifests)).toEqual([])
  })

  it('the schema check does catch a broken manifest', () => {
    const broken = structuredClone(deployment)
    broken.spec.template.spec.containers[0].ports[0].containerPort = 'three thousand'
    expect(() => new Deployment(broken).validate()).toThrow(/containerPort/)
    const typo = structuredClone(deployment)
    typo.spec.template.spec.containers[0].readinesProbe = typo.spec.template.spec.containers[0].readinessProbe
    expect(typeCheck([{ file: 'typo', doc: typo }]).join('\n')).toMatch(/readinesProbe/)
  }, 60_000)

  it('probes ask routes the app has, and they answer 200', async () => {
    expect(container.livenessProbe.httpGet.path).toBe('/health')
    expect(container.readinessProbe.httpGet.path).toBe('/ready')
    const probes = [container.livenessProbe, container.readinessProbe, container.startupProbe].filter(Boolean)
    for (const probe of probes) {
      const res = await app.inject({ method: 'GET', url: probe.httpGet.path })
      expect(res.statusCode, probe.httpGet.path).toBe(200)
      // the probe's port is the container's port (by name or number)
      const port = container.ports.find((p: any) => p.name === probe.httpGet.port || p.containerPort === probe.httpGet.port)
      expect(port, `probe port ${probe.httpGet.port}`).toBeDefined()
    }
  })

  it('ports agree: container, Service targetPort, the app\'s default PORT, the Dockerfile', () => {
    expect(container.ports).toHaveLength(1)
    const containerPort = container.ports[0]
    expect(containerPort.containerPort).toBe(defaultConfig().port)
    expect(service.spec.type).toBe('ClusterIP')
    expect(service.spec.ports).toHaveLength(1)
    expect(service.spec.ports[0].port).toBe(80)
    const target = service.spec.ports[0].targetPort
    expect(target === containerPort.name || target === containerPort.containerPort, `targetPort ${target}`).toBe(true)
    const env = Object.fromEntries(container.env.filter((e: any) => e.value !== undefined).map((e: any) => [e.name, e.value]))
    expect(Number(env.PORT ?? defaultConfig().port)).toBe(containerPort.containerPort)
    const runtime = parseDockerfile(readRepoFile('Dockerfile')).stages.at(-1)
    expect(runtime?.instructions.find((i) => i.keyword === 'EXPOSE')?.args).toBe(String(containerPort.containerPort))
    // the Service and the PDB select the Deployment's pods
    const labels = deployment.spec.template.metadata.labels
    for (const selector of [service.spec.selector, pdb.spec.selector.matchLabels, deployment.spec.selector.matchLabels]) {
      for (const [k, v] of Object.entries(selector)) expect(labels[k], k).toBe(v)
    }
  })

  it('every environment variable is one the configuration table (docs/configuration.md) lists, with a valid value', () => {
    const documented = readmeConfiguration()
    expect([...documented.keys()]).toEqual(expect.arrayContaining(['PORT', 'HOST', 'LOG_LEVEL', 'WORKERS', 'MAX_QUEUE', 'TASK_TIMEOUT_MS', 'BODY_LIMIT_BYTES', 'MAX_ELEMENTS', 'MAX_FLOPS']))
    for (const e of container.env) {
      expect(documented.has(e.name), `${e.name} is not in docs/configuration.md's table`).toBe(true)
      // a literal value equals the documented default (WORKERS follows the CPU limit instead), but for
      // pressure shedding, off by default and switched on here: memory below the container's limit
      if (e.name === 'MAX_EVENT_LOOP_DELAY_MS') expect(Number(e.value)).toBeGreaterThan(0)
      else if (e.name === 'MAX_RSS_BYTES') {
        expect(container.resources.limits.memory).toBe('2Gi')
        expect(Number(e.value)).toBeGreaterThan(0)
        expect(Number(e.value)).toBeLessThan(2 * 2 ** 30)
      } else if (e.name === 'TRUST_PROXY') expect(e.value).toBe('uniquelocal') // the ingress controller, on the cluster's network
      else if (e.value !== undefined && e.name !== 'HOST') expect(e.value, e.name).toBe(documented.get(e.name))
    }
    expect(container.env.find((e: any) => e.name === 'HOST')?.value).toBe('0.0.0.0')
    const workers = container.env.find((e: any) => e.name === 'WORKERS')
    expect(workers?.valueFrom?.resourceFieldRef?.resource).toBe('limits.cpu')
  })

  it('runs locked down: non-root uid 1000, read-only root, no privilege escalation, no capabilities, /tmp emptyDir', () => {
    const sc = container.securityContext
    expect(pod.securityContext.runAsNonRoot).toBe(true)
    expect(pod.securityContext.runAsUser).toBe(1000)
    expect(sc).toMatchObject({ runAsNonRoot: true, runAsUser: 1000, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } })
    const mount = container.volumeMounts.find((m: any) => m.mountPath === '/tmp')
    expect(mount).toBeDefined()
    expect(pod.volumes.find((v: any) => v.name === mount.name)?.emptyDir).toBeDefined()
    for (const kind of ['requests', 'limits']) {
      expect(container.resources[kind].cpu, kind).toBeDefined()
      expect(container.resources[kind].memory, kind).toBeDefined()
    }
  })

  it('the grace period covers the preStop sleep and the drain', () => {
    const sleep = container.lifecycle.preStop.exec.command
    expect(sleep[0]).toBe('sleep')
    const sleepSeconds = Number(sleep[1])
    expect(sleepSeconds).toBeGreaterThan(0)
    // the drain ends by itself after SHUTDOWN_GRACE_MS (the service's default unless the manifest sets it)
    const drain = Number(container.env.find((e: any) => e.name === 'SHUTDOWN_GRACE_MS')?.value ?? defaultConfig().shutdownGraceMs) / 1000
    expect(drain).toBeGreaterThan(0)
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(sleepSeconds + drain)
  })

  it('the HPA scales the Deployment on CPU, and the PDB keeps one pod', () => {
    expect(hpa.apiVersion).toBe('autoscaling/v2')
    expect(hpa.spec.scaleTargetRef).toEqual({ apiVersion: 'apps/v1', kind: 'Deployment', name: deployment.metadata.name })
    expect(hpa.spec.metrics).toEqual([expect.objectContaining({ type: 'Resource', resource: expect.objectContaining({ name: 'cpu' }) })])
    expect(hpa.spec.minReplicas).toBeGreaterThanOrEqual(2)
    expect(hpa.spec.maxReplicas).toBeGreaterThan(hpa.spec.minReplicas)
    // CPU utilization is measured against the request
    expect(container.resources.requests.cpu).toBeDefined()
    expect(pdb.apiVersion).toBe('policy/v1')
    expect(pdb.spec.minAvailable).toBe(1)
    expect(pdb.spec.minAvailable).toBeLessThan(hpa.spec.minReplicas)
  })

  it('the liveness probe and the image\'s HEALTHCHECK ask the same route', () => {
    const runtime = parseDockerfile(readRepoFile('Dockerfile')).stages.at(-1)
    const hc = parseHealthcheck(runtime?.instructions.find((i) => i.keyword === 'HEALTHCHECK') as any)
    expect(hc?.command.join(' ')).toContain(container.livenessProbe.httpGet.path)
  })
})
