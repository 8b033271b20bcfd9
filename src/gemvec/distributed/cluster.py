"""Connecting to Ray and sizing the pool of embedding actors.

Ray is an optional extra (``pip install 'gemvec[ray]'``); :func:`ray_module` imports it or says
how to install it. Nothing here loads the model: each actor loads its own copy, once.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from gemvec.errors import InputError, require

LOCAL = "local"  # the address that starts a Ray instance inside this process instead of joining one


def ray_module() -> ModuleType:
    """``ray``, or MissingExtraError naming the extra to install."""
    require("pyarrow", "ray", "Running on Ray")
    return require("ray", "ray", "Running on Ray")


def connect(address: str | None = None) -> None:
    """Join the Ray cluster at ``address`` (host:port, ``ray://...`` or ``auto``), once per process.

    None means ``$RAY_ADDRESS``, else ``auto`` (a cluster started on this machine with ``ray
    start``); ``local`` starts a new Ray instance on this machine, for this process alone.
    """
    ray = ray_module()
    if ray.is_initialized():
        return
    if address is None:
        address = os.environ.get("RAY_ADDRESS") or "auto"
    try:
        _check_reachable(address)
        ray.init(address=address, logging_level=logging.WARNING)  # Ray reads "local" as a new instance
    except ConnectionError as exc:
        raise InputError(
            f"Cannot reach a Ray cluster at {address}: {str(exc).rstrip('.')}. Start one with `ray start "
            f"--head`, pass its address (--ray-address HOST:PORT), or --ray-address {LOCAL} for this machine."
        ) from None


def _check_reachable(address: str, timeout: float = 10) -> None:
    """Fail fast on a HOST:PORT nothing listens at: Ray itself retries for many minutes."""
    host, _, port = address.rpartition(":")
    if "://" in address or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:  # refused, unreachable, timed out
        raise ConnectionError(str(exc)) from None


@dataclass(frozen=True)
class ActorPool:
    """How many embedding actors to run, and what each reserves.

    ``actors`` None fills the cluster: one per ``gpus`` when it has GPUs, else one per ``cpus``.
    ``gpus`` None means 1 per actor when the cluster has GPUs, else none.
    """

    actors: int | None = None
    cpus: float = 1.0
    gpus: float | None = None

    def resolve(self, resources: dict[str, float]) -> tuple[int, float, float]:
        """(actors, CPUs per actor, GPUs per actor) for a cluster with ``resources``."""
        if self.cpus <= 0:
            raise InputError(f"Each actor needs a positive number of CPUs, got {self.cpus}.")
        if self.gpus is not None and self.gpus < 0:
            raise InputError(f"GPUs per actor cannot be negative, got {self.gpus}.")
        total_gpus = resources.get("GPU", 0.0)
        gpus = self.gpus if self.gpus is not None else (1.0 if total_gpus >= 1 else 0.0)
        if self.actors is not None:
            if self.actors < 1:
                raise InputError(f"The pool needs at least one actor, got {self.actors}.")
            return self.actors, self.cpus, gpus
        by_cpu = int(resources.get("CPU", 0.0) // self.cpus)
        fits = min(by_cpu, int(total_gpus // gpus)) if gpus else by_cpu
        return max(1, fits), self.cpus, gpus


def cluster_resources() -> dict[str, float]:
    """What the connected cluster has (CPU, GPU, memory, ...).

    Not connected yet: Ray's own default, as Ray Data would do ($RAY_ADDRESS, else a cluster
    running on this machine, else a new local instance).
    """
    ray = ray_module()
    if not ray.is_initialized():
        ray.init(logging_level=logging.WARNING)
    return dict(ray.cluster_resources())


def portable_model(model: str | os.PathLike[str] | None) -> str | None:
    """The model as every node can name it: a folder as an absolute path, a hub id as it is.

    Each node loads the model itself, so a folder must exist at that path on every node.
    """
    if model is None:
        return None
    path = Path(model).expanduser()
    return str(path.resolve()) if path.exists() else str(model)
