"""The FastAPI + NumPy (and PyTorch) service a user would write instead of ours: the peer of `npm run bench:http`.

POST /v1/matmul takes the same JSON bodies as our service:
  {"a": [[...]], "b": [[...]]}                       -> {"result": {"shape", "dtype": "float64", "data": nested}}
  {"a": {"shape", "dtype": "float32", "data": "<base64>"}, "b": {...}, "encoding": "base64"}
                                                     -> {"result": {"shape", "dtype": "float32", "data": "<base64>"}}
  a safetensors file with tensors a and b (Content-Type: application/octet-stream)
                                                     -> a safetensors file with the tensor result

POST /v1/conv2d and POST /v1/attention take the same bodies as ours, in base64 JSON or as a safetensors file
(tensors `input`, `kernel` / `query`, `key`, `value`; options as JSON fields, or as __metadata__ entries in a file),
and compute with PyTorch as a user would: torch.nn.functional.conv2d, and softmax(q·kᵀ·scale)·v (Debian's
torch 1.13 has no scaled_dot_product_attention). Each worker process keeps PyTorch to one thread.

Written the way a typical user writes it: an `async def` route that reads the body with
`await request.json()` (no pydantic model, whose validation of large nested lists would only slow
it down) and returns a dict, which FastAPI encodes with its default JSONResponse. The matmul runs
on the worker's event loop; uvicorn runs two worker processes, one per core of the benchmark machine.

Started by bench/peer.ts:
  OPENBLAS_NUM_THREADS=1 python3 -m uvicorn app:app --app-dir bench/peer --workers 2 \
    --loop uvloop --http httptools --no-access-log --host 127.0.0.1 --port <free port>
"""
import base64
import json
import struct

import numpy as np
import torch
from fastapi import FastAPI, Request, Response

torch.set_num_threads(1)
app = FastAPI()

# Debian has no python3-safetensors: the format read and written by hand with NumPy
# (an 8-byte little-endian header length, a JSON header, the tensors' little-endian bytes)
DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2"}
NAMES = {np.dtype("<f8"): "F64", np.dtype("<f4"): "F32", np.dtype("<f2"): "F16"}


def read_safetensors(data, metadata=None):
    (n,) = struct.unpack_from("<Q", data)
    header = json.loads(data[8:8 + n])
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            if metadata is not None:
                metadata.update({k: json.loads(v) for k, v in info.items()})
            continue
        begin, end = info["data_offsets"]
        dtype = np.dtype(DTYPES[info["dtype"]])
        tensors[name] = np.frombuffer(data, dtype=dtype, count=(end - begin) // dtype.itemsize,
                                      offset=8 + n + begin).reshape(info["shape"])
    return tensors


def write_safetensors(tensors):
    header, chunks, at = {}, [], 0
    for name in sorted(tensors):
        t = np.ascontiguousarray(tensors[name])
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [at, at + t.nbytes]}
        chunks.append(t.tobytes())
        at += t.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def from_base64(t):
    return np.frombuffer(base64.b64decode(t["data"]), dtype="<f4").reshape(t["shape"])


@app.post("/v1/matmul")
async def matmul(request: Request):
    if request.headers.get("content-type") == "application/octet-stream":
        t = read_safetensors(await request.body())
        return Response(write_safetensors({"result": t["a"] @ t["b"]}), media_type="application/octet-stream")
    body = await request.json()
    if body.get("encoding") == "base64":
        result = from_base64(body["a"]) @ from_base64(body["b"])
        data = base64.b64encode(result.astype("<f4").tobytes()).decode("ascii")
        return {"result": {"shape": list(result.shape), "dtype": "float32", "data": data}}
    result = np.array(body["a"]) @ np.array(body["b"])
    return {"result": {"shape": list(result.shape), "dtype": str(result.dtype), "data": result.tolist()}}


async def tensors_and_options(request, names):
    """The named float32 tensors and the other fields of a base64 JSON body or a safetensors file."""
    if request.headers.get("content-type") == "application/octet-stream":
        options = {}
        t = read_safetensors(await request.body(), options)
        return {k: torch.from_numpy(t[k].copy()) for k in names}, options, True
    body = await request.json()
    return {k: torch.from_numpy(from_base64(body[k]).copy()) for k in names}, body, False


def reply(result, binary):
    result = result.numpy()
    if binary:
        return Response(write_safetensors({"result": result}), media_type="application/octet-stream")
    data = base64.b64encode(result.astype("<f4").tobytes()).decode("ascii")
    return {"result": {"shape": list(result.shape), "dtype": "float32", "data": data}}


@app.post("/v1/conv2d")
async def conv2d(request: Request):
    t, options, binary = await tensors_and_options(request, ["input", "kernel"])
    out = torch.nn.functional.conv2d(t["input"], t["kernel"], padding=options.get("padding", 0))
    return reply(out, binary)


@app.post("/v1/attention")
async def attention(request: Request):
    t, options, binary = await tensors_and_options(request, ["query", "key", "value"])
    q, k, v = t["query"], t["key"], t["value"]
    scores = q @ k.transpose(-2, -1) * (1.0 / q.shape[-1] ** 0.5)
    return reply(torch.softmax(scores, dim=-1) @ v, binary)
