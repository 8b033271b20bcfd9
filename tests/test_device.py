"""Device choice: CPU by default here, CUDA when asked for only if PyTorch sees a GPU, and an
encoder whose every tensor follows the device it is moved to (checked on PyTorch's meta device,
which runs the shapes without a GPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gemvec import Embedder
from gemvec.errors import InputError
from gemvec.model.layout import BatchLayout
from gemvec.precision import DEVICE_ENV, Precision, default_precision, resolve_device


def test_device_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(None) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device(None) == torch.device("cuda")  # a GPU is used when there is one
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert resolve_device(None) == torch.device("cpu")  # unless the environment says otherwise
    assert resolve_device("cuda:1") == torch.device("cuda:1")


def test_missing_or_unknown_devices_are_refused_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match="no CUDA GPU.*device='cpu'"):
        resolve_device("cuda")
    with pytest.raises(InputError, match="not supported"):
        resolve_device("mps")
    with pytest.raises(InputError, match="Unknown device 'gpu0'"):
        resolve_device("gpu0")


def test_bfloat16_is_the_default_on_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEMVEC_PRECISION", raising=False)
    assert default_precision({"avx2"}, torch.device("cuda")) is Precision.BFLOAT16
    assert default_precision({"avx2"}, torch.device("cpu")) is Precision.FLOAT32


def test_explicit_cpu_device_gives_the_same_vectors(tiny_model_dir, tiny_embedder: Embedder) -> None:
    on_cpu = Embedder.load(tiny_model_dir, "float32", device="cpu")
    assert on_cpu.device == torch.device("cpu")
    texts = ["a short text", "and a somewhat longer one, to pad the other"]
    np.testing.assert_array_equal(on_cpu.encode(texts), tiny_embedder.encode(texts))


def test_every_tensor_follows_the_encoder_to_its_device(tiny_model_dir) -> None:
    """Moved to the meta device, a forward pass fails on any tensor left on the CPU (elementwise
    ops refuse to mix devices) and would return a CPU tensor if the layers ran there."""
    embedder = Embedder.load(tiny_model_dir, "float32")
    encoder, head = embedder.encoder.to("meta"), embedder.head.to("meta")
    assert encoder.device == torch.device("meta")
    # two attention groups: one padded (5 and 3 tokens), one of a single token without a mask
    input_ids = torch.tensor([[2, 10, 11, 12, 1], [2, 13, 1, 0, 0], [2, 0, 0, 0, 0]])
    lengths = torch.tensor([5, 3, 1])
    assert len(BatchLayout(lengths, 5, encoder.config.attention_window).groups) == 2
    hidden = encoder(input_ids, lengths)
    assert hidden.device.type == "meta" and hidden.shape == (3, 5, encoder.config.hidden_size)
    pooled = head(hidden, lengths)
    assert pooled.device.type == "meta" and pooled.shape == (3, embedder.dim)
