export type DType = 'float32' | 'float64'
export type FloatArray = Float32Array | Float64Array

/** A decoded tensor: row-major (C order) data of the given shape. */
export interface Tensor {
  shape: number[]
  dtype: DType
  data: FloatArray
}

/** The size limits every operation checks from shapes alone, before allocating. */
export interface Limits {
  /** Largest element count of any one tensor: operand, result or intermediate buffer. */
  maxElements: number
  /** Largest work of one request, counted as 2 x multiply-adds. */
  maxFlops: number
}

export function allocate (dtype: DType, length: number): FloatArray {
  return dtype === 'float32' ? new Float32Array(length) : new Float64Array(length)
}
