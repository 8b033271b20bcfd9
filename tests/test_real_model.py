"""The real EmbeddingGemma-300M checkpoint against the model card and sentence-transformers.

Runs when EMBEDDINGGEMMA_DIR points at the checkpoint (CI sets it); skipped otherwise.
"""

from __future__ import annotations

import numpy as np
import pytest

from gemvec import Embedder

pytestmark = pytest.mark.real_model

MULTILINGUAL = [
    "The weather is lovely today, so we are going for a walk in the park.",
    "Il fait beau aujourd'hui, alors nous allons nous promener dans le parc.",
    "Das Wetter ist heute schön, deshalb gehen wir im Park spazieren.",
    "Hoy hace buen tiempo, así que vamos a pasear por el parque.",
    "今日は天気が良いので、公園を散歩します。",
    "今天天气很好，所以我们去公园散步。",
    "Сегодня прекрасная погода, поэтому мы идём гулять в парк.",
    "الطقس جميل اليوم، لذلك سنذهب في نزهة في الحديقة.",
    "आज मौसम अच्छा है, इसलिए हम पार्क में टहलने जा रहे हैं।",
    "오늘은 날씨가 좋아서 공원에 산책하러 갑니다.",
    "Hava bugün çok güzel, bu yüzden parkta yürüyüşe çıkıyoruz.",
    "Η μέρα είναι υπέροχη σήμερα, γι' αυτό πάμε βόλτα στο πάρκο.",
]
LONG_TEXT = " ".join(
    f"Paragraph {i}: the committee reviewed item {i * 7} of the budget, noting that spending on "
    f"infrastructure rose by {i % 9} percent while education grew more slowly than expected."
    for i in range(55)
)


@pytest.fixture(scope="module")
def reference(real_model_dir):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    return sentence_transformers.SentenceTransformer(str(real_model_dir), device="cpu")


def test_model_card_example(real_embedder: Embedder) -> None:
    query = real_embedder.encode_query("Which planet is known as the Red Planet?")
    documents = real_embedder.encode_document(
        [
            "Venus is often called Earth's twin because of its similar size and proximity.",
            "Mars, known for its reddish appearance, is often referred to as the Red Planet.",
            "Jupiter, the largest planet in our solar system, has a prominent red spot.",
            "Saturn, famous for its rings, is sometimes mistaken for the Red Planet.",
        ]
    )
    similarities = real_embedder.similarity(query, documents)[0]
    np.testing.assert_allclose(similarities, [0.3011, 0.6359, 0.4930, 0.4889], atol=0.003)


def test_long_text_is_longer_than_the_sliding_window(real_embedder: Embedder) -> None:
    assert 1500 < real_embedder.count_tokens([LONG_TEXT])[0] <= 2048


@pytest.mark.parametrize("kind", ["query", "document"])
def test_multilingual_parity_with_sentence_transformers(
    real_embedder: Embedder, reference, kind: str
) -> None:
    texts = [*MULTILINGUAL, LONG_TEXT]
    ours = getattr(real_embedder, f"encode_{kind}")(texts)
    theirs = getattr(reference, f"encode_{kind}")(texts)
    cosine = (ours * theirs).sum(axis=1)
    assert cosine.min() >= 0.9995, cosine


def test_dim_256_parity(real_embedder: Embedder, reference) -> None:
    ours = real_embedder.encode_query(MULTILINGUAL[:4], dim=256)
    theirs = reference.encode_query(MULTILINGUAL[:4], truncate_dim=256, normalize_embeddings=True)
    assert ours.shape == (4, 256)
    assert (ours * theirs).sum(axis=1).min() >= 0.9995


def test_bfloat16_stays_close_to_float32(real_model_dir, real_embedder: Embedder) -> None:
    bf16 = Embedder.load(real_model_dir, precision="bfloat16")
    cosine = (bf16.encode_query(MULTILINGUAL) * real_embedder.encode_query(MULTILINGUAL)).sum(axis=1)
    assert cosine.min() >= 0.99, cosine


def test_translations_are_nearest_neighbours(real_embedder: Embedder) -> None:
    vectors = real_embedder.encode(MULTILINGUAL, task="similarity")
    other = real_embedder.encode(
        ["The stock market fell sharply after the announcement.", "Die Katze schläft auf dem Sofa."],
        task="similarity",
    )
    same_meaning = real_embedder.similarity(vectors, vectors)
    unrelated = real_embedder.similarity(vectors, other)
    assert same_meaning.min() > unrelated.max()


# int8 meets issue 4's bound (>= 0.98 on every text). int4 (embedding table 4-bit, encoder 8-bit,
# issue 19) measured 0.9965 at worst (Greek) and 0.9986 on the 1,900-token text, mean 0.9991,
# with its codebook table; with uniform groups of 16, 0.9955 / 0.9983 / 0.9987; its MLP-4-bit
# predecessor was ~0.99 on sentences and 0.94 on the long text, mean ~0.975.
@pytest.mark.parametrize(
    ("precision", "min_cosine", "mean_cosine"), [("int8", 0.98, 0.995), ("int4", 0.993, 0.998)]
)
def test_quantised_weights_stay_close_to_float32(
    real_model_dir, real_embedder: Embedder, precision: str, min_cosine: float, mean_cosine: float
) -> None:
    quantised = Embedder.load(real_model_dir, precision=precision)
    texts = [*MULTILINGUAL, LONG_TEXT]
    cosine = (quantised.encode_document(texts) * real_embedder.encode_document(texts)).sum(axis=1)
    assert cosine.min() >= min_cosine, cosine
    assert cosine.mean() >= mean_cosine, cosine
