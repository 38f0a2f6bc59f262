"""safetensors.numpy.save and load, written with NumPy, laid out as the library lays files out."""
import json
import struct

import numpy as np

_NAMES = {np.dtype('<f8'): 'F64', np.dtype('<f4'): 'F32', np.dtype('<f2'): 'F16', np.dtype('bool'): 'BOOL'}
_DTYPES = {name: dtype for dtype, name in _NAMES.items()}


def save(tensors, metadata=None):
    header = {} if metadata is None else {'__metadata__': metadata}
    order = sorted(tensors, key=lambda n: (-tensors[n].dtype.itemsize, n))
    chunks, at = [], 0
    for name in order:
        t = np.ascontiguousarray(tensors[name])
        header[name] = {'dtype': _NAMES[t.dtype], 'shape': list(t.shape), 'data_offsets': [at, at + t.nbytes]}
        chunks.append(t.tobytes())
        at += t.nbytes
    text = json.dumps(header, separators=(',', ':')).encode()
    text += b' ' * (-len(text) % 8)
    return struct.pack('<Q', len(text)) + text + b''.join(chunks)


def load(data):
    (n,) = struct.unpack_from('<Q', data)
    header = json.loads(data[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == '__metadata__':
            continue
        begin, end = info['data_offsets']
        out[name] = np.frombuffer(data[8 + n + begin:8 + n + end], dtype=_DTYPES[info['dtype']]).reshape(info['shape'])
    return out
