/** The OpenAPI document's header; the paths come from the routes' schemas. */
export const openapiInfo = {
  openapi: '3.0.3',
  info: {
    title: 'Tensor service',
    description: 'Tensor operations over HTTP with NumPy and PyTorch semantics: matmul, dot, linear, conv2d and attention. ' +
      'Tensors are nested arrays, {shape, data, dtype} objects with flat or nested data, or base64 little-endian bytes. ' +
      'The strings "NaN", "Infinity" and "-Infinity" stand for those values.',
    version: '1.0.0',
    contact: { name: 'Tensor service maintainers' }
  },
  servers: [{
    url: '/',
    description: 'Production or local: the instance serving this document (Swagger UI sends requests to it)',
    'x-internal': false
  }],
  tags: [
    { name: 'operations', description: 'Tensor operations' },
    { name: 'service', description: 'Health, readiness and the API document' }
  ]
}

/** The committed form of the document: stable two-space JSON with a final newline. */
export function openapiText (doc: unknown): string {
  return JSON.stringify(doc, null, 2) + '\n'
}
