"""Choose int4's mixed 4/8-bit plan: cosine to float32 of candidate plans on a calibration set.

The calibration set is no evaluation set (none of STS-B, SIB-200/FLORES, Banking77, XQuAD or
SciFact): software message catalogues, the gettext ``.mo`` files under /usr/share/locale
(interface strings translated into 30 languages, Amharic and Yoruba included), joined into
passages of 400+ characters, 8 per language; plus the longer paragraphs of this repository's
README.md and CHANGELOG.md as of commit a5a3c12 (English prose and code, up to 850 tokens).
Each plan's vectors are compared with float32's; the plan's bytes are those of its tensors.

    python benchmarks/int4_plan.py --model $EMBEDDINGGEMMA_DIR            # the plans of BENCHMARKS.md
    python benchmarks/int4_plan.py --model $EMBEDDINGGEMMA_DIR --every 4  # a quarter of the texts
"""

from __future__ import annotations

import argparse
import gettext
import random
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from gemvec import Embedder
from gemvec.model import quantize

ROOT = Path(__file__).resolve().parents[1]
LANGUAGES = "am yo sw ar bn de el es fi fr hi id it ja ko nl pl pt ro ru te th tr ur vi zh_CN uk he fa cs"
DOCS_COMMIT = "a5a3c12"
ALL = range(24)
# name -> {projection: layers whose projection is 4-bit}; the embedding table is 4-bit in each.
PLANS: dict[str, dict[str, range]] = {
    "all projections 8-bit": {},
    "MLP 4-bit in layers 0-5": {"gate_up": range(6), "down": range(6)},
    "MLP 4-bit in layers 0-7": {"gate_up": range(8), "down": range(8)},
    "MLP 4-bit in layers 0-11": {"gate_up": range(12), "down": range(12)},
    "gate_up 4-bit in every layer": {"gate_up": ALL},
    "MLP 4-bit in every layer (the old plan)": {"gate_up": ALL, "down": ALL},
}


def catalogue_messages(language: str) -> list[str]:
    """Translated strings of every gettext catalogue of ``language``, format codes removed."""
    out = []
    for path in sorted(Path("/usr/share/locale", language, "LC_MESSAGES").glob("*.mo")):
        try:
            with path.open("rb") as f:
                catalogue = gettext.GNUTranslations(f)._catalog
        except (OSError, UnicodeDecodeError):
            continue
        for key, text in sorted(catalogue.items(), key=lambda item: str(item[0])):
            if not key or not isinstance(text, str):
                continue
            text = re.sub(r"\s+", " ", re.sub(r"%[-\w.]*[sdifu]|_|\{[^}]*\}", "", text)).strip()
            if len(text) >= 4 and text != (key if isinstance(key, str) else key[0]):
                out.append(text)
    return out


def calibration_texts(per_language: int = 8, seed: int = 0) -> list[tuple[str, str]]:
    """(language, passage) pairs: catalogue passages, then the repository's long paragraphs."""
    rng = random.Random(seed)
    out = []
    for language in LANGUAGES.split():
        messages = catalogue_messages(language)
        rng.shuffle(messages)
        passage: list[str] = []
        for message in messages:
            passage.append(message)
            if sum(map(len, passage)) >= 400:
                out.append((language, " ".join(passage)))
                passage = []
                if sum(lang == language for lang, _ in out) == per_language:
                    break
    paragraphs = []
    for doc in ("README.md", "CHANGELOG.md"):
        text = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{DOCS_COMMIT}:{doc}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        paragraphs += [p.strip() for p in text.split("\n\n") if len(p.strip()) > 300 and "|" not in p]
    rng.shuffle(paragraphs)
    return out + [("en", p) for p in paragraphs[:40]]


def plan_megabytes(embedder: Embedder) -> float:
    """Bytes of the encoder's projections and embedding table as loaded (codes + scales)."""
    tensors = [t for layer in embedder.encoder.layers for t in layer.buffers()]
    table = embedder.encoder.embed_tokens.quantized()
    tensors += [table.codes, table.scales]
    return sum(t.numel() * t.element_size() for t in tensors) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True)
    parser.add_argument("--every", type=int, default=1, help="use every Nth calibration text")
    parser.add_argument("--plans", nargs="+", choices=list(PLANS), default=list(PLANS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    pairs = calibration_texts()[:: args.every]
    texts, languages = [t for _, t in pairs], [lang for lang, _ in pairs]
    print(f"{len(texts)} calibration texts in {len(set(languages))} languages", flush=True)
    reference = Embedder.load(args.model, "float32").encode_document(texts, batch_size=16)
    for name in args.plans:
        quantize.INT4_PLAN = PLANS[name]
        started = time.perf_counter()
        embedder = Embedder.load(args.model, "int4")
        cosine = (embedder.encode_document(texts, batch_size=16) * reference).sum(axis=1)
        worst = min(zip(cosine, languages, strict=True))
        print(
            f"{name:40s} {plan_megabytes(embedder):6.1f} MB  mean {cosine.mean():.4f}  "
            f"p10 {np.quantile(cosine, 0.1):.4f}  worst {worst[0]:.4f} ({worst[1]})  "
            f"[{time.perf_counter() - started:.0f} s]",
            flush=True,
        )


if __name__ == "__main__":
    main()
