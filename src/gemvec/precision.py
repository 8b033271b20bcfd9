"""Numeric precisions gemvec runs the encoder in, and how the default is chosen."""

from __future__ import annotations

import functools
import os
import shutil
import sys
from enum import Enum

import torch

from gemvec.errors import InputError, PrecisionError


class Precision(str, Enum):
    """float32 / bfloat16 compute, int8 / int4 weights (computed in float32), or int8 compute
    (``int8-dynamic``: int8 weights and per-token int8 activations, int32 accumulation)."""

    FLOAT32 = "float32"
    BFLOAT16 = "bfloat16"
    INT8 = "int8"
    INT4 = "int4"
    INT8_DYNAMIC = "int8-dynamic"

    @property
    def compute_dtype(self) -> torch.dtype:
        """The dtype of the activations between matmuls.

        int8-dynamic keeps them in bfloat16 where the CPU multiplies it natively (attention
        and the other non-int8 work run at bf16 speed), float32 elsewhere."""
        if self is Precision.INT8_DYNAMIC:
            return torch.bfloat16 if cpu_has_native_bf16() else torch.float32
        return torch.bfloat16 if self is Precision.BFLOAT16 else torch.float32

    @property
    def weight_bits(self) -> int | None:
        """Bits per quantised weight, or None for float weights."""
        return {Precision.INT8: 8, Precision.INT4: 4, Precision.INT8_DYNAMIC: 8}.get(self)

    @property
    def int8_compute(self) -> bool:
        """Whether the linear layers multiply int8 activations by int8 weights."""
        return self is Precision.INT8_DYNAMIC


_ALIASES = {
    "fp32": "float32",
    "f32": "float32",
    "bf16": "bfloat16",
    "q8": "int8",
    "q4": "int4",
    "int8_dynamic": "int8-dynamic",
    "w8a8": "int8-dynamic",
}
_FLOAT16 = {"float16", "fp16", "f16", "half"}


def parse_precision(value: Precision | str | None, device: torch.device | None = None) -> Precision:
    """A Precision from its name or alias; None picks :func:`default_precision` for ``device``."""
    if value is None:
        return default_precision(device=device)
    if isinstance(value, Precision):
        return value
    key = str(value).strip().lower().removeprefix("torch.")
    if key in _FLOAT16:
        raise PrecisionError(
            "float16 is not supported: EmbeddingGemma's activations reach about 8e5, past float16's "
            "maximum of 65504, so the vectors would be inf/NaN. Use 'bfloat16' (same memory, float32's "
            "range) or 'float32'."
        )
    key = _ALIASES.get(key, key)
    try:
        return Precision(key)
    except ValueError:
        choices = ", ".join(p.value for p in Precision)
        raise PrecisionError(f"Unknown precision {value!r}. Choose one of: {choices}.") from None


PRECISION_ENV = "GEMVEC_PRECISION"
_NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags() -> set[str]:
    """The CPU feature flags Linux reports (empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AMX or AVX512-BF16)."""
    return has_native_bf16(cpu_flags())


def has_native_bf16(flags: set[str]) -> bool:
    return any(flag in flags for flag in _NATIVE_BF16_FLAGS)


@functools.cache
def cpu_int8_dot_products() -> str | None:
    """How this CPU multiplies int8 (:func:`int8_dot_products` of its flags)."""
    return int8_dot_products(cpu_flags())


def int8_dot_products(flags: set[str]) -> str | None:
    """``"amx"`` (AMX-INT8 tiles: signed times signed), ``"vnni"`` (AVX512-VNNI or AVX-VNNI:
    unsigned times signed, exact int32 sums) or None. Without either, x86 int8 matmuls go through
    AVX2's ``vpmaddubsw``, which saturates pairs of products at 16 bits: wrong sums."""
    if "amx_int8" in flags:
        return "amx"
    if "avx512_vnni" in flags or "avx_vnni" in flags:
        return "vnni"
    return None


