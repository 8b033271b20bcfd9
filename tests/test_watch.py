"""Live sync: `gemvec watch` (a real process, real files, the OS's file events) keeps a collection in step."""

from __future__ import annotations

import json
import logging
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from typer.testing import CliRunner

pytest.importorskip("watchfiles")

from gemvec.cli import app
from gemvec.store import Collection
from gemvec.store.lock import WriteLock
from gemvec.store.watch import MAX_PATHS, FolderWatcher, WatchRoot, watch_roots

T = TypeVar("T")
WAIT_S = 30


def eventually(condition: Callable[[], T], what: str, timeout: float = WAIT_S) -> T:
    """Poll ``condition`` until it is truthy (the watcher applies batches in the background)."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {what}")
        time.sleep(0.05)
    return value


def indexed(coll: Collection, under: Path) -> set[str]:
    """The collection's documents, as paths relative to ``under``."""
    return {Path(doc.path).relative_to(under).as_posix() for doc in coll.documents() if doc.path}


def found(coll: Collection, words: str, under: Path) -> list[str]:
    return [Path(h.path).relative_to(under).as_posix() for h in coll.search(words, k=5, mode="keyword")]


class Gemvec:
    """`python -m gemvec ARGS...`, its stderr read line by line in the background."""

    def __init__(self, *args: str) -> None:
        cmd = [sys.executable, "-m", "gemvec", *args]
        # Ctrl-C as a terminal delivers it, even when pytest runs as a background job (SIGINT ignored).
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line)

    def wait_for(self, pattern: str, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            self.log.append(line)
            if re.search(pattern, line):
                return line
        raise AssertionError(f"no {pattern!r} from gemvec; stderr:\n{''.join(self.log)}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(60)


@pytest.fixture
def notes(tmp_path: Path) -> Path:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.md").write_text("alpha apples")
    return folder


@pytest.fixture
def coll(tiny_embedder, tmp_path: Path):
    with Collection.create(tmp_path / "coll", embedder=tiny_embedder) as coll:
        yield coll


def test_watch_follows_creates_edits_renames_moves_and_deletes(notes, coll, tmp_path):
    watcher = Gemvec("watch", str(notes), "-c", str(coll.folder), "--debounce-ms", "300", "--json")
    try:
        watcher.wait_for("watching")
        assert indexed(coll, notes) == {"a.md"}  # caught up before it says it is watching

        (notes / "b.md").write_text("bravo bananas")
        eventually(lambda: indexed(coll, notes) == {"a.md", "b.md"}, "a new file is indexed")
        assert found(coll, "bananas", notes) == ["b.md"]

        (notes / "a.md").write_text("alpha zucchini")
        eventually(lambda: found(coll, "zucchini", notes) == ["a.md"], "an edited file is re-embedded")
        assert found(coll, "apples", notes) == []

        (notes / "b.md").rename(notes / "c.md")
        eventually(lambda: indexed(coll, notes) == {"a.md", "c.md"}, "a renamed file follows its name")
        assert found(coll, "bananas", notes) == ["c.md"]

        (notes / "a.md").unlink()
        (notes / "photo.png").write_bytes(b"\x89PNG\r\n")  # not a supported type
        (notes / ".drafts").mkdir()
        (notes / ".drafts" / "secret.md").write_text("hidden folders are skipped")
        incoming = tmp_path / "incoming"
        (incoming / "deep").mkdir(parents=True)
        (incoming / "deep" / "d.md").write_text("delta dates")
        incoming.rename(notes / "incoming")  # a folder moved in: one event for the folder alone
        eventually(
            lambda: indexed(coll, notes) == {"c.md", "incoming/deep/d.md"}, "deletions and a moved-in folder"
        )
        shutil.move(notes / "incoming", tmp_path / "gone")  # and moved out again
        eventually(lambda: indexed(coll, notes) == {"c.md"}, "a folder moved away")
        assert coll.count() == (1, 1)

        watcher.proc.send_signal(signal.SIGINT)
        assert watcher.proc.wait(60) == 0
        watcher.wait_for("stopped watching")
    finally:
        watcher.stop()
    assert watcher.proc.stdout is not None
    reports = [json.loads(line) for line in watcher.proc.stdout]
    totals = {key: sum(r[key] for r in reports) for key in ("added", "updated", "removed")}
    assert totals == {"added": 4, "updated": 1, "removed": 3}, reports
    with type(coll).open(coll.folder) as fresh:  # the watcher wrote through its own connection
        assert fresh.info()["roots"] == [str(notes.resolve())]  # not every file it applied


def test_kill_9_loses_nothing_that_sync_restores(notes, coll, tiny_model_dir):
    for i in range(6):
        (notes / f"n{i}.md").write_text(f"note {i} about topic{i}")
    watcher = Gemvec("watch", str(notes), "-c", str(coll.folder))
    try:
        watcher.wait_for("watching")
        (notes / "new.md").write_text("kiwi kumquats")
        (notes / "n0.md").write_text("edited lemons")
        (notes / "n1.md").unlink()
        watcher.proc.kill()  # the batch above is being gathered or applied: never finished
        assert watcher.proc.wait(60) == -signal.SIGKILL
    finally:
        watcher.stop()
    result = CliRunner().invoke(app, ["sync", "-c", str(coll.folder)])
    assert result.exit_code == 0, result.output
    expected = {p.name for p in notes.iterdir()}
    assert indexed(coll, notes) == expected
    assert found(coll, "kumquats", notes) == ["new.md"]
    assert found(coll, "lemons", notes) == ["n0.md"]
    assert coll.count()[0] == len(expected) == 7


def test_locked_batches_are_retried(notes, coll, caplog):
    watcher = FolderWatcher(coll, watch_roots(coll, [notes]), debounce_ms=200)
    ready = threading.Event()
    watcher.on_ready = ready.set
    watcher.start()
    other_writer = WriteLock(coll.folder)
    try:
        assert ready.wait(60)
        assert other_writer.acquire()
        with caplog.at_level(logging.WARNING, logger="gemvec.watch"):
            (notes / "b.md").write_text("bravo bananas")
            eventually(lambda: "being written by another process" in caplog.text, "the watcher tries")
        assert indexed(coll, notes) == {"a.md"}
        other_writer.release()
        eventually(lambda: indexed(coll, notes) == {"a.md", "b.md"}, "the batch is applied once unlocked")
    finally:
        other_writer.release()
        watcher.stop()
    assert watcher.error is None


def test_a_copy_is_stored_once_its_original_is_gone(notes, coll):
    (notes / "a.md").write_text("# Apples\n\nalpha apples")  # the title is the heading, not the name
    watcher = FolderWatcher(coll, watch_roots(coll, [notes]))
    watcher.catch_up()
    shutil.copy(notes / "a.md", notes / "copy.md")
    assert watcher.apply([str(notes / "copy.md")]).duplicates == 1
    assert indexed(coll, notes) == {"a.md"}  # the same content is stored once
    (notes / "a.md").unlink()
    report = watcher.apply([str(notes / "a.md")])
    assert (report.removed, report.added) == (1, 1)
    assert indexed(coll, notes) == {"copy.md"}


def test_plan_follows_the_indexing_rules(tmp_path, coll):
    root = tmp_path / "docs"
    (root / "drafts").mkdir(parents=True)
    for name in ("keep.md", "skip.txt", "drafts/wip.md", ".hidden.md"):
        (root / name).write_text("text")
    (root / "moved-in").mkdir()
    (root / "moved-in" / "x.md").write_text("text")
    (root / "empty").mkdir()
    watcher = FolderWatcher(coll, [WatchRoot(root, include=("*.md",), exclude=("drafts/*",))])
    events = ["keep.md", "skip.txt", "drafts/wip.md", ".hidden.md", "gone.md", "moved-in", "empty"]
    batch = watcher.plan([str(root / name) for name in events] + [str(tmp_path / "elsewhere.md")])
    assert {r.path: sorted(p.name for p in ps) for r, ps in batch.upsert.items()} == {root: ["keep.md"]}
    assert batch.gone == [str(root / "gone.md")]
    assert batch.resync == {watcher.roots[0]}  # for the folder that appeared with files in it

    flood = watcher.plan([str(root / f"f{i}.md") for i in range(MAX_PATHS + 1)])
    assert (flood.upsert, flood.gone, flood.resync) == ({}, [], {watcher.roots[0]})


def test_watch_without_paths_takes_the_indexed_folders_and_their_options(notes, coll, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.txt").write_text("x")
    coll.add([notes], include=["*.md"])
    coll.add([notes / "a.md"])  # a file under an indexed folder needs no watch of its own
    coll.add([other], exclude=["*.csv"])
    roots = {root.path: root for root in watch_roots(coll)}
    assert set(roots) == {notes, other}
    assert roots[notes].include == ("*.md",) and roots[other].exclude == ("*.csv",)
    assert watch_roots(coll, [notes], include=["*.txt"])[0].include == ("*.txt",)


def test_watch_errors_are_clear(tmp_path, coll, monkeypatch):
    runner = CliRunner()
    result = runner.invoke(app, ["watch", "-c", str(coll.folder)])
    assert result.exit_code == 2 and "no folders to watch" in result.output
    result = runner.invoke(app, ["watch", str(tmp_path / "nowhere"), "-c", str(coll.folder)])
    assert result.exit_code == 2 and "does not exist" in result.output
    monkeypatch.setitem(sys.modules, "watchfiles", None)  # import fails as if not installed
    monkeypatch.delitem(sys.modules, "gemvec.store.watch")
    result = runner.invoke(app, ["watch", str(tmp_path), "-c", str(tmp_path / "new")])
    assert result.exit_code == 2 and "pip install 'gemvec[watch]'" in result.output
    assert not (tmp_path / "new").exists()  # nothing created before the check


def test_serve_watch_keeps_the_served_collection_in_step(notes, coll):
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("fastapi")
    server = Gemvec("serve", "--port", "0", "-c", str(coll.folder), "--watch", str(notes))
    try:
        url = re.search(r"Uvicorn running on (http://\S+)", server.wait_for("Uvicorn running on")).group(1)

        def sources(query: str) -> list[str]:
            body = {"query": query, "k": 3, "mode": "keyword"}
            hits = httpx.post(url + "/v1/search", json=body, timeout=30).json()["data"]
            return [Path(h["path"]).name for h in hits]

        eventually(lambda: sources("apples") == ["a.md"], "the watcher's catch-up is served")
        (notes / "b.md").write_text("bravo bananas")
        eventually(lambda: sources("bananas") == ["b.md"], "a new file is served")
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(60) in (0, -signal.SIGTERM)
    finally:
        server.stop()


def test_index_watch_indexes_then_follows_until_ctrl_c(notes, tmp_path, tiny_model_dir):
    target = tmp_path / "followed"
    watcher = Gemvec("index", str(notes), "-c", str(target), "-m", str(tiny_model_dir), "--watch")
    try:
        watcher.wait_for("watching")
        (notes / "b.md").write_text("bananas in boats")

        def seen() -> bool:
            with Collection.open(target) as coll:
                return "b.md" in indexed(coll, notes)

        eventually(seen, "the new file indexed by index --watch")
        watcher.proc.send_signal(signal.SIGINT)
        assert watcher.proc.wait(60) == 130
    finally:
        watcher.stop()
