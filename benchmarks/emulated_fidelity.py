"""int8-dynamic against float32 on a CPU this machine is not: worst cosine and load time.

The speed of int8-dynamic under an instruction-set cap comes from ``throughput_interleaved.py
--emulate-isa``; this is the other half of choosing it as the default there. Under the cap its
kernel and activation dtype are that CPU's (float32 activations without native bf16, unsigned
codes on VNNI); it embeds calibration texts of ``int4_plan.py`` (no evaluation set) at float32 and
int8-dynamic and prints the cosines, and the seconds each load took.

    python benchmarks/emulated_fidelity.py --model $EMBEDDINGGEMMA_DIR --emulate-isa avx512-vnni
"""

from __future__ import annotations

import argparse
import time

import isa_cap

EMULATED_ISA = isa_cap.cap_from_argv()  # before torch loads oneDNN

import torch  # noqa: E402
from int4_plan import calibration_texts  # noqa: E402

from gemvec import Embedder  # noqa: E402


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--every", type=int, default=8, help="use every Nth calibration text")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        isa_cap.OPTION, choices=list(isa_cap.PROFILES), help="run as on an older CPU (isa_cap.py)"
    )
    args = parser.parse_args()
    if EMULATED_ISA:
        print(f"emulating {EMULATED_ISA}:", " ".join(sorted(isa_cap.apply_after_import(EMULATED_ISA))))
    torch.set_num_threads(args.threads)
    texts = [text for _, text in calibration_texts()[:: args.every]]
    vectors, load_s = {}, {}
    for precision in ("float32", "int8-dynamic"):
        started = time.perf_counter()
        embedder = Embedder.load(args.model, precision)
        load_s[precision] = time.perf_counter() - started
        vectors[precision] = embedder.encode_document(texts, batch_size=16)
    cosine = (vectors["float32"] * vectors["int8-dynamic"]).sum(axis=1)
    print(
        f"{len(texts)} texts, {args.threads} thread(s): int8-dynamic vs float32 cosine "
        f"mean {cosine.mean():.5f} worst {cosine.min():.5f}; load s float32 "
        f"{load_s['float32']:.2f}, int8-dynamic {load_s['int8-dynamic']:.2f}"
    )


if __name__ == "__main__":
    main()
