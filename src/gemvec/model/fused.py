"""Elementwise work between the matmuls, fused into single loops by ``torch.compile``.

Around each linear layer the encoder does memory-bound work: RMSNorms in float32, residual
adds, GELU times up, RoPE, int8 activation quantisation. Run op by op, every step reads and
writes the whole (tokens, width) tensor; on a batch of 32 medium texts that took more time
than the matmuls themselves (profile in BENCHMARKS.md, issue 19). Compiled, each chain is one
pass over memory.

:class:`FusedOp` holds the plain function and builds its compiled twin on a daemon thread once
a job has shown it is long enough to gain from it (:data:`CALLS_BEFORE_BUILD` calls). Until
the build is done, for calls on a few tokens (a query; see :data:`FUSED_MIN_ROWS`) and in
short jobs, the plain function runs. Both compute in float32 and round to the activation dtype
at the same steps (inductor's ``emulate_precision_casts``; without it a quarter of GELU·up's
bfloat16 outputs moved by a unit in the last place); what remains is a rare difference of one
such unit (summation order, vectorised transcendentals). Where ``torch.compile`` cannot build
(no C++ compiler, an unsupported platform) the plain function runs throughout, as it does
everywhere with ``GEMVEC_COMPILE=0`` in the environment (or :attr:`FusedOp.enabled` False).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import ClassVar

import torch

log = logging.getLogger(__name__)
# Token rows below which a call runs the plain ops. Each compiled loop alone beats them from
# about 8 rows (45 us against 59 us per add-and-norm at 16 rows, bfloat16, one AMX core), but
# inside the model the matmul after it slowed by more: a one-sentence query (18 rows) ran 7-12%
# slower fused, a medium text (93 rows) 13% faster (BENCHMARKS.md, issue 19 continued).
FUSED_MIN_ROWS = 48
# A build takes a core for 5-20 s; a job starts one only after this many calls of the op that
# were large enough for it (about eight forward passes: a short job never pays for a build).
CALLS_BEFORE_BUILD = 200


class _Build:
    """One compiled variant (one dtype, sizes, constants) and the thread building it."""

    def __init__(self) -> None:
        self.thread: threading.Thread | None = None
        self.compiled: Callable | None = None

    def wait(self) -> bool:
        if self.thread is not None:
            self.thread.join()
        return self.compiled is not None


class FusedOp:
    """A pure tensor function with a compiled twin, built in the background when worth it.

    The first argument's first dimension is the token count (:data:`FUSED_MIN_ROWS`).
    ``dynamic``: argument position -> the dimensions the compiled loop is generic in (the token
    count, by default of the first argument), so one build serves every batch. Calls that
    differ in anything else (a dtype, another size, a constant argument, None for a tensor)
    get a build of their own, so no call waits for a compile.
    ``compiled_form``: what to compile, where a different formula of the same function fuses
    better (it must agree with ``function``: each build is checked on the call that began it).
    """

    enabled: ClassVar[bool] = os.environ.get("GEMVEC_COMPILE", "1") != "0"
    calls_before_build: ClassVar[int] = CALLS_BEFORE_BUILD
    warming: ClassVar[set[_Build] | None] = None  # inside building_at_once(): the builds called

    def __init__(
        self,
        function: Callable,
        dynamic: dict[int, Sequence[int]] | None = None,
        compiled_form: Callable | None = None,
    ) -> None:
        self.function = function
        self.compiled_form = compiled_form or function
        self.dynamic = dynamic if dynamic is not None else {0: (0,)}
        self.name = function.__name__
        self._builds: dict[tuple, _Build] = {}
        self._large_calls = 0
        self._lock = threading.Lock()

    def __call__(self, *args):
        first = args[0]
        if FusedOp.enabled and first.shape[0] >= FUSED_MIN_ROWS and first.device.type == "cpu":
            build = self._builds.get(self._signature(args))
            if build is None:
                self._large_calls += 1
                if self._large_calls >= FusedOp.calls_before_build:
                    build = self._start(args)
            if build is not None:
                if FusedOp.warming is not None:
                    FusedOp.warming.add(build)
                if build.compiled is not None:
                    return build.compiled(*args)
        return self.function(*args)

    def build(self, *args) -> bool:
        """Build the variant for calls like ``args`` now (if not begun) and wait for it;
        whether it compiled."""
        return self._start(args).wait()

    def _signature(self, args: tuple) -> tuple:
        """What a compiled variant is specialised on: all but the dynamic dimensions, and the
        calling thread's autograd mode (a compiled graph is only valid in the mode it was
        built in; a build thread starts in the default mode, not the caller's)."""
        signature: list = [(torch.is_grad_enabled(), torch.is_inference_mode_enabled())]
        for index, arg in enumerate(args):
            if isinstance(arg, torch.Tensor):
                dynamic = self.dynamic.get(index, ())
                sizes = tuple(-1 if d in dynamic else size for d, size in enumerate(arg.shape))
                signature.append((arg.dtype, arg.device.type, sizes))
            else:
                signature.append(arg)
        return tuple(signature)

    def _start(self, args: tuple) -> _Build:
        signature = self._signature(args)
        with self._lock:
            build = self._builds.get(signature)
            if build is None:
                examples = tuple(_example(a) if i in self.dynamic else a for i, a in enumerate(args))
                build = self._builds[signature] = _Build()
                name = f"gemvec-compile-{self.name}"
                mode = signature[0]
                build.thread = threading.Thread(target=self._compile, args=(build, examples, mode), name=name)
                build.thread.daemon = True
                build.thread.start()
        return build

    def _compile(self, build: _Build, examples: tuple, mode: tuple[bool, bool]) -> None:
        grad, inference = mode
        with torch.inference_mode(inference), torch.set_grad_enabled(grad):
            self._compile_in_mode(build, examples)

    def _compile_in_mode(self, build: _Build, examples: tuple) -> None:
        try:
            # emulate_precision_casts: round to bfloat16 wherever the plain ops (and the
            # reference) round, rather than keep float32 between fused steps
            options = {"emulate_precision_casts": True}
            compiled = torch.compile(self.compiled_form, fullgraph=True, options=options)
            for index, dims in self.dynamic.items():
                if isinstance(examples[index], torch.Tensor):  # an optional argument may be None
                    torch._dynamo.mark_dynamic(examples[index], list(dims))
            if not _same(compiled(*examples), self.function(*examples)):
                log.warning("%s: the compiled loop disagrees with the plain ops; not used", self.name)
                return
            build.compiled = compiled
        except Exception as error:  # no C++ compiler, an unsupported platform: same maths, unfused
            log.info("%s: torch.compile unavailable (%s); running plain ops", self.name, error)


