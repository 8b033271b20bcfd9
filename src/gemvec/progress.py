"""The one progress bar: rich, on stderr, shown for long work on a terminal.

    with progress_bar("embedding", enabled=None, count=len(texts)) as update:
        ...
        if update:
            update(done, total)        # absolute counts; total may change or be None
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

AUTO_MIN_ITEMS = 256  # enabled=None shows a bar for at least this many items on a terminal

ProgressFn = Callable[[int, int | None], None]  # (done, total)


def wanted(enabled: bool | None, count: int | None = None) -> bool:
    """Whether to draw: as asked, or by default for long work (``count`` items) on a terminal."""
    if enabled is not None:
        return enabled
    return (count is None or count >= AUTO_MIN_ITEMS) and sys.stderr.isatty()


@contextmanager
def progress_bar(
    description: str,
    *,
    enabled: bool | None = None,
    count: int | None = None,
    transient: bool = True,
    show_rate: bool = False,
) -> Iterator[ProgressFn | None]:
    """Yield ``update(done, total)`` drawing a bar (done/total, ETA, optionally items/s), or None."""
    if not wanted(enabled, count):
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    if show_rate:
        columns.append(TextColumn("{task.fields[rate]}"))
    columns.append(TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=transient) as bar:
        task = bar.add_task(description, total=count, rate="")

        def update(done: int, total: int | None) -> None:
            speed = bar.tasks[0].speed
            bar.update(task, completed=done, total=total, rate=f"{speed:.1f}/s" if speed else "")

        yield update
