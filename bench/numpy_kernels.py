"""NumPy peer of the kernel benchmark: reads a JSON list of cases on stdin, prints JSON on stdout.

Input, one object per case (dtype "float32" or "float64"; conv2d has stride 1):
  {"name": ..., "kind": "matmul",    "dtype": ..., "m": .., "k": .., "n": ..}           a @ b
  {"name": ..., "kind": "batched",   "dtype": ..., "batch": .., "m": .., "k": .., "n": ..}  np.matmul([batch,m,k], [batch,k,n])
  {"name": ..., "kind": "conv2d",    "dtype": ..., "N", "C", "H", "W", "K", "kh", "kw", "pad"}
  {"name": ..., "kind": "attention", "dtype": ..., "B": .., "L": .., "E": ..}
and the same with "backward": true: the gradients with respect to every operand given the output's
gradient (matmul: g·bᵀ and aᵀ·g; conv2d: dkernel = G·colsᵀ and dinput as the full correlation of G
with the flipped kernel; attention: dV = Pᵀ·G, dP = G·Vᵀ, the softmax's product, dQ and dK, with P
recomputed), their FLOPs counted as twice the forward's; and
  {"name": ..., "kind": "einsum",    "dtype": ..., "equation": .., "shapes": [[..], ..], "flops": ..}
                                                                   np.einsum(equation, *operands, optimize=True)
  {"name": ..., "kind": "elementwise", "dtype": ..., "op": "add" | "mul" | "exp" | "relu" | "softmax" | "layer_norm" | "sum" | "max", "shapes": [[..], ..], "bytes": .., "axis": ..}
                                         a + b, a * b, np.exp(x), np.maximum(x, 0), softmax and layer_norm over
                                         the last axis written in NumPy, x.sum(axis) and x.max(axis); its "gflops" are GB/s
Output: {"blas": "<library, its configuration, threads>", "results": [{"name", "gflops", "ms"}, ...]}

Timing, as bench/kernels.ts does it: a warm-up of at least 3 calls and up to 0.3 s (at most 50 calls),
then at least 5 timed calls and as many more as fit in about 0.5 s (at most 41); `ms` is their MEDIAN
and gflops = FLOPs / median time.

Run it with OPENBLAS_NUM_THREADS=1 and without OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE (bench/numpy.ts does).
"""
import ctypes
import io
import json
import math
import os
import sys
import time
from contextlib import redirect_stdout

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

WARM_S, WARM_MIN, WARM_MAX = 0.3, 3, 50
RUN_S, RUN_MIN, RUN_MAX = 0.5, 5, 41


def blas_info():
    """The BLAS NumPy loaded and its threads: threadpoolctl if importable, else OpenBLAS's own answers, else show_config."""
    try:
        from threadpoolctl import threadpool_info
        return "; ".join(f"{i.get('internal_api')} {i.get('version')} {i.get('architecture', '')}, "
                         f"{i.get('num_threads')} threads ({i.get('filepath')})" for i in threadpool_info())
    except ImportError:
        pass
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "libopenblas" in line})
        for path in paths:
            lib = ctypes.CDLL(path)
            lib.openblas_get_config.restype = ctypes.c_char_p
            lib.openblas_get_corename.restype = ctypes.c_char_p
            return (f"{lib.openblas_get_config().decode()}, core {lib.openblas_get_corename().decode()}, "
                    f"{lib.openblas_get_num_threads()} threads ({path})")
    except (OSError, AttributeError):
        pass
    out = io.StringIO()
    with redirect_stdout(out):
        np.show_config()
    return f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}; " + " ".join(out.getvalue().split())


