"""Where results come from: the code version and content hashes recorded on every step run."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
STEP_SOURCES = ("flow_steps", "MLproject")


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def code_version(root: Path = PROJECT_ROOT) -> str:
    """The git commit when the work tree is clean, else `src-<hash of the step sources>`.

    A dirty tree's commit would not say what ran, so edited code never reuses earlier results.
    """
    commit = _clean_git_commit(root)
    return commit if commit else "src-" + sources_hash(root)


def sources_hash(root: Path = PROJECT_ROOT) -> str:
    """SHA-256 over the paths and contents of the step sources (caches excluded)."""
    digest = hashlib.sha256()
    for name in STEP_SOURCES:
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


def _clean_git_commit(root: Path) -> str | None:
    try:
        status = _git(root, "status", "--porcelain", "--untracked-files=normal")
        if status is None or status.strip():
            return None
        return _git(root, "rev-parse", "HEAD")
    except OSError:
        return None


def _git(root: Path, *args: str) -> str | None:
    result = subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, check=False, timeout=30
    )
    return result.stdout.strip() if result.returncode == 0 else None
