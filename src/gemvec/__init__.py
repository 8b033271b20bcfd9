"""gemvec: local, fast, multilingual text embeddings with EmbeddingGemma-300M."""

from gemvec.embedder import Embedder
from gemvec.errors import GemvecError
from gemvec.precision import Precision
from gemvec.prompts import Task

__version__ = "0.1.0"
__all__ = ["Embedder", "GemvecError", "Precision", "Task", "__version__"]
