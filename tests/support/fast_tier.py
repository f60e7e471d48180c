"""The fast tier's rule, enforced: a test not marked slow starts no process, no server and no fit.

While a fast test runs (its fixtures included), starting a process (`subprocess`, `os.fork`,
`os.posix_spawn`, `os.system`, hence Ray and `mlflow` commands too), listening on a socket (any server,
the loopback price stand-in included) or fitting a Keras model raises `SlowInFastTier`, naming the test
and what it did; the test fails and says to mark it slow. Keras is patched when it is imported, so a
test that imports it first is held too.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from types import ModuleType

import pytest


class SlowInFastTier(RuntimeError):
    """Raised when a test of the fast tier does what only slow tests may do."""


def _refuse(test: str, what: str) -> Callable:
    def refused(*args, **kwargs):
        raise SlowInFastTier(f"{test} {what}: mark it @pytest.mark.slow (or make it cheaper)")

    return refused


class _AfterImport(importlib.abc.MetaPathFinder):
    """Calls `callback(module)` once `name` has been imported (by anyone, later in this test)."""

    def __init__(self, name: str, callback: Callable[[ModuleType], None]) -> None:
        self.name, self.callback = name, callback

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            load = spec.loader.exec_module

            def exec_module(module: ModuleType) -> None:
                load(module)
                self.callback(module)

            spec.loader.exec_module = exec_module
        return spec


@contextmanager
def fast_tier_guard(test: str) -> Iterator[None]:
    """Forbid processes, servers and Keras fits while the block runs."""
    with ExitStack() as stack:
        patch = stack.enter_context(pytest.MonkeyPatch.context())
        patch.setattr(subprocess.Popen, "_execute_child", _refuse(test, "started a process"))
        for name in ("fork", "forkpty", "posix_spawn", "posix_spawnp", "system"):
            if hasattr(os, name):
                patch.setattr(os, name, _refuse(test, f"started a process (os.{name})"))
        patch.setattr(socket.socket, "listen", _refuse(test, "started a server (listened on a socket)"))

        def forbid_fit(keras: ModuleType) -> None:
            patch.setattr(keras.Model, "fit", _refuse(test, "fitted a Keras model"))

        if "keras" in sys.modules:
            forbid_fit(sys.modules["keras"])
        else:
            hook = _AfterImport("keras", forbid_fit)
            sys.meta_path.insert(0, hook)
            stack.callback(lambda: hook in sys.meta_path and sys.meta_path.remove(hook))
        yield
