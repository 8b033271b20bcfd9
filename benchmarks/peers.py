"""The runtimes users pick instead of gemvec, for benchmarks/speed.py: their exports and loaders.

sentence-transformers' own ``backend="onnx"`` and ``backend="openvino"`` need optimum-onnx or
optimum-intel, whose releases cap transformers below what sentence-transformers 6 needs
(optimum-onnx 0.1.0: transformers<4.58; optimum-intel 2.x: gemma3_text export only up to 5.0):
so they live in an environment of their own, made once, and speed.py runs those contenders with
its interpreter (``--peers-python``):

    python -m venv out/peers-venv
    out/peers-venv/bin/pip install torch==2.13.0 -e ".[peers]"
    out/peers-venv/bin/python benchmarks/peers.py export --model $EMBEDDINGGEMMA_DIR  # -> out/peers

The exports follow sentence-transformers' documented path: ``backend="onnx"`` exports the
transformer, ``export_dynamic_quantized_onnx_model`` makes its int8 twin (the config for this
CPU: avx512_vnni, avx512, avx2 or arm64), ``backend="openvino"`` exports the OpenVINO IR and
``export_static_quantized_openvino_model`` calibrates its int8 twin (300 Banking77 *training*
texts, not an evaluation set; sentence-transformers' default, GLUE SST-2, is on the unreachable
hub). One fix: optimum-intel's gemma3_text export adds a ``position_ids`` input that its
OVModelForFeatureExtraction never feeds, which leaves the embeddings at cosine 0.60-0.76 to
float32; the export drops that input for feature extraction (as optimum-intel PR #1799 does), and
the model makes the positions itself, as the ONNX export does. The export took 28 minutes on 2
busy cores, 20 of them OpenVINO's two calibration passes.

Seen with sentence-transformers 5.7.0, transformers 4.57.6, optimum-onnx 0.1.0, optimum-intel
1.27.0, onnxruntime 1.32.0, openvino 2026.4.1: ``export_optimized_onnx_model`` (O1-O4) refuses
gemma3_text (NotImplementedError: ORTOptimizer has no gemma3_text), and OpenVINO's CPU plugin dies
with SIGFPE running bf16 on one thread (st-openvino-bfloat16 at ``--threads 1``; 2 threads run).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8")
PACKAGES = (
    "torch", "transformers", "sentence-transformers", "onnxruntime", "optimum-onnx", "openvino",
    "optimum-intel", "nncf", "llama_cpp_python",
)  # fmt: skip
ONNX_DIR, OPENVINO_DIR = "st-onnx", "st-openvino"
OPENVINO_INT8 = "openvino/openvino_model_qint8_quantized.xml"
# OpenVINO's precision hint per contender; int8 keeps OpenVINO's default for the layers it left
# unquantised (bf16 on CPUs with AVX512-BF16 or AMX, as a user would get).
OPENVINO_HINTS = {"float32": "f32", "bfloat16": "bf16", "int8": None}
Encode = Callable[[str, list[str], int], np.ndarray]


def cpu_info() -> dict:
    """The CPU's model name and the ISA flags that decide matmul speed (Linux /proc/cpuinfo)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    return {"model": model, "cores": os.cpu_count(), "flags": [f for f in ISA_FLAGS if f in flags]}


def versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        with contextlib.suppress(PackageNotFoundError):
            found[name] = version(name)
    return found


def onnx_int8_config() -> str:
    """sentence-transformers' dynamic int8 preset for this CPU."""
    if platform.machine().lower() in ("arm64", "aarch64"):
        return "arm64"
    flags = set(cpu_info()["flags"])
    return "avx512_vnni" if "avx512_vnni" in flags else "avx512" if "avx512f" in flags else "avx2"


def st_backend_encoder(backend: str, precision: str, folder: Path, threads: int) -> tuple[Encode, dict]:
    """sentence-transformers on ONNX Runtime or OpenVINO, on `threads` threads, from an export folder."""
    from sentence_transformers import SentenceTransformer

    if not (folder / "modules.json").is_file():
        sys.exit(f"{folder} is missing: run `python benchmarks/peers.py export` in the peers environment")
    info: dict = {"threads": threads}
    if backend == "onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        file_name = "onnx/model.onnx"
        if precision == "int8":
            quantised = sorted((folder / "onnx").glob("model_qint8_*.onnx"))
            file_name = quantised[0].relative_to(folder).as_posix()
        elif precision != "float32":
            sys.exit(f"st-onnx-{precision}: only float32 and int8 are exported")
        kwargs = {"file_name": file_name, "session_options": options, "provider": "CPUExecutionProvider"}
    elif backend == "openvino":
        if precision not in OPENVINO_HINTS:
            sys.exit(f"st-openvino-{precision}: use one of {', '.join(OPENVINO_HINTS)}")
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": str(threads)}
        if OPENVINO_HINTS[precision]:
            config["INFERENCE_PRECISION_HINT"] = OPENVINO_HINTS[precision]
        file_name = OPENVINO_INT8 if precision == "int8" else "openvino/openvino_model.xml"
        kwargs = {"file_name": file_name, "ov_config": config}
    else:
        sys.exit(f"unknown backend {backend}")
    info["file"] = file_name
    st = SentenceTransformer(str(folder), backend=backend, device="cpu", model_kwargs=kwargs)
    if backend == "openvino":
        ov_model = st[0].auto_model
        ov_model.compile()
        hint = ov_model.request.get_property("INFERENCE_PRECISION_HINT")
        info["inference_precision"] = hint.to_string() if hasattr(hint, "to_string") else str(hint)

    def encode(kind: str, batch: list[str], batch_size: int) -> np.ndarray:
        return st.encode_document(batch, batch_size=batch_size, convert_to_numpy=True)

    return encode, info