def wait_for(builds: set[_Build]) -> bool:
    """Wait for these builds; whether there were any and all of them compiled."""
    return bool(builds) and all([build.wait() for build in builds])


@contextlib.contextmanager
def building_at_once() -> Iterator[set[_Build]]:
    """Within the block, a large call starts its op's build at once rather than after
    :data:`CALLS_BEFORE_BUILD` of them (a warm-up pass). Yields the set of the builds the
    block's calls began or found, filled as they run (wait with :func:`wait_for`)."""
    builds: set[_Build] = set()
    before = FusedOp.calls_before_build
    FusedOp.calls_before_build, FusedOp.warming = 1, builds
    try:
        yield builds
    finally:
        FusedOp.calls_before_build, FusedOp.warming = before, None


def _example(arg):
    """A copy of a tensor argument for the build to mark dynamic (marks stay on a tensor), of
    the same kind: an inference tensor or not (the compiled graph's guards tell them apart)."""
    if not isinstance(arg, torch.Tensor):
        return arg
    with torch.inference_mode(arg.is_inference()):
        return arg.clone()


def _same(compiled, plain) -> bool:
    """Whether two results (a tensor or a tuple of them) agree: integers exactly, floats to
    a few units in their dtype's last place — of each value, or of its row's largest value.

    The row's scale matters where a row sums large terms that cancel: the residual stream
    carries values of 1e4 next to ones near 0, and a fused multiply-add there (one rounding
    where the plain ops round twice) moves a result near 0 by a unit of 1e4's last place."""
    if isinstance(plain, torch.Tensor):
        compiled, plain = (compiled,), (plain,)
    for a, b in zip(compiled, plain, strict=True):
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        if not a.is_floating_point():
            if not torch.equal(a, b):
                return False
        else:
            ulps = 4 * torch.finfo(a.dtype).eps
            tolerance = max(ulps, 1e-5)
            a, b = a.float(), b.float()
            row_scale = b.abs().amax(dim=-1, keepdim=True) if b.dim() else b.abs()
            allowed = tolerance * (1 + b.abs()) + ulps * row_scale
            if not bool(((a - b).abs() <= allowed).all()):  # also False where either is NaN
                return False
    return True
