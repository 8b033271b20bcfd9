"""Attention on padded grids: SDPA's flash attention against stacked-query batched matmuls.

gemvec.model.attention stacks EmbeddingGemma's 3 query heads over its single key/value head and
runs attention as two bf16 batched matmuls. For each grid (texts x padded length; real lengths
drawn from the top quarter, as the length groups leave them) both run in turn, round after
round, in one process; best round of each, the ratio, and each one's error against float64
(max and root mean square over the real rows). q and k rows have unit RMS, as after the model's
q/k norms; the head dim is 256 and the scale 1/16, as in EmbeddingGemma.

    python benchmarks/attention_kernels.py --threads 1 \\
        --json benchmarks/results/attention_kernels_1thread.json
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from gemvec.model.attention import flash_attention, stacked_attention
from gemvec.precision import cpu_flags

HEADS, HEAD_DIM = 3, 256
SCALE = HEAD_DIM**-0.5
GRIDS = ((1, 12), (1, 40), (1, 95), (4, 95), (32, 20), (11, 95), (32, 95), (8, 500), (1, 2048))


def make_grid(batch: int, length: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    qkv = torch.randn(batch, length, (HEADS + 2) * HEAD_DIM, generator=generator)
    q, k, v = qkv.split([HEADS * HEAD_DIM, HEAD_DIM, HEAD_DIM], dim=-1)
    q = torch.nn.functional.rms_norm(q.reshape(batch, length, HEADS, HEAD_DIM), (HEAD_DIM,)).flatten(2)
    k = torch.nn.functional.rms_norm(k, (HEAD_DIM,))
    lengths = torch.randint(max(1, length * 3 // 4), length + 1, (batch,), generator=generator)
    lengths[0] = length
    mask = (torch.arange(length)[None] < lengths[:, None])[:, None, None, :]
    padded = bool((lengths < length).any())
    return [t.to(torch.bfloat16) for t in (q, k, v)], (mask if padded else None), lengths


def exact(q, k, v, mask) -> torch.Tensor:
    batch, length = q.shape[:2]
    q64 = q.double().view(batch, length * HEADS, HEAD_DIM)
    scores = q64 @ k.double().transpose(1, 2) * SCALE
    if mask is not None:
        scores = scores.masked_fill(~mask.view(batch, 1, length), float("-inf"))
    return (scores.softmax(-1) @ v.double()).view(batch, length, -1)


def errors(out: torch.Tensor, reference: torch.Tensor, lengths: torch.Tensor) -> tuple[float, float]:
    diff = torch.cat([(out.double() - reference)[i, : int(n)] for i, n in enumerate(lengths)]).abs()
    return diff.max().item(), diff.pow(2).mean().sqrt().item()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    flags = " ".join(sorted(f for f in cpu_flags() if f.startswith(("avx", "amx"))))
    print(f"cpu flags: {flags}; {args.threads} thread(s), bf16, best of {args.rounds}")
    kernels = {
        "flash": lambda q, k, v, mask: flash_attention(q, k, v, mask, SCALE, kv_heads=1),
        "stacked": lambda q, k, v, mask: stacked_attention(q, k, v, mask, SCALE),
    }
    print(f"{'grid':>9} {'flash ms':>9} {'stacked ms':>10} {'x flash':>7}   max/rms error flash, stacked")
    rows = []
    for batch, length in GRIDS:
        (q, k, v), mask, lengths = make_grid(batch, length)
        reference = exact(q, k, v, mask)
        calls = max(1, int(3e8 / (batch * length * length * HEADS * HEAD_DIM * 4)))
        best = dict.fromkeys(kernels, float("inf"))
        for _ in range(args.rounds):
            for name, kernel in kernels.items():
                start = time.perf_counter()
                for _ in range(calls):
                    kernel(q, k, v, mask)
                best[name] = min(best[name], (time.perf_counter() - start) / calls)
        error = {name: errors(kernel(q, k, v, mask), reference, lengths) for name, kernel in kernels.items()}
        row = {"batch": batch, "length": length} | {f"{n}_ms": best[n] * 1e3 for n in kernels}
        row |= {f"{n}_error_max": error[n][0] for n in kernels} | {
            f"{n}_error_rms": error[n][1] for n in kernels
        }
        rows.append(row)
        print(
            f"{batch:>3}x{length:<5} {row['flash_ms']:>9.3f} {row['stacked_ms']:>10.3f} "
            f"{best['flash'] / best['stacked']:>7.2f}   {error['flash'][0]:.1e}/{error['flash'][1]:.1e}, "
            f"{error['stacked'][0]:.1e}/{error['stacked'][1]:.1e}"
        )
    if args.json_path:
        with open(args.json_path, "w") as out:
            json.dump({"cpu_flags": flags, "threads": args.threads, "grids": rows}, out, indent=1)


if __name__ == "__main__":
    main()
