"""Raw CPU matmul kernels for an EmbeddingGemma-sized layer.

float32, bfloat16, int8/int4 weight-only and fbgemm dynamic int8, with relative error.

python benchmarks/matmul_kernels.py
"""

import time

import torch

torch.manual_seed(0)
M, K, N = 2048, 768, 2304
x = torch.randn(M, K)
w = torch.randn(N, K) * 0.02


def t(f, reps=5):
    f()
    s = time.perf_counter()
    for _ in range(reps):
        f()
    return (time.perf_counter() - s) / reps * 1000


ref = x @ w.T
print("fp32 ms", t(lambda: torch.nn.functional.linear(x, w)))
xb = x.bfloat16()
wb = w.bfloat16()
print("bf16 ms", t(lambda: torch.nn.functional.linear(xb, wb)))
# int8 weight-only
scale = w.abs().amax(1) / 127
wq = torch.round(w / scale[:, None]).to(torch.int8)
for xx, name in [(x, "f32"), (xb, "bf16")]:
    out = torch._weight_int8pack_mm(xx, wq, scale.to(xx.dtype))
    print(
        "int8pack",
        name,
        t(lambda xx=xx: torch._weight_int8pack_mm(xx, wq, scale.to(xx.dtype))),
        "err",
        ((out.float() - ref).norm() / ref.norm()).item(),
    )
# int4 groupwise
gs = 64
wg = w.view(N, K // gs, gs)
mn = wg.amin(-1, keepdim=True)
mx = wg.amax(-1, keepdim=True)
sc = (mx - mn).clamp(min=1e-8) / 15
zp = mn
q = torch.round((wg - mn) / sc).clamp(0, 15).to(torch.int32).view(N, K)
# scales_and_zeros: (K//gs, N, 2) ; dequant = (q-8)*scale + zero where zero = mn + 8*scale
szs = torch.stack([sc.squeeze(-1).t(), (mn + 8 * sc).squeeze(-1).t()], -1).contiguous()
packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1)
for xx, name in [(x, "f32"), (xb, "bf16")]:
    try:
        out = torch.ops.aten._weight_int4pack_mm_for_cpu(xx, packed, gs, szs.to(xx.dtype))
        print(
            "int4pack",
            name,
            t(lambda xx=xx: torch.ops.aten._weight_int4pack_mm_for_cpu(xx, packed, gs, szs.to(xx.dtype))),
            "err",
            ((out.float() - ref).norm() / ref.norm()).item(),
        )
    except Exception as ex:
        print("int4", name, ex)
# dynamic quant fbgemm
lin = torch.nn.Linear(K, N, bias=False)
lin.weight.data = w
qlin = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lin), {torch.nn.Linear}, dtype=torch.qint8)
out = qlin(x)
print("dyn int8 ms", t(lambda: qlin(x)), "err", ((out - ref).norm() / ref.norm()).item())
