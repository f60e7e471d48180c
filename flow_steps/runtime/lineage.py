"""Where results come from: the code version and content hashes recorded on every step run."""

from __future__ import annotations

import hashlib
from pathlib import Path

from flow_steps.config.names import PROJECT_ROOT

# The code that runs: the steps and their modules (the bundled sample included), the driver, MLproject.
# Nothing else (README, tests, benchmarks, stray files) changes what a step computes.
RUNNING_CODE = ("flow_steps", "main.py", "MLproject")


def code_version(root: Path = PROJECT_ROOT) -> str:
    """`src-<hash of the running code>`: it changes when that code changes, and only then.

    Unlike a git commit it ignores README edits, test changes and files left in the project root, so
    they never stop finished steps from being reused; and unlike a commit it sees uncommitted edits.
    (MLflow records the git commit itself, as `mlflow.source.git.commit`.)
    """
    return "src-" + sources_hash(root)


def sources_hash(root: Path = PROJECT_ROOT) -> str:
    """SHA-256 over the paths and contents of the running code (caches excluded)."""
    digest = hashlib.sha256()
    for name in RUNNING_CODE:
        top = root / name
        files = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
        for path in files:
            if "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(b"\0")
            digest.update(path.read_bytes())
            digest.update(b"\0")
    return digest.hexdigest()
