"""gemvec vs sentence-transformers on the real checkpoint: cosine per text, and the model-card example.

python benchmarks/parity.py --model $EMBEDDINGGEMMA_DIR
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_real_model import LONG_TEXT, MULTILINGUAL  # the texts the tests use

CARD_QUERY = "Which planet is known as the Red Planet?"
CARD_DOCUMENTS = [
    "Venus is often called Earth's twin because of its similar size and proximity.",
    "Mars, known for its reddish appearance, is often referred to as the Red Planet.",
    "Jupiter, the largest planet in our solar system, has a prominent red spot.",
    "Saturn, famous for its rings, is sometimes mistaken for the Red Planet.",
]
CARD_PUBLISHED = [0.3011, 0.6359, 0.4930, 0.4889]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=os.environ.get("EMBEDDINGGEMMA_DIR"))
    args = parser.parse_args()
    from sentence_transformers import SentenceTransformer

    from gemvec import Embedder

    ours = Embedder.load(args.model, "float32")
    reference = SentenceTransformer(args.model, device="cpu")
    card = ours.similarity(ours.encode_query(CARD_QUERY), ours.encode_document(CARD_DOCUMENTS))[0]
    print("model card similarities:", " ".join(f"{x:.4f}" for x in card), "published:", CARD_PUBLISHED)
    print(f"max |diff| vs published: {np.abs(card - CARD_PUBLISHED).max():.4f}")
    texts = [*MULTILINGUAL, LONG_TEXT]
    tokens = ours.count_tokens(texts)
    for kind in ("query", "document"):
        a = getattr(ours, f"encode_{kind}")(texts)
        b = getattr(reference, f"encode_{kind}")(texts)
        cosine = (a * b).sum(axis=1)
        print(
            f"{kind}: min cosine {cosine.min():.6f}, max |diff| {np.abs(a - b).max():.2e} "
            f"over {len(texts)} texts ({min(tokens)}-{max(tokens)} tokens)"
        )
    a = ours.encode_query(texts, dim=256)
    b = reference.encode_query(texts, truncate_dim=256, normalize_embeddings=True)
    print(f"dim 256 query: min cosine {(a * b).sum(axis=1).min():.6f}")


if __name__ == "__main__":
    main()
