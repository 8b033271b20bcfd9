"""int8-dynamic's activation step in one native pass: Hadamard rotation, then per-row int8.

Before each int8 matmul, :class:`~gemvec.model.int8_compute.Int8ComputeLinear` rotates the
activation rows by block-diagonal Hadamard matrices and quantises each row to int8. Done with
torch ops, the rotation is a dense (rows·K/128, 128) x (128, 128) matmul — 128 multiply-adds
per value — and the quantisation a few more passes over memory: a sixth of a 32-text batch's
time and a fifth of a single query's on an AVX512-VNNI CPU, a third of the int8 matmul's
(``BENCHMARKS.md``, issue 19, fifth pass). A fast Walsh-Hadamard transform needs 7 additions
per value, and the whole step is one read of the row and one write of its codes, so it is
written here in C (GCC's vector extensions: torch's OpenMP runtime is GNU's anyway), compiled
once per machine with the system's C compiler and loaded with ctypes
(``benchmarks/rotate_quantize_kernel.py`` times it against the torch ops).

Numerics: the rows are rotated in float32 (the torch path rounds the rotated rows to the
activation dtype first), then quantised exactly as :func:`~gemvec.model.int8_compute.quantize_rows`
does — scale ``max(|row|, 1e-12) / 127``, codes ``rint(x / scale)`` clamped to ±127, plus the
offset. Against an exact float64 rotation the codes agree but for ties a float32 rounding
apart (``tests/test_rotate_quantize.py``).

Threads: the loop over rows runs on OpenMP, linked against the libgomp torch already loaded,
so it shares torch's thread pool instead of adding a second one (``gemvec.model.openmp``).
Where any of this is missing (not Linux, no C compiler, torch without GNU OpenMP), or the
kernel is switched off (:class:`NativeKernel`), :func:`native_rotate_quantize` returns None and
the torch ops run.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import ClassVar

import torch

from gemvec.home import cache_home
from gemvec.model.openmp import loaded_libgomps
from gemvec.precision import COMPILE_ENV, c_compiler, cpu_flags

log = logging.getLogger(__name__)


class NativeKernel:
    """The switch: off with ``GEMVEC_COMPILE=0`` in the environment, as the compiled loops are.
    (A build takes a second, in the calling thread; the test suite keeps it on while it switches
    the compiled loops' background builds off.)"""

    enabled: ClassVar[bool] = os.environ.get(COMPILE_ENV, "1") != "0"


MAX_WIDTH = 16384  # a row is rotated in a stack buffer of this many floats at most

C_SOURCE = r"""
#include <stdint.h>
#include <string.h>
#include <math.h>

#pragma GCC diagnostic ignored "-Wpsabi"  /* 64-byte vectors on CPUs without AVX-512: inlined */
typedef float v16sf __attribute__((vector_size(64)));
typedef int32_t v16si __attribute__((vector_size(64)));
#define PERM(h) {0^h, 1^h, 2^h, 3^h, 4^h, 5^h, 6^h, 7^h, 8^h, 9^h, 10^h, 11^h, 12^h, 13^h, 14^h, 15^h}
#define S(j, h) (((j) & (h)) ? -1.0f : 1.0f)
#define SIGN(h) {S(0,h), S(1,h), S(2,h), S(3,h), S(4,h), S(5,h), S(6,h), S(7,h), \
                 S(8,h), S(9,h), S(10,h), S(11,h), S(12,h), S(13,h), S(14,h), S(15,h)}
static const v16si P1 = PERM(1), P2 = PERM(2), P4 = PERM(4), P8 = PERM(8);
static const v16sf S1 = SIGN(1), S2 = SIGN(2), S4 = SIGN(4), S8 = SIGN(8);

/* A butterfly stage on 16 values in registers: x[j] + x[j^h] where bit h of j is clear,
   x[j^h] - x[j] where it is set (GCC's vector extensions: a permute and a multiply-add). */
static inline v16sf stage(v16sf x, v16si partner, v16sf sign) {
    return __builtin_shuffle(x, partner) + sign * x;
}

static void butterfly(float *restrict low, float *restrict high, int64_t h) {
    for (int64_t j = 0; j < h; ++j) {
        float a = low[j], b = high[j];
        low[j] = a + b;
        high[j] = a - b;
    }
}

static void butterflies(float *v, int64_t width, int64_t from, int64_t block) {
    for (int64_t h = from; h < block; h <<= 1)
        for (int64_t i = 0; i < width; i += 2 * h) butterfly(v + i, v + i + h, h);
}

static void hadamard_blocks(float *restrict v, int64_t width, int64_t block) {
    if (block < 16) {               /* narrow blocks (tiny test models): plain butterflies */
        butterflies(v, width, 1, block);
        return;
    }
    for (int64_t c = 0; c < width; c += 16) {  /* stages 1, 2, 4, 8 */
        v16sf x;
        memcpy(&x, v + c, sizeof x);
        x = stage(stage(stage(stage(x, P1, S1), P2, S2), P4, S4), P8, S8);
        memcpy(v + c, &x, sizeof x);
    }
    butterflies(v, width, 16, block);
}

static void load_row(float *restrict v, const void *src, int64_t width, int bf16) {
    if (bf16) {
        const uint16_t *s = (const uint16_t *)src;
        for (int64_t k = 0; k < width; ++k) {
            uint32_t bits = (uint32_t)s[k] << 16;
            memcpy(v + k, &bits, 4);
        }
    } else {
        memcpy(v, src, (size_t)width * 4);
    }
}

static float abs_max(const float *restrict v, int64_t width) {
    uint32_t m = 0;               /* |x| as bits: ordered like the floats, vectorises */
    for (int64_t k = 0; k < width; ++k) {
        uint32_t bits;
        memcpy(&bits, v + k, 4);
        bits &= 0x7fffffffu;
        m = bits > m ? bits : m;
    }
    float out;
    memcpy(&out, &m, 4);
    return out;
}

/* rows x width activations (bfloat16 if bf16, else float32), rotated per block of `block`
   values, quantised per row: codes (as bytes; + offset) and float32 scales. */
int gemvec_rotate_quantize(const void *x, int bf16, int64_t rows, int64_t width, int64_t block,
                           int offset, uint8_t *codes, float *scales, int threads) {
    if (width > MAX_WIDTH || block < 1 || width % block) return 1;
    const int64_t item = bf16 ? 2 : 4;
    #pragma omp parallel for num_threads(threads) schedule(static) if (rows >= 32)
    for (int64_t t = 0; t < rows; ++t) {
        float v[MAX_WIDTH];
        load_row(v, (const char *)x + t * width * item, width, bf16);
        hadamard_blocks(v, width, block);
        float scale = fmaxf(abs_max(v, width), 1e-12f) / 127.0f;
        scales[t] = scale;
        uint8_t *out = codes + t * width;
        for (int64_t k = 0; k < width; ++k) {
            float q = rintf(v[k] / scale);
            q = q > 127.0f ? 127.0f : (q < -127.0f ? -127.0f : q);
            out[k] = (uint8_t)((int32_t)q + offset);
        }
    }
    return 0;
}
""".replace("MAX_WIDTH", str(MAX_WIDTH))

COMPILE_FLAGS = ["-O3", "-march=native", "-fno-math-errno", "-fPIC", "-fopenmp"]


def native_rotate_quantize(
    x: torch.Tensor, block: int, offset: int
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(T, K) bfloat16/float32 CPU rows -> int8 codes (uint8 with ``offset`` 128) and (T, 1)
    float32 scales, rotated per ``block`` channels; None where the native kernel is unavailable."""
    kernel = _kernel() if NativeKernel.enabled else None
    if kernel is None or x.device.type != "cpu" or x.dtype not in (torch.bfloat16, torch.float32):
        return None
    rows, width = x.shape
    if width > MAX_WIDTH or width % block:
        return None
    x = x.contiguous()
    codes = torch.empty(rows, width, dtype=torch.uint8 if offset else torch.int8)
    scales = torch.empty(rows, 1, dtype=torch.float32)
    status = kernel(
        x.data_ptr(), int(x.dtype == torch.bfloat16), rows, width, block, offset,
        codes.data_ptr(), scales.data_ptr(), torch.get_num_threads(),
    )  # fmt: skip
    return (codes, scales) if status == 0 else None


@functools.cache
def _kernel():
    if not sys.platform.startswith("linux"):
        return None
    try:
        library = ctypes.CDLL(str(_built_library()))
    except (OSError, RuntimeError, subprocess.SubprocessError) as error:
        detail = getattr(error, "stderr", None) or b""  # a failed compile: the compiler's last words
        detail = detail.decode(errors="replace").strip()[-500:] if isinstance(detail, bytes) else ""
        log.info("native rotate-and-quantise kernel unavailable (%s)%s; using torch ops", error,
                 f": {detail}" if detail else "")  # fmt: skip
        return None
    function = library.gemvec_rotate_quantize
    function.restype = ctypes.c_int
    function.argtypes = [
        ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
        ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int,
    ]  # fmt: skip
    return function


def _built_library() -> Path:
    """The compiled kernel for this source, compiler flags, CPU and torch's libgomp: built
    once into the cache folder (atomically, so concurrent processes may race harmlessly)."""
    compiler = c_compiler()
    libgomps = [path for path in loaded_libgomps() if "torch" in path]
    if compiler is None:
        raise RuntimeError("no C compiler (cc or gcc) on PATH")
    if not libgomps:
        raise RuntimeError("torch is not running on GNU OpenMP")
    key = "\n".join([C_SOURCE, " ".join(COMPILE_FLAGS), compiler, libgomps[0], *sorted(cpu_flags())])
    target = cache_home() / "kernels" / f"rotate_quantize-{hashlib.sha256(key.encode()).hexdigest()[:16]}.so"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        source, obj, lib = (Path(scratch) / name for name in ("k.c", "k.o", "k.so"))
        source.write_text(C_SOURCE)
        # compile with OpenMP, link to torch's own libgomp rather than the system's
        run = functools.partial(subprocess.run, check=True, capture_output=True, timeout=120)
        run([compiler, *COMPILE_FLAGS, "-c", str(source), "-o", str(obj)])
        gomp = Path(libgomps[0])
        run([compiler, "-shared", str(obj), str(gomp), f"-Wl,-rpath,{gomp.parent}", "-o", str(lib)])
        os.replace(lib, target)
    return target
