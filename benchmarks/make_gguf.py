"""Convert the checkpoint to llama.cpp GGUF files (f32, Q8_0, Q4_0) for benchmarks/speed.py.

llama.cpp's converter is not part of the installed llama-cpp-python wheel, so this fetches
the source distribution of the installed version from the package index (the only network
it needs), runs its ``convert_hf_to_gguf.py`` with the sentence-transformers Dense layers
included, and quantises Q4_0 through llama-cpp-python's own ``llama_model_quantize``.

    python benchmarks/make_gguf.py --model $EMBEDDINGGEMMA_DIR [--out gguf]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import tempfile
from importlib.metadata import version
from pathlib import Path

from gemvec.errors import require


def fetch_converter(work: Path) -> Path:
    """Download and unpack the llama.cpp tree of the installed llama-cpp-python; return its root."""
    release = version("llama_cpp_python")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
         f"llama-cpp-python=={release}", "-d", str(work)],
        check=True,
    )  # fmt: skip
    archive = next(work.glob("llama_cpp_python-*.tar.gz"))
    prefix = f"llama_cpp_python-{release}/vendor/llama.cpp/"
    wanted = (prefix + "convert_hf_to_gguf.py", prefix + "gguf-py/", prefix + "conversion/")
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(wanted)]
        tar.extractall(work, members=members, filter="data")
    return work / prefix


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=os.environ.get("EMBEDDINGGEMMA_DIR"))
    parser.add_argument("--out", type=Path, default=Path("gguf"))
    args = parser.parse_args()
    if not args.model:
        parser.error("--model (or EMBEDDINGGEMMA_DIR) is required")
    llama_cpp = require("llama_cpp", "llm", "Converting the checkpoint to GGUF")

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gemvec-gguf-") as tmp:
        llama_root = fetch_converter(Path(tmp))
        env = os.environ | {"PYTHONPATH": str(llama_root / "gguf-py")}
        for outtype in ("f32", "q8_0"):
            target = args.out / f"embeddinggemma-{outtype}.gguf"
            subprocess.run(
                [sys.executable, str(llama_root / "convert_hf_to_gguf.py"), args.model,
                 "--sentence-transformers-dense-modules", "--outtype", outtype, "--outfile", str(target)],
                check=True, env=env,
            )  # fmt: skip
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0
    source, target = args.out / "embeddinggemma-f32.gguf", args.out / "embeddinggemma-q4_0.gguf"
    if llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), params) != 0:
        sys.exit(f"llama.cpp could not quantise {source} to Q4_0")
    for path in sorted(args.out.glob("embeddinggemma-*.gguf")):
        print(f"{path}  {path.stat().st_size / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
