"""Live sync: keep a collection in step with folders as files are created, edited, moved and deleted.

    with Collection.open("notes") as coll:
        FolderWatcher(coll, watch_roots(coll, ["~/notes"])).run()      # until Ctrl-C
    watcher = FolderWatcher(coll, roots).start(); ...; watcher.stop()  # in a background thread

Needs the ``watch`` extra (``watchfiles``). The watcher first syncs its folders (so whatever
changed while nobody watched, a kill -9 included, is caught up), then applies each debounced
batch of changes: the paths that changed, by what is on disk now (a file there is added or
re-embedded if its bytes changed, a path gone is deleted with everything under it). A folder
that appears (moved in) and a batch too large to trust (the OS may have dropped events)
fall back to a sync of its folder. The collection does the work: ``add`` skips unchanged files
by hash, takes the write lock for each batch, and commits crash-safely; a batch that finds the
collection locked by another writer is retried.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from gemvec.errors import CollectionLockedError, InputError, require
from gemvec.ingest.loaders import TableOptions
from gemvec.ingest.walk import find_files, resolve_path, wanted
from gemvec.store.writer import IngestReport

watchfiles = require("watchfiles", "watch", "Watching folders")
from watchfiles._rust_notify import WatchfilesRustInternalError  # noqa: E402  (not re-exported)

if TYPE_CHECKING:
    from gemvec.store.collection import Collection

log = logging.getLogger("gemvec.watch")

DEBOUNCE_MS = 1600  # the longest a batch gathers changes before it is applied
QUIET_MS = 300  # a batch is applied once no change came for this long
TICK_MS = 500  # how often an idle watcher wakes: to retry a locked batch, to notice stop()
MAX_PATHS = 500  # more changed paths than this in one batch: sync the folders instead


@dataclass(frozen=True)
class WatchRoot:
    """A watched file or folder and the options it is indexed with (as ``Collection.add`` takes them)."""

    path: Path
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    table: TableOptions | None = None

    def covers(self, path: Path) -> bool:
        return path == self.path or self.path in path.parents

    def wants(self, path: Path) -> bool:
        """Whether a sync of this root would index the file ``path`` (the rules of ``find_files``)."""
        if path == self.path:
            return True  # a file named explicitly is always taken
        return wanted(path, self.path, self.include, self.exclude)

    def hidden(self, path: Path) -> bool:
        """Under a hidden folder or hidden itself (``.git``, ``.venv``, editors' ``.swp`` files)."""
        return path != self.path and any(p.startswith(".") for p in path.relative_to(self.path).parts)


def watch_roots(
    coll: Collection,
    paths: Sequence[str | Path] = (),
    *,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    table: TableOptions | None = None,
) -> list[WatchRoot]:
    """The roots to watch: ``paths``, or without them every folder the collection was indexed from.

    Options left as None are taken from the collection's record of that folder (how it was
    indexed), else the defaults.
    """
    stored = {root["path"]: root for root in json.loads(coll.settings.get("roots", "[]"))}
    if not paths:
        if not stored:
            raise InputError(f"Collection {coll.name} has no folders to watch: give PATH to index and watch.")
        # Files indexed one by one under a folder that is watched anyway need no watch of their own.
        folders = [Path(p) for p in stored if Path(p).is_dir()]
        paths = [p for p in stored if not any(f in Path(p).parents for f in folders)]
    roots = []
    for raw in paths:
        path = resolve_path(raw)
        if not path.exists():
            raise InputError(f"{raw} does not exist.")
        known = stored.get(str(path), {})
        roots.append(
            WatchRoot(
                path,
                tuple(include if include is not None else known.get("include", ())),
                tuple(exclude if exclude is not None else known.get("exclude", ())),
                table or _table(known.get("table")),
            )
        )
    return roots


@dataclass
class Batch:
    """What one batch of changed paths asks of the collection."""

    upsert: dict[WatchRoot, list[Path]] = field(default_factory=dict)
    gone: list[str] = field(default_factory=list)
    resync: set[WatchRoot] = field(default_factory=set)


class FolderWatcher:
    """Applies file changes under ``roots`` to ``coll`` until stopped; ``on_batch`` gets each report."""

    def __init__(
        self,
        coll: Collection,
        roots: Sequence[WatchRoot],
        *,
        debounce_ms: int = DEBOUNCE_MS,
        batch_size: int = 32,
        on_batch: Callable[[IngestReport], None] | None = None,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        if not roots:
            raise InputError("Nothing to watch.")
        self.coll = coll
        # Deepest first, so a path under nested roots belongs to the innermost one.
        self.roots = sorted(roots, key=lambda r: len(r.path.parts), reverse=True)
        self.debounce_ms = debounce_ms
        self.batch_size = batch_size
        self.on_batch = on_batch
        self.on_ready = on_ready
        self._copies: dict[WatchRoot, set[Path]] = {}  # files skipped as copies of stored documents
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None  # what stopped a background watcher

    # -- one batch ------------------------------------------------------------------------------

    def plan(self, changed: Iterable[str]) -> Batch:
        """Sort changed paths by what is on disk now; the kind of event does not matter."""
        batch = Batch()
        for raw in set(changed):
            path = Path(raw)
            root = next((r for r in self.roots if r.covers(path)), None)
            if root is None or root.hidden(path):
                continue
            if path.is_file():
                if root.wants(path):
                    batch.upsert.setdefault(root, []).append(path)
            elif path.is_dir():
                if _has_entries(path):  # a folder moved or copied in brings no event per file
                    batch.resync.add(root)
            else:
                batch.gone.append(raw)  # a file or a whole folder deleted or moved away
        if sum(map(len, batch.upsert.values())) + len(batch.gone) > MAX_PATHS:
            touched = {
                *batch.upsert,
                *batch.resync,
                *(r for r in self.roots for p in batch.gone if r.covers(Path(p))),
            }
            return Batch(resync=touched)
        return batch

    def apply(self, changed: Iterable[str]) -> IngestReport:
        """Apply one batch of changed paths; safe to repeat (unchanged files are skipped by hash)."""
        batch = self.plan(changed)
        report = IngestReport()
        if batch.gone:
            report.removed += self.coll.delete(batch.gone)
        for root in batch.resync:
            report.merge(self._sync(root))
        for root, paths in batch.upsert.items():
            if root not in batch.resync:
                report.merge(self._add(root, sorted(paths)))
        if report.updated or report.removed:
            report.merge(self._store_copies())
        return report

    def catch_up(self) -> IngestReport:
        """Sync every root: index what is new or changed, remove what is gone."""
        report = IngestReport()
        for root in self.roots:
            report.merge(self._sync(root))
        return report

    def _sync(self, root: WatchRoot) -> IngestReport:
        return self._add(root, [root.path], remove_missing=True)

    def _add(self, root: WatchRoot, paths: list[Path], remove_missing: bool = False) -> IngestReport:
        report = self.coll.add(
            paths,
            include=root.include,
            exclude=root.exclude,
            table=root.table,
            batch_size=self.batch_size,
            remove_missing=remove_missing,
            remember=paths == [root.path],  # the root itself, not each changed file under it
        )
        if report.duplicates:  # the collection leaves such files unrecorded, to read them again later
            candidates = find_files([root.path], root.include, root.exclude) if remove_missing else paths
            recorded = {row[0] for row in self.coll.conn.execute("SELECT path FROM files")}
            self._copies.setdefault(root, set()).update(p for p in candidates if str(p) not in recorded)
        return report

    def _store_copies(self) -> IngestReport:
        """Read the skipped copies again once stored documents changed or went: the document a
        copy duplicated may be gone, and then the copy is stored in its place."""
        report = IngestReport()
        copies, self._copies = self._copies, {}
        for root, paths in copies.items():
            if present := sorted(p for p in paths if p.is_file()):
                report.merge(self._add(root, present))
        return report

    # -- the loop -------------------------------------------------------------------------------

    def run(self) -> None:
        """Catch up, then apply changes until :meth:`stop` (or Ctrl-C in the main thread)."""
        while not self._stop.is_set():
            try:
                self._watch()
            except WatchfilesRustInternalError as exc:  # the OS watcher failed: start over, resynced
                log.warning("file watching failed (%s); resyncing and watching again", exc)

    def _watch(self) -> None:
        events = watchfiles.watch(
            *(root.path for root in self.roots),
            watch_filter=None,  # every path: plan() applies the collection's own rules
            debounce=self.debounce_ms,
            step=QUIET_MS,
            stop_event=self._stop,
            rust_timeout=TICK_MS,
            yield_on_timeout=True,
        )
        pending: set[str] = set()
        caught_up = waiting = False
        # The first (possibly empty) batch comes once the OS watch is in place: catching up only
        # then means a change made meanwhile is both caught up and seen as an event, never missed.
        for changes in events:
            pending.update(path for _, path in changes)
            try:
                if not caught_up:
                    self._report(self.catch_up())
                    caught_up = True
                    if self.on_ready is not None:
                        self.on_ready()
                if pending:
                    self._report(self.apply(pending))
                    pending.clear()
                waiting = False
            except CollectionLockedError:
                if not waiting:
                    log.warning("%s is being written by another process; waiting for it", self.coll.name)
                waiting = True

    def _report(self, report: IngestReport) -> None:
        if self.on_batch is not None and (
            report.added or report.updated or report.removed or report.duplicates or report.failed
        ):
            self.on_batch(report)

    # -- in the background ----------------------------------------------------------------------

    def start(self) -> FolderWatcher:
        """Run in a daemon thread (e.g. next to the HTTP server); an error stops it and is logged."""

        def target() -> None:
            try:
                self.run()
            except Exception as exc:
                self.error = exc
                log.exception("watching %s stopped", ", ".join(str(r.path) for r in self.roots))

        self._thread = threading.Thread(target=target, name="gemvec-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 60.0) -> None:
        """Stop after the batch being applied (if any) is committed."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


def _has_entries(folder: Path) -> bool:
    try:
        return any(folder.iterdir())
    except OSError:  # gone again, or unreadable: nothing to index there
        return False


def _table(stored: dict | None) -> TableOptions | None:
    """Table options as a collection records them (JSON: lists), hashable again."""
    if not stored:
        return None
    fields = stored.get("metadata_fields")
    return TableOptions(**{**stored, "metadata_fields": None if fields is None else tuple(fields)})
