"""A real multi-node Ray cluster on one machine, on 127.0.0.1 only: for tests and benchmarks.

Ray swaps 127.0.0.1 for the machine's outward address when it has one, so the nodes, and every
driver that talks to them, run inside a private network namespace that holds nothing but
loopback. That needs root, ``unshare``, ``nsenter`` and ``ip`` (:func:`unavailable` says what is
missing). Each node is a ``ray start --block`` of one CPU in a process group of its own; everything
is stopped by process id, never by name (``ray stop`` would find other users' Ray processes).

    cluster = LoopbackCluster(Path(tempfile.mkdtemp(prefix="gvray")))
    cluster.start(nodes=2)
    code, out, err = cluster.finish("gemvec", "index", ..., "--ray", "--ray-address", cluster.address)
    cluster.stop()
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from gemvec.errors import GemvecError

OBJECT_STORE_BYTES = 200_000_000  # per node: Ray's floor is 75 MB; its default, 30% of RAM, is a lot


def unavailable() -> str | None:
    """Why a loopback cluster cannot run here, or None."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return "Ray is not installed: pip install 'gemvec[ray]'"
    if os.geteuid() != 0:
        return "a private network namespace needs root"
    missing = [tool for tool in ("unshare", "nsenter", "ip") if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not found: cannot make a loopback-only network namespace"
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        return "unshare -n is not permitted here"
    return None


class LoopbackCluster:
    """Ray nodes of ``cpus`` CPUs each on 127.0.0.1, in a network namespace of their own.

    ``root``: Ray's temp dir (sessions, logs, sockets); keep it short, Unix socket paths are
    limited to 107 characters.
    """

    def __init__(self, root: Path, port: int = 6379, cpus: int = 1) -> None:
        self.root = root
        self.address = f"127.0.0.1:{port}"
        self.port = port
        self.cpus = cpus
        self.holder: subprocess.Popen | None = None
        self.nodes: list[subprocess.Popen] = []

    def command(self, *args: str) -> list[str]:
        """``args`` as a command run inside the namespace, without Ray's token authentication.

        A Ray that started a local instance once (``ray.init()``) leaves ``~/.ray/auth_token``
        behind, and a ``ray start`` that finds it turns token authentication on, which drivers
        that do not read the token are refused by. Nothing outside the namespace reaches these
        nodes, so the nodes and their drivers all run with it off.
        """
        assert self.holder is not None, "start() first"
        return ["nsenter", f"--net=/proc/{self.holder.pid}/ns/net", "env", "RAY_AUTH_MODE=disabled", *args]

    def start(self, nodes: int = 2, timeout: float = 240) -> None:
        """The namespace, then the head, then ``nodes - 1`` more nodes, each waited for."""
        self.holder = subprocess.Popen(["unshare", "-n", "sleep", "infinity"], start_new_session=True)
        time.sleep(0.2)
        subprocess.run(self.command("ip", "link", "set", "lo", "up"), check=True, timeout=30)
        ray = str(Path(sys.executable).with_name("ray"))
        common = [
            "--node-ip-address=127.0.0.1",
            f"--num-cpus={self.cpus}",
            f"--object-store-memory={OBJECT_STORE_BYTES}",
            "--disable-usage-stats",
            "--block",
        ]
        head = [ray, "start", "--head", f"--port={self.port}", f"--temp-dir={self.root}"]
        head.append("--include-dashboard=false")
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        for i in range(nodes):
            args = head if i == 0 else [ray, "start", f"--address={self.address}"]
            with open(self.root / f"node{i}.log", "w") as log:
                self.nodes.append(
                    subprocess.Popen(
                        self.command(*args, *common), stdout=log, stderr=log, env=env, start_new_session=True
                    )
                )
            self.wait_for(i + 1, timeout)

    def wait_for(self, nodes: int, timeout: float) -> None:
        """Until ``nodes`` nodes are alive (the head's GCS may not even listen yet)."""
        script = (
            "import ray, time\n"
            f"ray.init(address='{self.address}', logging_level='ERROR')\n"
            f"deadline = time.time() + {timeout}\n"
            f"while sum(n['Alive'] for n in ray.nodes()) < {nodes}:\n"
            "    assert time.time() < deadline, 'the nodes did not join'\n"
            "    time.sleep(1)\n"
        )
        deadline = time.time() + timeout
        while True:
            done = subprocess.run(self.command(sys.executable, "-c", script), capture_output=True, text=True)
            if done.returncode == 0:
                return
            if time.time() > deadline:
                logs = "\n".join(p.read_text()[-2000:] for p in sorted(self.root.glob("node*.log")))
                raise GemvecError(f"The Ray nodes did not start:\n{done.stderr[-3000:]}\n{logs}")
            time.sleep(2)

    @contextlib.contextmanager
    def driver(self, *args: str, timeout: float = 600, **options) -> Iterator[subprocess.Popen]:
        """A process in the namespace (text mode), killed if it outlives ``timeout`` or the block."""
        process = subprocess.Popen(self.command(*args), text=True, **options)
        watchdog = threading.Timer(timeout, process.kill)
        watchdog.start()
        try:
            yield process
        finally:
            watchdog.cancel()
            if process.poll() is None:
                process.kill()
            process.wait()

    def finish(self, *args: str, timeout: float = 600) -> tuple[int, str, str]:
        """Run a process in the namespace to its end: (exit status, stdout, stderr)."""
        with self.driver(*args, timeout=timeout, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
            out, err = process.communicate()
        return process.returncode, out, err

    def descendants(self, node: int) -> list[int]:
        """Processes started under node ``node``'s ``ray start``: its raylet, agents and workers."""
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                    children.setdefault(ppid, []).append(int(entry.name))
        found, todo = [], [self.nodes[node].pid]
        while todo:
            below = children.get(todo.pop(), [])
            found += below
            todo += below
        return found

    def worker_pid(self, node: int, marker: bytes) -> int | None:
        """The process on node ``node`` whose command line (Ray's process title) holds ``marker``."""
        for pid in self.descendants(node):
            with contextlib.suppress(OSError):
                if marker in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return pid
        return None

    def cpu_times(self) -> dict[int, float]:
        """CPU seconds (user + system) of every process of every node alive now, by process id.

        A process that exits takes its time with it (Ray's workers are not reaped into their
        parent's), so whoever wants a total samples this while the work runs.
        """
        ticks = os.sysconf("SC_CLK_TCK")
        times: dict[int, float] = {}
        for i, node in enumerate(self.nodes):
            for pid in [node.pid, *self.descendants(i)]:
                with contextlib.suppress(OSError, IndexError, ValueError):
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                    times[pid] = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
        return times

    def stop(self) -> None:
        """Stop every node and every process under it, then the namespace."""
        everything = [pid for i in range(len(self.nodes)) for pid in self.descendants(i)]
        for node in self.nodes:
            _signal_group(node.pid, signal.SIGTERM)
        deadline = time.time() + 5  # a graceful stop, if it is quick; nothing here needs one
        for node in self.nodes:
            try:
                node.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                _signal_group(node.pid, signal.SIGKILL)
                node.wait(timeout=15)
        for pid in everything:  # Ray's workers put themselves in process groups of their own
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.holder is not None:
            _signal_group(self.holder.pid, signal.SIGKILL)
            self.holder.wait(timeout=15)
        self.nodes, self.holder = [], None


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
