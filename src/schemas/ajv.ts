/**
 * The one Ajv configuration of the service, and the validators compiled with it. The app hands
 * the same options to Fastify, and the workers compile the operations' body schemas with them
 * (src/worker/request.ts), so a body validated in a worker meets exactly the rules, and gives
 * exactly the errors, of a body validated on the main thread.
 */
import AjvCompiler from '@fastify/ajv-compiler'
import type { TSchema } from 'typebox'
import { validationSchema } from './tensor.js'
import type { SchemaError } from './validation.js'

export const AJV_OPTIONS = {
  // never coerce ("3" is not 3, null is not 0), never drop unknown fields: every body is closed
  coerceTypes: false,
  removeAdditional: false,
  // the first error only: collecting all of them is a denial-of-service risk
  allErrors: false,
  useDefaults: false,
  // maxLength by String.length: counting code points walks every character of a base64
  // tensor (megabytes) for nothing, since the decoder checks the exact byte length.
  // (Ajv still honours the option but warns it is deprecated; that one warning is dropped.)
  unicode: false,
  logger: {
    log: (...args: unknown[]) => console.log(...args),
    warn: (...args: unknown[]) => { if (!String(args[0]).includes('option unicode')) console.warn(...args) },
    error: (...args: unknown[]) => console.error(...args)
  }
} as const

/** A compiled body validator: true, or false with the first error in `errors`. */
export interface BodyValidator {
  (data: unknown): boolean
  errors?: SchemaError[] | null
}

let build: ReturnType<ReturnType<typeof AjvCompiler>> | undefined

/** The property names an object schema declares, its own and those of the schemas it is allOf. */
function propertyNames (schema: unknown): string[] {
  const s = schema as { properties?: object, allOf?: unknown[] }
  return [...Object.keys(s.properties ?? {}), ...(s.allOf ?? []).flatMap(propertyNames)]
}

/** Compiles a body schema as Fastify's own validator compiler does, with AJV_OPTIONS (its `validationSchema`). */
export function compileBodyValidator (schema: TSchema): BodyValidator {
  build ??= AjvCompiler()({}, { customOptions: AJV_OPTIONS })
  const validate = build({ schema: validationSchema(schema) as TSchema, method: 'POST', url: '', httpPart: 'body' }) as BodyValidator
  const known = new Set(propertyNames(schema))
  // a body that lacks a field and has an unknown one (a misspelling, "bb" for "b"): the first error
  // (the missing field) names the unknown one too
  const check: BodyValidator = (data) => {
    const ok = validate(data)
    const first = validate.errors?.[0]
    check.errors = validate.errors
    if (!ok && first?.keyword === 'required' && first.instancePath === '' && typeof data === 'object' && data !== null && !Array.isArray(data)) {
      const unknown = Object.keys(data).filter(k => !known.has(k))
      if (unknown.length > 0) {
        const list = unknown.slice(0, 3).map(k => JSON.stringify(k.slice(0, 40))).join(', ')
        check.errors = [{ ...first, message: `${first.message ?? 'is invalid'}, and has the unknown ${unknown.length > 1 ? 'fields' : 'field'} ${list}${unknown.length > 3 ? ' …' : ''}` }, ...(validate.errors ?? []).slice(1)]
      }
    }
    return ok
  }
  return check
}
