"""Scale out on Ray: embed a Ray Dataset on a pool of model actors, or build a collection there.

    from gemvec.distributed import connect, embed_dataset, index_on_ray

Ray is an optional extra (``pip install 'gemvec[ray]'``); importing this package does not need
it, the functions do. See README's "Scale out" section and BENCHMARKS.md for figures.
"""

from gemvec.distributed.cluster import LOCAL, ActorPool, connect
from gemvec.distributed.dataset import embed_dataset
from gemvec.distributed.errors import RayJobError
from gemvec.distributed.files import embed_files
from gemvec.distributed.indexing import ClusterEmbedding, index_on_ray

__all__ = [
    "LOCAL",
    "ActorPool",
    "ClusterEmbedding",
    "RayJobError",
    "connect",
    "embed_dataset",
    "embed_files",
    "index_on_ray",
]