def gguf_encoder(path: Path, threads: int, texts: dict[str, list[str]], prompt: str) -> Encode:
    """llama.cpp through llama-cpp-python, with a context sized for each workload in turn.

    llama.cpp packs every text of a call into one micro-batch and attends across all of it
    under a mask, so its micro-batch must hold the longest text but costs more the larger it
    is: each workload gets the smallest power of two (at least 256) that fits its texts, the
    fastest setting found on medium texts (Q8_0: 456 tokens/s at 256, 190 at 2,048). One
    context lives at a time, so peak RSS is that of a single llama.cpp model.
    """
    try:
        import llama_cpp
    except ImportError:
        sys.exit("The llama.cpp contenders need llama-cpp-python: pip install 'gemvec[llm]'")

    if not path.is_file():
        sys.exit(f"{path} is missing: build it with `python benchmarks/make_gguf.py --model MODEL`")
    vocab = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
    sizes = {}
    for kind, batch in texts.items():
        longest = 2 + max(len(vocab.tokenize((prompt + text).encode())) for text in batch)
        sizes[kind] = max(256, 1 << (longest - 1).bit_length())
    vocab.close()
    loaded: list[tuple[int, llama_cpp.Llama]] = []  # (micro-batch size, context): one at a time

    def context(kind: str) -> llama_cpp.Llama:
        size = sizes[kind]
        if not loaded or loaded[0][0] != size:
            if loaded:
                loaded.pop()[1].close()
            llm = llama_cpp.Llama(
                str(path),
                embedding=True,
                pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN,
                n_ctx=size,
                n_batch=size,
                n_ubatch=size,
                n_threads=threads,
                n_threads_batch=threads,
                verbose=False,
            )
            loaded.append((size, llm))
        return loaded[0][1]

    def encode(kind: str, batch: list[str], batch_size: int) -> np.ndarray:
        llm = context(kind)
        vectors = []
        for i in range(0, len(batch), batch_size):
            chunk = [prompt + text for text in batch[i : i + batch_size]]
            vectors.extend(llm.embed(chunk, normalize=True))
        return np.asarray(vectors, dtype=np.float32)

    return encode


def drop_unfed_position_ids() -> None:
    """optimum-intel's Gemma configs add a position_ids input (for openvino-genai's decoding), but
    OVModelForFeatureExtraction feeds only input_ids and attention_mask; without positions the
    embeddings fall to cosine 0.60-0.76. Feature extraction exports without it, as in PR #1799."""
    from optimum.exporters.openvino import model_configs

    config = model_configs.Gemma3TextOpenVINOConfig
    inherited = config.inputs

    def inputs(self) -> dict:
        names = inherited.fget(self)
        if self.task == "feature-extraction":
            names.pop("position_ids", None)
        return names

    config.inputs = property(inputs)


def calibration_folder(out: Path, count: int = 300) -> Path:
    """Banking77's training texts (not an evaluation set) as a local `datasets` folder."""
    shared = Path(os.environ.get("GEMVEC_SHARED") or Path(__file__).resolve().parents[2] / "shared")
    rows = (shared / "data/banking77/train.jsonl").read_text(encoding="utf-8").splitlines()[:count]
    folder = out / "calibration"
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"text": json.loads(row)["text"]}) for row in rows]
    (folder / "train.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def export(model: str, out: Path, which: list[str]) -> None:
    from sentence_transformers import SentenceTransformer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if "onnx" in which:
        from sentence_transformers import export_dynamic_quantized_onnx_model

        folder = out / ONNX_DIR
        st = SentenceTransformer(model, backend="onnx", device="cpu")
        st.save_pretrained(str(folder))
        export_dynamic_quantized_onnx_model(st, onnx_int8_config(), str(folder))
    if "openvino" in which:
        from sentence_transformers import export_static_quantized_openvino_model

        drop_unfed_position_ids()
        folder = out / OPENVINO_DIR
        st = SentenceTransformer(model, backend="openvino", device="cpu")
        st.save_pretrained(str(folder))
        calibration = calibration_folder(out)
        export_static_quantized_openvino_model(
            st, None, str(folder), dataset_name=str(calibration), dataset_config_name="default",
            dataset_split="train", column_name="text",
        )  # fmt: skip
    (out / "versions.json").write_text(json.dumps(versions(), indent=2))
    for path in sorted([*out.glob("*/onnx/*.onnx"), *out.glob("*/openvino/*.bin")]):
        print(f"{path}  {path.stat().st_size / 2**20:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("export", help="export the ONNX and OpenVINO models (float32 and int8)")
    build.add_argument("--model", default=os.environ.get("EMBEDDINGGEMMA_DIR"))
    build.add_argument("--out", type=Path, default=Path("out/peers"))
    build.add_argument("--only", default="onnx,openvino", help="comma-separated: onnx, openvino")
    commands.add_parser("cpu", help="print the CPU model and ISA flags")
    args = parser.parse_args()
    if args.command == "cpu":
        print(json.dumps(cpu_info()))
        return
    if not args.model:
        parser.error("--model (or EMBEDDINGGEMMA_DIR) is required")
    export(args.model, args.out, args.only.split(","))


if __name__ == "__main__":
    main()
