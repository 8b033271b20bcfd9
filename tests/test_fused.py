"""The compiled loops between the matmuls (gemvec.model.fused) compute what the plain ops do."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gemvec import Embedder
from gemvec.model.fused import FusedOp, _same
from gemvec.model.gemma3 import ADD_AND_NORM, GELU_TIMES_UP, NORM_AND_ROPE, RotaryTable
from gemvec.model.int8_compute import QUANTIZE_ROWS

TOKENS = 200  # rows: enough values (x 768) for a call to take the compiled path


@pytest.fixture(autouse=True)
def compiling() -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(FusedOp, "enabled", True)
        yield


def realistic_arguments(op: FusedOp, dtype: torch.dtype, int8: bool) -> tuple:
    """EmbeddingGemma-sized arguments: a residual stream with large values, outlier channels."""
    generator = torch.Generator().manual_seed(5)

    def rows(width: int, scale: float) -> torch.Tensor:
        x = torch.randn(TOKENS, width, generator=generator) * scale
        x[:, 7] *= 30  # an outlier channel
        return x.to(dtype)

    row_scale = torch.rand(TOKENS, 1, generator=generator) + 0.01 if int8 else None
    norm_scale = torch.rand(768, generator=generator) + 0.5
    if op is ADD_AND_NORM:
        return rows(768, 40.0), rows(768, 3.0), row_scale, norm_scale, norm_scale.flip(0), 1e-6
    if op is GELU_TIMES_UP:
        return rows(2304, 2.0), row_scale
    rotation = RotaryTable(256, 10_000.0, 2048).at(torch.arange(TOKENS) * 3, dtype)
    head_scale = torch.rand(256, generator=generator) + 0.5
    return rows(1280, 2.0), row_scale, head_scale, head_scale.flip(0), rotation.cos, rotation.sin, 1e-6, 3, 1


def compiled_result(op: FusedOp, args: tuple):
    """op(*args) through its compiled loop (failing if it would run the plain ops)."""
    assert op.build(*args), f"{op.name} did not compile"
    plain = op.function
    try:
        op.function = lambda *a: pytest.fail(f"{op.name} ran its plain ops")
        return op(*args)
    finally:
        op.function = plain


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("int8", [False, True], ids=["float", "int8 row scales"])
@pytest.mark.parametrize("op", [ADD_AND_NORM, GELU_TIMES_UP, NORM_AND_ROPE], ids=lambda op: op.name)
def test_each_compiled_loop_matches_its_plain_ops(op: FusedOp, dtype: torch.dtype, int8: bool) -> None:
    args = realistic_arguments(op, dtype, int8)
    compiled, plain = compiled_result(op, args), op.function(*args)
    for a, b in zip(*[(r,) if isinstance(r, torch.Tensor) else r for r in (compiled, plain)], strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        eps = torch.finfo(dtype).eps
        tolerance = 4 * eps * b.float().abs().amax()  # a few units in the last place
        torch.testing.assert_close(a.float(), b.float(), rtol=4 * eps, atol=float(tolerance))
        if dtype == torch.bfloat16:  # rounded where the plain ops round: rarely one unit apart
            # (GELU's compiled sigmoid form is exact where the plain tanh form cancels, for
            # large negative gates: there the two differ by more, around zero)
            share = 0.03 if op is GELU_TIMES_UP else 1e-3
            assert (a != b).float().mean() < share, (op.name, (a != b).float().mean())


@pytest.mark.parametrize("mode", ["inference_mode", "no_grad", "enable_grad"])
def test_a_call_in_the_mode_it_was_built_in_does_not_recompile(mode: str) -> None:
    """The build runs on its own thread, whose autograd mode is the default: it must compile for
    the caller's mode, or the caller's first compiled call recompiles (a stall of seconds)."""
    op = FusedOp(lambda x, y: (x * 3 + y).relu(), dynamic={0: (0,), 1: (0,)})
    x, y = torch.randn(300, 300), torch.randn(300, 300)
    with getattr(torch, mode)():
        assert op.build(x, y)
        with torch._dynamo.config.patch(error_on_recompile=True):
            assert torch.equal(op(x[:100], y[:100]), (x[:100] * 3 + y[:100]).relu())


def test_compiled_quantiser_gives_the_plain_ops_codes() -> None:
    generator = torch.Generator().manual_seed(3)
    for dtype in (torch.bfloat16, torch.float32):
        x = (torch.randn(700, 1152, generator=generator) * 300).to(dtype)
        x[::7, 5] *= 40  # outliers, as in the down projection's input
        codes, scales = compiled_result(QUANTIZE_ROWS, (x,))
        plain_codes, plain_scales = QUANTIZE_ROWS.function(x)
        assert torch.equal(codes, plain_codes) and torch.equal(scales, plain_scales)


def test_a_build_that_fails_leaves_the_plain_ops() -> None:
    def branchy(x: torch.Tensor) -> torch.Tensor:  # data-dependent control flow: no whole graph
        return x + 1 if x.sum() > 0 else x - 1

    op = FusedOp(branchy)
    x = torch.randn(300, 300)
    assert op.build(x) is False
    assert torch.equal(op(x), branchy(x))


def test_a_compiled_form_that_disagrees_is_not_used() -> None:
    op = FusedOp(lambda x: x + 1, compiled_form=lambda x: x + 2)
    x = torch.randn(300, 300)
    assert op.build(x) is False
    assert torch.equal(op(x), x + 1)


def test_agreement_allows_a_few_units_of_the_row_scale_and_no_more() -> None:
    """A residual row holds values of 1e4 and values near 0: where the plain ops round twice and
    the compiled loop once, a sum near 0 moves by a unit of 1e4's last place (~1e-3)."""
    plain = torch.tensor([[1.0e4, 1.0e-3], [1.0, 2.0]])
    one_unit_of_the_row = plain + torch.tensor([[0.0, 1.0e-3], [0.0, 0.0]])
    assert _same(one_unit_of_the_row, plain)
    assert not _same(plain + torch.tensor([[0.0, 0.5], [0.0, 0.0]]), plain)  # half a unit of 1
    assert not _same(plain + torch.tensor([[0.0, 0.0], [0.0, 1.0e-3]]), plain)  # small rows stay strict
    with_nan = plain.clone()
    with_nan[1, 1] = float("nan")
    assert not _same(with_nan, plain)
    bf16 = torch.tensor([[300.0, 1.0]], dtype=torch.bfloat16)
    assert _same(bf16 + torch.tensor([[0.0, 2.0]], dtype=torch.bfloat16), bf16)  # 300's last place is 2
    assert not _same(bf16 + torch.tensor([[0.0, 16.0]], dtype=torch.bfloat16), bf16)


