"""Forced races for tests: the environment that makes a test's child processes meet and hold (see
sitecustomize.py here, which Python loads in those children)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.races.sitecustomize import RACE_VARIABLE

HOOKS_FOLDER = Path(__file__).resolve().parent


def race_env(env: dict[str, str], folder: Path, parties: int, hold_seconds: float = 0) -> dict[str, str]:
    """`env` for a racer: this folder first on PYTHONPATH, and where, how many and how long to race."""
    path = os.pathsep.join(filter(None, [str(HOOKS_FOLDER), env.get("PYTHONPATH", "")]))
    return {**env, "PYTHONPATH": path, RACE_VARIABLE: f"{folder}:{parties}:{hold_seconds:g}"}
