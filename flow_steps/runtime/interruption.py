"""No run left RUNNING: SIGINT/SIGTERM end runs as KILLED, and runs of dead processes are found and closed.

Entry points turn SIGTERM into KeyboardInterrupt (as Ctrl-C already is), so `with` blocks unwind, the
driver cancels the step it waits on, and each run is ended KILLED by the process that owns it. While
TensorFlow works, a signal is held and raised between batches (`interruptions_held`). Every
run records its host and process (`process_host`, `process_id`, `process_started`); after a `kill -9`,
the next pipeline on the same host marks the runs whose process is gone KILLED. A run is tagged with
its process as it is created; a step's run, created by `mlflow run` before the step's process can tag it,
carries its parent's id from its creation and goes with that parent (the driver) until then. Runs of
live processes and of other hosts are never touched.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from mlflow.entities import Run, RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from flow_steps.config.names import TAG_ERROR, TAG_PROCESS_HOST, TAG_PROCESS_ID, TAG_PROCESS_STARTED

logger = logging.getLogger(__name__)

KILLED = RunStatus.to_string(RunStatus.KILLED)
FAILED = RunStatus.to_string(RunStatus.FAILED)
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; `signal_number` says which."""

    def __init__(self, signal_number: int):
        super().__init__(signal.Signals(signal_number).name)
        self.signal_number = signal_number

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.signal_number, 130)


@dataclass
class _Holding:
    """Whether signals are held (nesting depth) and the one that arrived meanwhile."""

    depth: int = 0
    pending: Interrupted | None = None


_holding = _Holding()


def raise_on_termination() -> None:
    """SIGINT and SIGTERM raise `Interrupted` in the main thread (at once, or when held, at the next
    `raise_if_interrupted`); later ones are ignored while it unwinds."""

    def interrupt(signal_number: int, _frame: object) -> None:
        for number in EXIT_CODES:
            signal.signal(number, signal.SIG_IGN)
        if _holding.depth:
            _holding.pending = Interrupted(signal_number)
            return
        raise Interrupted(signal_number)

    for number in EXIT_CODES:
        signal.signal(number, interrupt)


@contextmanager
def interruptions_held() -> Iterator[None]:
    """Inside the block a signal is only recorded; it is raised by `raise_if_interrupted` (a training
    callback calls it between batches) or when the block ends.

    TensorFlow calls Python from C++ while it traces a graph (pybind11 builds its exceptions there). A
    signal raised at such a moment replaces the exception being built, pybind11 turns the mismatch into a
    RuntimeError, and the step would crash with a traceback instead of ending its run KILLED.
    """
    _holding.depth += 1
    try:
        yield
    finally:
        _holding.depth -= 1
        if not _holding.depth:
            raise_if_interrupted()


def raise_if_interrupted() -> None:
    """Raise the signal held by `interruptions_held`, if one arrived."""
    if _holding.pending is not None:
        error, _holding.pending = _holding.pending, None
        raise error


def end_with_parent(poll_seconds: float = 1.0) -> threading.Thread:
    """SIGTERM this process when the process that started it ends (a universe's Ray worker that died):
    its runs then end KILLED as on any SIGTERM, instead of running on with no one to report to."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_seconds)
        logger.error("The process that started this one (%d) ended: stopping", parent)
        os.kill(os.getpid(), signal.SIGTERM)

    watcher = threading.Thread(target=watch, name="end-with-parent", daemon=True)
    watcher.start()
    return watcher


def interruption_reason(error: KeyboardInterrupt) -> str:
    name = error.args[0] if isinstance(error, Interrupted) else "SIGINT"
    return f"interrupted by {name}"


def exit_code(error: KeyboardInterrupt) -> int:
    return error.exit_code if isinstance(error, Interrupted) else 130


@dataclass(frozen=True)
class ProcessIdentity:
    """A process as it can be recognised later: host, pid and start time (None where /proc is absent)."""

    host: str
    pid: int
    started: str | None

    def tags(self) -> dict[str, str]:
        tags = {TAG_PROCESS_HOST: self.host, TAG_PROCESS_ID: str(self.pid)}
        if self.started is not None:
            tags[TAG_PROCESS_STARTED] = self.started
        return tags


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (field 3 on), or None without /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def process_start_ticks(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat (start time since boot): tells a reused pid from the original."""
    fields = _stat_fields(pid)
    return fields[19] if fields else None


