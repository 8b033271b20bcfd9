"""The Embedder API: shapes, options, odd input and clear errors (tiny random model)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from gemvec import Embedder, Task
from gemvec.errors import InputError, PrecisionError


def test_shapes_follow_sentence_transformers(tiny_embedder: Embedder) -> None:
    assert tiny_embedder.encode("one").shape == (tiny_embedder.dim,)
    many = tiny_embedder.encode(["one", "two", "three"])
    assert many.shape == (3, tiny_embedder.dim) and many.dtype == np.float32
    assert tiny_embedder.encode([]).shape == (0, tiny_embedder.dim)
    np.testing.assert_allclose(np.linalg.norm(many, axis=1), 1.0, atol=1e-5)
    raw = tiny_embedder.encode(["one", "two"], normalize=False)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)


def test_odd_texts_embed_to_finite_vectors(tiny_embedder: Embedder) -> None:
    odd = ["", "   ", "\n\t", "🙂🚀🎉", "Hello мир 世界 مرحبا नमस्ते", "a" * 5000]
    vectors = tiny_embedder.encode(odd, task="query")
    assert np.isfinite(vectors).all()
    assert len({v.tobytes() for v in vectors}) == len(odd)


def test_vector_does_not_depend_on_batch(tiny_embedder: Embedder) -> None:
    rng = np.random.default_rng(0)
    words = ["alpha", "beta", "gamma", "délta", "ε", "ζήτα", "日本", "🙂"]
    texts = [" ".join(rng.choice(words, size=rng.integers(1, 60))) for _ in range(40)]
    batched = tiny_embedder.encode(texts, batch_size=16)
    alone = np.stack([tiny_embedder.encode(t) for t in texts])
    assert (batched * alone).sum(axis=1).min() >= 0.9999
    shuffled = rng.permutation(len(texts))
    again = tiny_embedder.encode([texts[i] for i in shuffled], batch_size=7)
    np.testing.assert_allclose(again, batched[shuffled], atol=1e-5)


def test_passes_hold_at_most_the_token_budget(
    tiny_embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Long texts go alone, short ones share a pass, no pass pads past the budget, and the
    vectors are those of one big pass."""
    import gemvec.embedder

    lengths = [700, 20, 300, 5, 1100, 90, 250, 40, 3, 260]
    ids = [[7] * n for n in lengths]
    monkeypatch.setattr(gemvec.embedder, "DEFAULT_MAX_BATCH_TOKENS", 1024)
    passes = list(gemvec.embedder._length_sorted_batches(ids, batch_size=64, pad_id=0))
    assert sorted(i for p in passes for i in p.indices) == list(range(len(ids)))
    for p in passes:
        assert p.input_ids.numel() <= 1024 or len(p.indices) == 1
    assert [len(p.indices) for p in passes] == [1, 1, 3, 5]  # 1100 | 700 | 300,260,250 | the rest

    texts = [" ".join(["word"] * (n // 5)) for n in lengths]  # ~5 tokens a word here
    forward, grids = tiny_embedder.encoder.forward, []

    def counting_forward(input_ids, lengths):
        grids.append(input_ids.shape)
        return forward(input_ids, lengths)

    monkeypatch.setattr(tiny_embedder.encoder, "forward", counting_forward)
    small_passes = tiny_embedder.encode(texts)
    assert len(grids) == 4 and all(b * n <= 1024 or b == 1 for b, n in grids)
    monkeypatch.setattr(gemvec.embedder, "DEFAULT_MAX_BATCH_TOKENS", 1 << 20)
    np.testing.assert_allclose(small_passes, tiny_embedder.encode(texts), atol=1e-5)
    assert len(grids) == 5  # all ten in one pass


def test_tasks_prompts_and_titles_change_the_vector(tiny_embedder: Embedder) -> None:
    text = "Mars is the Red Planet."
    query = tiny_embedder.encode_query(text)
    np.testing.assert_allclose(query, tiny_embedder.encode(text, task=Task.QUERY))
    np.testing.assert_allclose(query, tiny_embedder.encode(text, task="query"))
    np.testing.assert_allclose(query, tiny_embedder.encode(text, prompt="task: search result | query: "))
    assert not np.allclose(query, tiny_embedder.encode(text))
    untitled = tiny_embedder.encode_document(text)
    np.testing.assert_allclose(untitled, tiny_embedder.encode_document(text, titles=[None]), atol=1e-6)
    assert not np.allclose(untitled, tiny_embedder.encode_document(text, titles="Planets"))


def test_matryoshka_dims(tiny_embedder: Embedder) -> None:
    full = tiny_embedder.encode("text", normalize=False)
    with pytest.warns(UserWarning, match="Matryoshka"):
        small = tiny_embedder.encode("text", dim=16)
    np.testing.assert_allclose(small, full[:16] / np.linalg.norm(full[:16]), atol=1e-5)
    for bad in (0, -1, tiny_embedder.dim + 1, 2.5, "128", True):
        with pytest.raises(InputError, match="dim must be"):
            tiny_embedder.encode("text", dim=bad)


def test_truncation_warns_once_with_count_or_raises(tiny_model_dir) -> None:
    embedder = Embedder.load(tiny_model_dir, max_tokens=32)
    texts = ["short", "word " * 100, "word " * 200]
    with pytest.warns(UserWarning, match="2 of 3 text"):
        vectors = embedder.encode(texts)
    assert np.isfinite(vectors).all()
    with pytest.raises(InputError, match="exceed the 32-token limit"):
        embedder.encode(texts, truncate=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        embedder.encode(["short"])


def test_bad_input_is_named(tiny_embedder: Embedder) -> None:
    with pytest.raises(InputError, match=r"texts\[1\] is int"):
        tiny_embedder.encode(["ok", 3])
    with pytest.raises(InputError, match="string or a list"):
        tiny_embedder.encode(None)
    with pytest.raises(InputError, match="Unknown task"):
        tiny_embedder.encode("x", task="poetry")
    with pytest.raises(InputError, match="either task= or prompt="):
        tiny_embedder.encode("x", task="query", prompt="p: ")
    with pytest.raises(InputError, match="2 texts but 1 titles"):
        tiny_embedder.encode_document(["a", "b"], titles=["t"])
    with pytest.raises(InputError, match=r"texts\[0\] has a lone surrogate"):
        tiny_embedder.encode(["bad \ud800 text"])
    with pytest.raises(InputError, match="batch_size"):
        tiny_embedder.encode("x", batch_size=0)


@pytest.mark.parametrize("name", ["float16", "fp16", "half", "torch.float16"])
def test_float16_is_refused_with_the_reason(tiny_model_dir, name: str) -> None:
    with pytest.raises(PrecisionError, match="overflow|65504"):
        Embedder.load(tiny_model_dir, precision=name)


def test_unknown_precision(tiny_model_dir) -> None:
    with pytest.raises(PrecisionError, match="Unknown precision"):
        Embedder.load(tiny_model_dir, precision="float64")


def test_similarity_is_cosine(tiny_embedder: Embedder) -> None:
    a = tiny_embedder.encode(["red planet", "gas giant"])
    sims = tiny_embedder.similarity(a, a * 3.0)
    np.testing.assert_allclose(np.diag(sims), 1.0, atol=1e-5)
    assert sims.shape == (2, 2)
    assert tiny_embedder.similarity(a[0], a).shape == (1, 2)
    with pytest.raises(InputError, match="same dim"):
        tiny_embedder.similarity(a, a[:, :8])


def count_tokenised_texts(embedder: Embedder, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Texts per call of the tokenizer backend, from now on."""
    calls: list[int] = []
    backend_ids = embedder.tokenizer.backend.ids

    def counting(texts):
        calls.append(len(texts))
        return backend_ids(texts)

    monkeypatch.setattr(embedder.tokenizer.backend, "ids", counting)
    return calls


def test_prepare_tokenises_once_and_encode_prepared_matches_encode(
    tiny_embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = ["Mars is red.", "Venus is hot and cloudy.", "日本語"]
    expected = tiny_embedder.encode_document(texts, titles=["Planets", None, "言葉"])
    calls = count_tokenised_texts(tiny_embedder, monkeypatch)
    prepared = tiny_embedder.prepare(texts, titles=["Planets", None, "言葉"])
    assert calls == [3]
    assert prepared.texts[0] == "title: Planets | text: Mars is red."
    assert prepared.counts == tuple(len(row) for row in prepared.ids) and not any(prepared.truncated)
    np.testing.assert_allclose(tiny_embedder.encode_prepared(prepared), expected, atol=1e-6)
    assert calls == [3]  # encoding did not tokenise again


def test_prepared_texts_concatenate(tiny_embedder: Embedder) -> None:
    texts = ["fox", "a longer query about a fox"]
    queries = tiny_embedder.prepare(texts, Task.QUERY)
    documents = tiny_embedder.prepare("The quick brown fox.", Task.DOCUMENT)
    merged = type(queries).concat([queries, documents])
    assert len(merged) == 3 and merged.tokens == queries.tokens + documents.tokens
    vectors = tiny_embedder.encode_prepared(merged, batch_size=2)
    np.testing.assert_allclose(vectors[:2], tiny_embedder.encode_query(texts), atol=1e-6)
    np.testing.assert_allclose(vectors[2], tiny_embedder.encode_document("The quick brown fox."), atol=1e-6)
    assert tiny_embedder.encode_prepared(tiny_embedder.prepare([])).shape == (0, tiny_embedder.dim)


def test_prepare_reports_truncation_as_asked(tiny_model_dir) -> None:
    embedder = Embedder.load(tiny_model_dir, max_tokens=32)
    texts = ["short", "word " * 100]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet = embedder.prepare(texts, warn=False)
    assert quiet.truncated == (False, True)
    assert quiet.counts[1] > 32 and len(quiet.ids[1]) == 32
    with pytest.warns(UserWarning, match="1 of 2 text") as caught:
        embedder.prepare(texts)
    assert caught[0].filename == __file__  # the warning names the caller's line, not gemvec's
    with pytest.raises(InputError, match="exceed the 32-token limit"):
        embedder.prepare(texts, truncate=False)


def test_titles_only_with_the_document_prompt(tiny_embedder: Embedder) -> None:
    with pytest.raises(InputError, match="titles= go with the document prompt"):
        tiny_embedder.prepare(["a"], Task.QUERY, titles=["t"])
    with pytest.raises(InputError, match="1 texts but 2 titles"):
        tiny_embedder.prepare(["a"], titles=["t", "u"])
