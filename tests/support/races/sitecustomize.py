"""Forced races in the processes a race test starts: the project's real functions, wrapped from outside.

A race test puts this folder first on its children's PYTHONPATH (`tests.support.races.race_env`), so
that Python imports this module at every child's start-up (processes that `mlflow run` starts in turn
inherit it). When RACE_VARIABLE is set ("<folder>:<parties>:<hold seconds>") it wraps, as their modules
are imported and before anyone imports them by name:

- `flow_steps.runtime.store.prepare_tracking_store`: the racers meet at a barrier ("prepare-store"),
  then go on together to the store's file lock, and so to MLflow's migrations of a fresh store;
- `flow_steps.deployment.lock.promotion_lock`: they meet ("promotion-lock") before taking the lock;
- `flow_steps.deployment.versions.alias_version`: a registration's first read of the champion is
  followed by `hold` seconds, the window in which another one would read the same champion.

The barrier is a folder of files: each racer adds `<point>.<pid>` and waits until there are `parties`.
Nothing here is imported by the shipped package; without the variable this module does nothing.
"""

from __future__ import annotations

import functools
import importlib.abc
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

RACE_VARIABLE = "RACE_TEST_SETTING"
STORE_POINT, LOCK_POINT = "prepare-store", "promotion-lock"
MEETING_SECONDS = 120


def meet(point: str) -> None:
    """Wait until every party has reached `point` (RACE_VARIABLE names the folder and the parties)."""
    folder, parties, _ = os.environ[RACE_VARIABLE].rsplit(":", 2)
    (Path(folder) / f"{point}.{os.getpid()}").touch()
    deadline = time.monotonic() + MEETING_SECONDS
    while len(list(Path(folder).glob(f"{point}.*"))) < int(parties):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{RACE_VARIABLE}: not every party reached {point} in {MEETING_SECONDS} s")
        time.sleep(0.05)


def hold_seconds() -> float:
    return float(os.environ[RACE_VARIABLE].rsplit(":", 1)[1])


def _meet_first(point: str, name: str) -> Callable[[ModuleType], None]:
    """A patch that makes `module.<name>` meet the other racers at `point` before doing its work."""

    def patch(module: ModuleType) -> None:
        real = getattr(module, name)

        @functools.wraps(real)
        def wrapped(*args, **kwargs):
            meet(point)
            return real(*args, **kwargs)

        setattr(module, name, wrapped)

    return patch


def _hold_after_reading_the_champion(module: ModuleType) -> None:
    from flow_steps.config.names import CHAMPION_ALIAS

    real, held = module.alias_version, []

    @functools.wraps(real)
    def alias_version(client, model_name, alias):
        version = real(client, model_name, alias)
        if alias == CHAMPION_ALIAS and not held:  # the read that decides; later reads only report
            held.append(True)
            time.sleep(hold_seconds())
        return version

    module.alias_version = alias_version


PATCHES = {
    "flow_steps.runtime.store": _meet_first(STORE_POINT, "prepare_tracking_store"),
    "flow_steps.deployment.lock": _meet_first(LOCK_POINT, "promotion_lock"),
    "flow_steps.deployment.versions": _hold_after_reading_the_champion,
}


class PatchOnImport(importlib.abc.MetaPathFinder):
    """Runs a module's patch right after the module itself has run, before its importer sees it."""

    def find_spec(self, fullname, path, target=None):
        patch = PATCHES.get(fullname)
        if patch is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            load = spec.loader.exec_module

            def exec_module(module: ModuleType) -> None:
                load(module)
                patch(module)

            spec.loader.exec_module = exec_module
        return spec


if os.environ.get(RACE_VARIABLE):
    sys.meta_path.insert(0, PatchOnImport())