def test_short_jobs_do_not_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """A build takes a core for seconds: only a job that has made several large calls starts one."""
    monkeypatch.setattr(FusedOp, "calls_before_build", 3)
    op = FusedOp(lambda x: x * 2 + 1)
    large, small = torch.randn(300, 300), torch.randn(10, 10)
    for _ in range(5):
        op(small)
    op(large), op(large)
    assert not op._builds
    op(large)
    assert len(op._builds) == 1 and op.build(large)  # begun by the third call: waits for it
    assert torch.equal(op(large), large * 2 + 1)


@pytest.mark.parametrize("precision", ["float32", "bfloat16", "int8-dynamic"])
def test_real_model_vectors_do_not_depend_on_fusion(real_model_dir, shared_data, precision: str) -> None:
    """A long job switches to the compiled loops mid-way: its vectors must stay as faithful to
    float32 as the plain ops' are (bfloat16 rounding makes the two differ as much as either
    differs from float32, so the check is each one against float32)."""
    lines = (shared_data / "scifact/corpus.jsonl").read_text(encoding="utf-8").splitlines()[:16]
    texts = [" ".join(json.loads(line)["text"].split()[:80]) for line in lines]
    FusedOp.enabled = False
    reference = Embedder.load(real_model_dir, "float32").encode_document(texts, batch_size=16)
    embedder = Embedder.load(real_model_dir, precision)
    plain = embedder.encode_document(texts, batch_size=16)
    FusedOp.enabled = True
    assert embedder.build_fused_loops()
    with torch._dynamo.config.patch(error_on_recompile=True):  # built for exactly these calls
        compiled = embedder.encode_document(texts, batch_size=16)
    worst_plain = float(np.min(np.sum(plain * reference, axis=1)))
    worst_compiled = float(np.min(np.sum(compiled * reference, axis=1)))
    if precision == "float32":
        assert worst_compiled >= 0.999999, worst_compiled
    else:
        assert worst_compiled >= worst_plain - 2e-4, (worst_compiled, worst_plain)
