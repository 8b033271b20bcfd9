"""Run a benchmark as on an older x86 CPU: cap the instruction sets the kernels may use.

The machines here change between sessions (AVX2-only, AVX512-VNNI, AMX), and the one at hand
is rarely the one a question is about. ``--emulate-isa NAME`` caps all three code generators a
gemvec forward pass runs on — oneDNN (matmuls, int8 and bf16 linears: ``ONEDNN_MAX_CPU_ISA``),
ATen's vectorised kernels (``ATEN_CPU_CAPABILITY``) and inductor's compiled loops (its vector
width) — and shows gemvec the CPU flags of that CPU, so its own choices (the default
precision, packed bf16 weights, int8-dynamic's kernel and activations) follow. Clock, cores and
caches stay this machine's: ratios between contenders in one run carry over, absolute rates
do not. The caps must be set before torch loads, hence the two steps.
"""

from __future__ import annotations

import os
import sys

_AVX2 = {"avx", "avx2", "fma", "f16c"}
_AVX512 = _AVX2 | {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}
PROFILES: dict[str, dict] = {
    # Haswell .. Comet Lake, Zen 1-3: no AVX-512, no VNNI
    "avx2": {"flags": _AVX2, "onednn": "AVX2", "aten": "avx2", "simdlen": 256},
    # Alder Lake .. Arrow Lake clients: 256-bit int8 dot products (AVX-VNNI), no AVX-512
    "avx2-vnni": {"flags": _AVX2 | {"avx_vnni"}, "onednn": "AVX2_VNNI", "aten": "avx2", "simdlen": 256},
    # Cascade Lake, Ice Lake: int8 dot products (VNNI), bf16 emulated
    "avx512-vnni": {
        "flags": _AVX512 | {"avx512_vnni"},
        "onednn": "AVX512_CORE_VNNI",
        "aten": "avx512",
        "simdlen": 512,
    },
    # Cooper Lake, Zen 4: native bf16 dot products, no AMX tiles
    "avx512-bf16": {
        "flags": _AVX512 | {"avx512_vnni", "avx512_bf16"},
        "onednn": "AVX512_CORE_BF16",
        "aten": "avx512",
        "simdlen": 512,
    },
}
OPTION = "--emulate-isa"


def cap_from_argv() -> str | None:
    """Read ``--emulate-isa NAME`` from the command line and set the caps that take effect
    when torch loads. Call before ``import torch``; returns the profile name, or None."""
    name = next((sys.argv[i + 1] for i, arg in enumerate(sys.argv[:-1]) if arg == OPTION), None)
    if name is None:
        return None
    if name not in PROFILES:
        sys.exit(f"{OPTION}: choose one of {', '.join(PROFILES)}")
    profile = PROFILES[name]
    os.environ["ONEDNN_MAX_CPU_ISA"] = profile["onednn"]
    os.environ["ATEN_CPU_CAPABILITY"] = profile["aten"]
    return name


def apply_after_import(name: str) -> set[str]:
    """The rest of the caps, once torch is imported and before gemvec decides anything: inductor's
    vector width and the CPU flags gemvec sees. Returns the emulated flags."""
    import torch._inductor.config as inductor_config

    import gemvec.precision

    profile = PROFILES[name]
    # Inductor's settings are per thread (context variables) and gemvec compiles on threads of
    # its own: set the default every thread starts from. An AVX2 build left at the host's
    # vector width while ATen is capped to AVX2 computes garbage (seen here before this).
    inductor_config._config["cpp.simdlen"].default = profile["simdlen"]
    flags = set(profile["flags"])
    gemvec.precision.cpu_flags = lambda: flags
    gemvec.precision.cpu_has_native_bf16.cache_clear()
    gemvec.precision.cpu_int8_dot_products.cache_clear()
    return flags