def timed(fn):
    """Median seconds of fn() after a warm-up (see the module's docstring)."""
    start, n = time.perf_counter(), 0
    while n < WARM_MIN or (time.perf_counter() - start < WARM_S and n < WARM_MAX):
        fn()
        n += 1
    times = []
    start = time.perf_counter()
    while len(times) < RUN_MIN or (time.perf_counter() - start < RUN_S and len(times) < RUN_MAX):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def case_fn(c, rng):
    """(the function to time, its FLOPs) for one case."""
    dtype = np.dtype(c["dtype"])

    def rand(*shape):
        return (rng.random(shape, dtype=np.float64) - 0.5).astype(dtype)

    kind = c["kind"]
    if c.get("backward"):
        fn, flops = backward_fn(c, kind, rand)
        return fn, 2 * flops
    if kind == "matmul":
        a, b = rand(c["m"], c["k"]), rand(c["k"], c["n"])
        return (lambda: a @ b), 2 * c["m"] * c["k"] * c["n"]
    if kind == "batched":
        a, b = rand(c["batch"], c["m"], c["k"]), rand(c["batch"], c["k"], c["n"])
        return (lambda: np.matmul(a, b)), 2 * c["batch"] * c["m"] * c["k"] * c["n"]
    if kind == "conv2d":
        N, C, H, W, K, kh, kw, pad = (c[key] for key in ("N", "C", "H", "W", "K", "kh", "kw", "pad"))
        x, w = rand(N, C, H, W), rand(K, C, kh, kw)
        OH, OW = H + 2 * pad - kh + 1, W + 2 * pad - kw + 1
        w2 = w.reshape(K, C * kh * kw)

        def conv():
            xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
            win = sliding_window_view(xp, (kh, kw), axis=(2, 3))  # [N, C, OH, OW, kh, kw], a view
            cols = win.transpose(0, 1, 4, 5, 2, 3).reshape(N, C * kh * kw, OH * OW)  # the im2col copy
            return np.matmul(w2, cols).reshape(N, K, OH, OW)  # [K, C·kh·kw] · [N, C·kh·kw, OH·OW]
        return conv, 2 * N * K * OH * OW * C * kh * kw
    if kind == "attention":
        B, L, E = c["B"], c["L"], c["E"]
        q, k, v = rand(B, L, E), rand(B, L, E), rand(B, L, E)
        scale = dtype.type(1 / math.sqrt(E))

        def attention():
            s = (q @ k.transpose(0, 2, 1)) * scale
            p = np.exp(s - s.max(axis=-1, keepdims=True))
            p /= p.sum(axis=-1, keepdims=True)
            return p @ v
        return attention, 2 * B * L * L * E * 2
    if kind == "einsum":
        ops = [rand(*s) for s in c["shapes"]]
        return (lambda: np.einsum(c["equation"], *ops, optimize=True)), c["flops"]
    if kind == "elementwise":
        # as a user writes it (a new result array per call); "gflops" are then GB/s moved
        ops = [rand(*s) for s in c["shapes"]]
        x = ops[0]
        w, b = rand(x.shape[-1]), rand(x.shape[-1])

        def softmax():
            e = np.exp(x - x.max(axis=-1, keepdims=True))
            return e / e.sum(axis=-1, keepdims=True)

        def layer_norm():
            m = x.mean(axis=-1, keepdims=True)
            return (x - m) / np.sqrt(x.var(axis=-1, keepdims=True) + 1e-5) * w + b
        fns = {"add": lambda: ops[0] + ops[1], "mul": lambda: ops[0] * ops[1], "exp": lambda: np.exp(x),
               "relu": lambda: np.maximum(x, 0), "softmax": softmax, "layer_norm": layer_norm,
               "sum": lambda: x.sum(axis=c["axis"]), "max": lambda: x.max(axis=c["axis"])}
        return fns[c["op"]], c["bytes"]
    raise ValueError(f"case {c.get('name')!r}: unknown kind {kind!r}")


def backward_fn(c, kind, rand):
    """(the gradients' function, the forward FLOPs) for a backward case."""
    dtype = np.dtype(c["dtype"])
    if kind == "matmul":
        m, k, n = c["m"], c["k"], c["n"]
        a, b, g = rand(m, k), rand(k, n), rand(m, n)
        return (lambda: (g @ b.T, a.T @ g)), 2 * m * k * n
    if kind == "conv2d":
        N, C, H, W, K, kh, kw, pad = (c[key] for key in ("N", "C", "H", "W", "K", "kh", "kw", "pad"))
        x, w = rand(N, C, H, W), rand(K, C, kh, kw)
        OH, OW = H + 2 * pad - kh + 1, W + 2 * pad - kw + 1
        g = rand(N, K, OH, OW)
        wf = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)).reshape(C, K * kh * kw)  # flipped, [C, K·kh·kw]

        def grads():
            xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
            cols = sliding_window_view(xp, (kh, kw), axis=(2, 3)).transpose(0, 1, 4, 5, 2, 3).reshape(N, C * kh * kw, OH * OW)
            dw = np.einsum("nkp,ncp->kc", g.reshape(N, K, OH * OW), cols, optimize=True).reshape(K, C, kh, kw)
            gp = np.pad(g, ((0, 0), (0, 0), (kh - 1 - pad, kh - 1 - pad), (kw - 1 - pad, kw - 1 - pad)))
            gcols = sliding_window_view(gp, (kh, kw), axis=(2, 3)).transpose(0, 1, 4, 5, 2, 3).reshape(N, K * kh * kw, H * W)
            dx = np.matmul(wf, gcols).reshape(N, C, H, W)
            return dw, dx
        return grads, 2 * N * K * OH * OW * C * kh * kw
    if kind == "attention":
        B, L, E = c["B"], c["L"], c["E"]
        q, k, v, g = rand(B, L, E), rand(B, L, E), rand(B, L, E), rand(B, L, E)
        scale = dtype.type(1 / math.sqrt(E))

        def grads():
            s = (q @ k.transpose(0, 2, 1)) * scale
            p = np.exp(s - s.max(axis=-1, keepdims=True))
            p /= p.sum(axis=-1, keepdims=True)
            dv = p.transpose(0, 2, 1) @ g
            dp = g @ v.transpose(0, 2, 1)
            ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True)) * scale
            return ds @ k, ds.transpose(0, 2, 1) @ q, dv
        return grads, 2 * B * L * L * E * 2
    raise ValueError(f"case {c.get('name')!r}: no backward for kind {kind!r}")


def main():
    cases = json.load(sys.stdin)
    rng = np.random.default_rng(1)
    results = []
    for c in cases:
        fn, flops = case_fn(c, rng)
        s = timed(fn)
        results.append({"name": c["name"], "gflops": flops / s / 1e9, "ms": s * 1e3})
    json.dump({"blas": blas_info(), "results": results}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