DEVICE_ENV = "GEMVEC_DEVICE"


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else ``$GEMVEC_DEVICE``, else the first CUDA GPU if PyTorch sees one,
    else the CPU. Nothing requires a GPU; asking for one that is not there is an error."""
    chosen = device if device is not None else os.environ.get(DEVICE_ENV) or None
    if chosen is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(chosen)
    except (RuntimeError, TypeError):
        raise InputError(f"Unknown device {chosen!r}: use 'cpu', 'cuda' or 'cuda:N'.") from None
    if resolved.type not in ("cpu", "cuda"):
        raise InputError(f"Device {chosen!r} is not supported: use 'cpu', 'cuda' or 'cuda:N'.")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise InputError(
            f"Device {chosen!r} asked for, but PyTorch sees no CUDA GPU (this torch is {build}). "
            "Use device='cpu', or install a CUDA build of torch on a machine with an NVIDIA GPU."
        )
    return resolved


def default_precision(
    flags: set[str] | None = None, device: torch.device | None = None, native_kernel: bool | None = None
) -> Precision:
    """``$GEMVEC_PRECISION`` if set; else bfloat16 on a CUDA GPU; on CPUs, by their flags (this
    CPU's, or ``flags``) and whether gemvec's native rotate-and-quantise kernel can be built
    (:func:`native_kernel_possible`, or ``native_kernel``):

    - AMX: bfloat16.
    - Native bf16 (AVX512-BF16) and VNNI: int8-dynamic where the native kernel builds, else
      bfloat16.
    - VNNI without native bf16 (AVX512-VNNI: Cascade/Ice Lake; AVX-VNNI: Alder Lake and later
      clients): int8-dynamic.
    - Otherwise (AVX2 only) float32.
    int8-dynamic needs PyTorch's oneDNN int8 linear; without it, the float choice.

    Each choice is the fastest precision that is faithful (worst cosine to float32 >= 0.995,
    within 0.5 point of it on all 70 evaluation datasets) on that CPU (BENCHMARKS.md, issue 19):
    - AVX512-BF16 + VNNI (an AMD EPYC, measured): with the native kernel int8-dynamic runs
      1.33x bfloat16's batch throughput and answers one query as fast or faster (p50 1.08-1.11x
      lower); without it, its Hadamard rotation and quantisation (torch ops) eat the int8
      matmul's gain: 1.17x on batches, 15% slower on one query.
    - AMX: bfloat16 was as fast on batches and faster on one query than int8-dynamic before the
      native kernel; not yet measured with it.
    - VNNI without native bf16: int8-dynamic is 1.7x float32's batch throughput and 2.6x its
      single-query rate with AVX512-VNNI even without the kernel (this project's AMX machine with
      its instruction sets capped, ``benchmarks/isa_cap.py``); bfloat16 would compute in float32.
    - AVX2 only: int8 matmuls would return wrong sums (int8-dynamic computes exactly in float32
      there, no faster) and bfloat16 runs at float32's speed.
    int8/int4 save memory, not time (weights are dequantised to float32): never automatic.
    """
    chosen = os.environ.get(PRECISION_ENV)
    if chosen:
        return parse_precision(chosen)
    if device is not None and device.type == "cuda":
        return Precision.BFLOAT16
    dots = cpu_int8_dot_products() if flags is None else int8_dot_products(flags)
    int8 = dots is not None and onednn_int8_available()
    native_bf16 = cpu_has_native_bf16() if flags is None else has_native_bf16(flags)
    if native_bf16:
        if dots == "vnni" and int8 and (native_kernel_possible() if native_kernel is None else native_kernel):
            return Precision.INT8_DYNAMIC
        return Precision.BFLOAT16
    return Precision.INT8_DYNAMIC if int8 else Precision.FLOAT32


COMPILE_ENV = "GEMVEC_COMPILE"  # "0": no code compiled at run time (compiled loops, native kernel)


def c_compiler() -> str | None:
    """The C compiler gemvec builds its native kernel with: ``$CC``, else ``cc``, else ``gcc``."""
    return shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")


def native_kernel_possible() -> bool:
    """Whether gemvec's native kernels can be built here: Linux, a C compiler, not switched off."""
    return (
        sys.platform.startswith("linux")
        and os.environ.get(COMPILE_ENV, "1") != "0"
        and c_compiler() is not None
    )


@functools.cache
def onednn_int8_available() -> bool:
    """Whether this PyTorch has oneDNN's int8 linear (x86 builds) and it runs here: the one
    check behind both the default precision and int8-dynamic's choice of kernel."""
    try:
        packed = torch.ops.onednn.qlinear_prepack(torch.ones(8, 16, dtype=torch.int8), None)
        ones = torch.ones(2, 16, dtype=torch.int8)
        scales, zero_points = torch.ones(8), torch.zeros(8, dtype=torch.int32)
        out = torch.ops.onednn.qlinear_pointwise(
            ones, 1.0, 0, packed, scales, zero_points, None, 1.0, 0, torch.float32, "none", [], ""
        )
        return bool(torch.all(out == 16))
    except (AttributeError, RuntimeError, NotImplementedError):
        return False
