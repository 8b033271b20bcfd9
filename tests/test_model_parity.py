"""gemvec's encoder and head against the reference stack (transformers + sentence-transformers).

Both load the same tiny random checkpoint; float32 outputs must agree within 1e-5.
The tiny model's sliding window is 9 tokens, so most texts here cross it.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from gemvec import Embedder, Task

sentence_transformers = pytest.importorskip("sentence_transformers")

TEXTS = [
    "short",
    "Mars, known for its reddish appearance, is often referred to as the Red Planet. " * 6,
    "Le renard brun rapide saute par-dessus le chien paresseux.",
    "敏捷的棕色狐狸跳过了懒狗。",
    "",
    "a b c d e f g h i j k l m n o p q r s t u v w x y z " * 3,
]


@pytest.fixture(scope="module")
def reference(tiny_model_dir):
    return sentence_transformers.SentenceTransformer(str(tiny_model_dir), device="cpu")


def test_texts_cross_the_sliding_window_and_need_padding(tiny_embedder: Embedder) -> None:
    lengths = tiny_embedder.count_tokens(TEXTS)
    window = tiny_embedder.encoder.config.attention_window
    assert max(lengths) > 4 * window, "a text must be much longer than the sliding window"
    assert len(set(lengths)) == len(lengths), "mixed lengths exercise right-padding"


@pytest.mark.parametrize("task", list(Task))
def test_every_task_prompt_matches_reference(tiny_embedder: Embedder, reference, task: Task) -> None:
    ours = tiny_embedder.encode(TEXTS, task=task, batch_size=len(TEXTS))
    theirs = reference.encode(TEXTS, prompt=task.prompt, batch_size=len(TEXTS))
    np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=0)


def test_document_titles_match_reference(tiny_embedder: Embedder, reference) -> None:
    titles = ["Planets", None, "", "狐狸", "x", "Alphabet"]
    ours = tiny_embedder.encode_document(TEXTS, titles=titles)
    prompted = [f"title: {t or 'none'} | text: {x}" for t, x in zip(titles, TEXTS, strict=True)]
    np.testing.assert_allclose(ours, reference.encode(prompted), atol=1e-5, rtol=0)


@pytest.mark.parametrize("dim", [64, 48, 32, 8])
def test_matryoshka_truncation_matches_reference(tiny_embedder: Embedder, reference, dim: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tiny model has no trained Matryoshka dims
        ours = tiny_embedder.encode_query(TEXTS, dim=dim)
    theirs = reference.encode_query(TEXTS, truncate_dim=dim, normalize_embeddings=True)
    assert ours.shape == (len(TEXTS), dim)
    np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=0)


def test_unpadded_single_text_matches_reference(tiny_embedder: Embedder, reference) -> None:
    for text in TEXTS:
        np.testing.assert_allclose(tiny_embedder.encode(text), reference.encode(text), atol=1e-5, rtol=0)


def test_encoder_hidden_states_match_transformers(tiny_model_dir, tiny_embedder: Embedder) -> None:
    transformers = pytest.importorskip("transformers")
    model = transformers.AutoModel.from_pretrained(str(tiny_model_dir), attn_implementation="eager").eval()
    assert model.config.use_bidirectional_attention
    ids = tiny_embedder.tokenizer.encode([TEXTS[1]]).ids[0]
    input_ids = torch.tensor([ids])
    with torch.inference_mode():
        theirs = model(input_ids=input_ids).last_hidden_state
        ours = tiny_embedder.encoder(input_ids, torch.tensor([len(ids)]))
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_bfloat16_tracks_reference_bfloat16(tiny_model_dir, reference) -> None:
    bf16 = Embedder.load(tiny_model_dir, precision="bfloat16")
    ref_bf16 = sentence_transformers.SentenceTransformer(
        str(tiny_model_dir), device="cpu", model_kwargs={"torch_dtype": torch.bfloat16}
    )
    ours = bf16.encode_query(TEXTS)
    theirs = ref_bf16.encode_query(TEXTS, convert_to_tensor=True).float().numpy()
    cosine = (ours * theirs).sum(axis=1) / np.linalg.norm(theirs, axis=1)
    assert cosine.min() > 0.999
    fp32 = reference.encode_query(TEXTS)
    assert ((ours * fp32).sum(axis=1)).min() > 0.99
