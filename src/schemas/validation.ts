/**
 * One readable message from Ajv's errors: the field at fault, and for a field with several
 * allowed forms (anyOf), either the form it came closest to or the list of forms it could take.
 */
export interface SchemaError {
  keyword: string
  instancePath: string
  message?: string
  params: Record<string, unknown>
}

function describe (e: SchemaError): string {
  if (e.keyword === 'type') return String(e.params.type).replace(/,/g, ' or ')
  if (e.keyword === 'enum') return `one of ${(e.params.allowedValues as unknown[]).map(v => JSON.stringify(v)).join(', ')}`
  if (e.keyword === 'additionalProperties') return `an object without the unknown property ${JSON.stringify(e.params.additionalProperty)}`
  return e.message ?? e.keyword
}

function one (e: SchemaError, dataVar: string): string {
  const where = `${dataVar}${e.instancePath}`
  if (e.keyword === 'additionalProperties') return `${where} has an unknown property ${JSON.stringify(e.params.additionalProperty)}`
  if (e.keyword === 'enum') return `${where} must be ${describe(e)}`
  return `${where} ${e.message ?? 'is invalid'}`
}

export function formatSchemaErrors (errors: readonly SchemaError[], dataVar: string): string {
  if (errors.length === 0) return `${dataVar} is invalid`
  const anyOf = errors.find(e => e.keyword === 'anyOf')
  if (anyOf === undefined) return one(errors[0], dataVar)
  const path = anyOf.instancePath
  const branches = errors.filter(e => e !== anyOf && e.keyword !== 'anyOf')
  // a branch whose type matched but whose content failed says the most
  const nearMiss = branches.find(e => e.instancePath !== path || (e.keyword !== 'type' && e.keyword !== 'enum'))
  if (nearMiss !== undefined) return one(nearMiss, dataVar)
  const forms = [...new Set(branches.filter(e => e.instancePath === path).map(describe))]
  return `${dataVar}${path} must be ${forms.join(', or ')}`
}