def is_zombie(pid: int) -> bool:
    """Whether `pid` has exited and only waits to be reaped (state Z or X): dead, as far as runs go.

    A process killed with -9 whose parent died too is reaped by init, which on some machines does it
    late; until then `kill(pid, 0)` still succeeds."""
    fields = _stat_fields(pid)
    return bool(fields) and fields[0] in ("Z", "X")


def children() -> list[int]:
    """This process's child processes that have not exited (from /proc; none without it)."""
    proc = Path("/proc")
    found = []
    for entry in proc.iterdir() if proc.is_dir() else []:
        fields = _stat_fields(int(entry.name)) if entry.name.isdigit() else None
        if fields and fields[1] == str(os.getpid()) and fields[0] not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def end_children(grace_seconds: float = 10.0) -> list[int]:
    """SIGTERM this process's children (a step whose process `mlflow.run` stopped waiting for), SIGKILL
    whatever is left after `grace_seconds`; their pids (reaped by whoever started them)."""
    pids = children()
    for signal_number, seconds in ((signal.SIGTERM, grace_seconds), (signal.SIGKILL, 5.0)):
        left = [pid for pid in pids if is_alive(pid, None)]
        for pid in left:
            with suppress(ProcessLookupError):
                os.kill(pid, signal_number)
        deadline = time.monotonic() + seconds
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = [pid for pid in left if is_alive(pid, None)]
        if not left:
            break
    return pids


def this_process() -> ProcessIdentity:
    return ProcessIdentity(socket.gethostname(), os.getpid(), process_start_ticks(os.getpid()))


def is_alive(pid: int, started: str | None) -> bool:
    """Whether process `pid` still runs and, when its start time was recorded, is the same process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    if is_zombie(pid):
        return False
    return started is None or process_start_ticks(pid) in (None, started)


def orphaned(
    runs: Iterable[Run],
    host: str,
    alive: Callable[[int, str | None], bool] = is_alive,
    parent_of: Callable[[str], Run | None] = lambda _run_id: None,
) -> list[Run]:
    """The RUNNING runs recorded on `host` whose process is gone.

    A run without process tags (a step whose process had not tagged it yet when the driver died) is
    judged by its parent run: it is orphaned when its parent, on `host`, is orphaned or already ended.
    `parent_of` finds a parent that is not among `runs`.
    """
    runs = [run for run in runs if run.info.status == "RUNNING"]
    found = {}
    for run in runs:
        tags = run.data.tags
        if tags.get(TAG_PROCESS_HOST) != host or TAG_PROCESS_ID not in tags:
            continue
        if not alive(int(tags[TAG_PROCESS_ID]), tags.get(TAG_PROCESS_STARTED)):
            found[run.info.run_id] = run
    by_id = {run.info.run_id: run for run in runs}
    for run in runs:
        parent_id = run.data.tags.get(MLFLOW_PARENT_RUN_ID)
        if TAG_PROCESS_ID in run.data.tags or not parent_id:
            continue
        parent = by_id.get(parent_id) or parent_of(parent_id)
        if parent is None or parent.data.tags.get(TAG_PROCESS_HOST) != host:
            continue
        if parent_id in found or parent.info.status != "RUNNING":
            found[run.info.run_id] = run
    return list(found.values())


def close_orphaned_runs(client: MlflowClient, experiment_id: str) -> list[str]:
    """Mark KILLED the RUNNING runs of `experiment_id` whose process on this host is gone (`orphaned`);
    their ids."""
    host = socket.gethostname()
    running = client.search_runs([experiment_id], "attributes.status = 'RUNNING'", max_results=1000)
    closed = []
    for run in orphaned(running, host, parent_of=lambda run_id: _run_or_none(client, run_id)):
        pid = run.data.tags.get(TAG_PROCESS_ID)
        process = f"process {pid}" if pid else "the process of its parent run"
        client.set_tag(run.info.run_id, TAG_ERROR, f"{process} on {host} ended without closing the run")
        client.set_terminated(run.info.run_id, KILLED)
        closed.append(run.info.run_id)
    if closed:
        logger.warning("Marked %d run(s) KILLED whose process is gone: %s", len(closed), ", ".join(closed))
    return closed


def _run_or_none(client: MlflowClient, run_id: str) -> Run | None:
    try:
        return client.get_run(run_id)
    except MlflowException:
        return None
