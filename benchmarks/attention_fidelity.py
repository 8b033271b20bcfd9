"""What stacked-query attention's bf16 scores cost each precision: cosine to float32.

Embeds the calibration texts of ``int4_plan.py`` (no evaluation set) at float32, then at each
precision with SDPA's flash attention and with gemvec.model.attention's stacked bf16 matmuls
(switched per layer, as ``throughput_interleaved.py``'s ``-flash`` contenders do), and prints
mean, p10 and worst cosine to float32, and the worst text.

    python benchmarks/attention_fidelity.py --model $EMBEDDINGGEMMA_DIR --threads 2
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from int4_plan import calibration_texts

from gemvec import Embedder


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precisions", default="bfloat16,int8-dynamic")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pairs = calibration_texts()
    texts = [text for _, text in pairs]
    reference = Embedder.load(args.model, "float32").encode_document(texts, batch_size=16)
    print(f"{len(texts)} calibration texts, cosine to float32")
    for precision in args.precisions.split(","):
        embedder = Embedder.load(args.model, precision)
        embedder.encode_document(texts[:32], batch_size=16)  # the compiled loops replace plain ops
        for attention in ("flash", "stacked"):
            for layer in embedder.encoder.layers:
                layer.self_attn.rounded_scores = attention == "stacked"
            cosine = (embedder.encode_document(texts, batch_size=16) * reference).sum(axis=1)
            worst = int(cosine.argmin())
            print(
                f"{precision:>13} {attention:>7}: mean {cosine.mean():.6f} "
                f"p10 {np.quantile(cosine, 0.1):.6f} worst {cosine[worst]:.6f} "
                f"(text {worst}, {pairs[worst][0]})",
                flush=True,
            )


if __name__ == "__main__":
    main()
