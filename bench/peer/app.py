"""The FastAPI + NumPy service a user would write instead of ours: the peer of `npm run bench:http`.

POST /v1/matmul takes the same JSON bodies as our service:
  {"a": [[...]], "b": [[...]]}                       -> {"result": {"shape", "dtype": "float64", "data": nested}}
  {"a": {"shape", "dtype": "float32", "data": "<base64>"}, "b": {...}, "encoding": "base64"}
                                                     -> {"result": {"shape", "dtype": "float32", "data": "<base64>"}}

Written the way a typical user writes it: an `async def` route that reads the body with
`await request.json()` (no pydantic model, whose validation of large nested lists would only slow
it down) and returns a dict, which FastAPI encodes with its default JSONResponse. The matmul runs
on the worker's event loop; uvicorn runs two worker processes, one per core of the benchmark machine.

Started by bench/peer.ts:
  OPENBLAS_NUM_THREADS=1 python3 -m uvicorn app:app --app-dir bench/peer --workers 2 \
    --loop uvloop --http httptools --no-access-log --host 127.0.0.1 --port <free port>
"""
import base64

import numpy as np
from fastapi import FastAPI, Request

app = FastAPI()


def from_base64(t):
    return np.frombuffer(base64.b64decode(t["data"]), dtype="<f4").reshape(t["shape"])


@app.post("/v1/matmul")
async def matmul(request: Request):
    body = await request.json()
    if body.get("encoding") == "base64":
        result = from_base64(body["a"]) @ from_base64(body["b"])
        data = base64.b64encode(result.astype("<f4").tobytes()).decode("ascii")
        return {"result": {"shape": list(result.shape), "dtype": "float32", "data": data}}
    result = np.array(body["a"]) @ np.array(body["b"])
    return {"result": {"shape": list(result.shape), "dtype": str(result.dtype), "data": result.tolist()}}
