/**
 * A minimal ONNX model writer: just enough of the protobuf wire format (varints, length-delimited
 * fields) to describe one small graph of standard operators, whose inputs have unknown shapes.
 * The engine (./engine.ts) builds its models with it at start-up; nothing is read from disk.
 *
 * Field numbers are those of onnx.proto (ModelProto, GraphProto, NodeProto, AttributeProto,
 * ValueInfoProto, TypeProto).
 */

/** ONNX element types used here (TensorProto.DataType). */
export const ELEM = { float32: 1, float64: 11 } as const
export type ElemName = keyof typeof ELEM

type Bytes = Uint8Array

function varint (value: number): number[] {
  const out: number[] = []
  let v = value
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80)
    v = Math.floor(v / 0x80)
  }
  out.push(v)
  return out
}

function concat (parts: Bytes[]): Bytes {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0))
  let o = 0
  for (const p of parts) {
    out.set(p, o)
    o += p.length
  }
  return out
}

/** A varint field (wire type 0) of a value from 0 to 2^53 (no negative value is written here). */
function int (field: number, value: number): Bytes {
  return Uint8Array.from([...varint(field << 3), ...varint(value)])
}

/** A length-delimited field (wire type 2): bytes, a string or a nested message. */
function bytes (field: number, value: Bytes): Bytes {
  return concat([Uint8Array.from([...varint((field << 3) | 2), ...varint(value.length)]), value])
}

function str (field: number, value: string): Bytes {
  return bytes(field, new TextEncoder().encode(value))
}

function float32 (field: number, value: number): Bytes {
  const b = new Uint8Array(5)
  b[0] = (field << 3) | 5
  new DataView(b.buffer).setFloat32(1, value, true)
  return b
}

export type Attribute = { name: string, int: number } | { name: string, ints: number[] } | { name: string, float: number } | { name: string, string: string }

function attribute (a: Attribute): Bytes {
  // AttributeProto: name 1, f 2, i 3, s 4, ints 8, type 20 (FLOAT 1, INT 2, STRING 3, INTS 7)
  if ('int' in a) return concat([str(1, a.name), int(3, a.int), int(20, 2)])
  if ('float' in a) return concat([str(1, a.name), float32(2, a.float), int(20, 1)])
  if ('string' in a) return concat([str(1, a.name), str(4, a.string), int(20, 3)])
  return concat([str(1, a.name), ...a.ints.map(v => int(8, v)), int(20, 7)])
}

export interface Node {
  op: string
  inputs: string[]
  outputs: string[]
  attributes?: Attribute[]
}

function node (n: Node, i: number): Bytes {
  // NodeProto: input 1, output 2, name 3, op_type 4, attribute 5
  return concat([
    ...n.inputs.map(s => str(1, s)),
    ...n.outputs.map(s => str(2, s)),
    str(3, `n${i}`),
    str(4, n.op),
    ...(n.attributes ?? []).map(a => bytes(5, attribute(a)))
  ])
}

/** ValueInfoProto of a tensor of the given element type and unknown shape. */
function valueInfo (name: string, elem: number): Bytes {
  // ValueInfoProto: name 1, type 2; TypeProto: tensor_type 1; TypeProto.Tensor: elem_type 1
  return concat([str(1, name), bytes(2, bytes(1, int(1, elem)))])
}

export interface Graph {
  inputs: Array<[string, ElemName]>
  outputs: Array<[string, ElemName]>
  nodes: Node[]
}

/** The serialized ModelProto (IR version 8, default-domain opset 17). */
export function model (g: Graph): Bytes {
  const graph = concat([
    ...g.nodes.map((n, i) => bytes(1, node(n, i))),
    str(2, 'g'),
    ...g.inputs.map(([name, t]) => bytes(11, valueInfo(name, ELEM[t]))),
    ...g.outputs.map(([name, t]) => bytes(12, valueInfo(name, ELEM[t])))
  ])
  // ModelProto: ir_version 1, producer_name 2, graph 7, opset_import 8 (OperatorSetIdProto: domain 1, version 2)
  return concat([int(1, 8), str(2, 'tensor-service'), bytes(7, graph), bytes(8, int(2, 17))])
}
