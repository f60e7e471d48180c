"""Code version: the git commit of a clean tree, else a hash of the step sources."""

import shutil
import subprocess
from pathlib import Path

import pytest

from flow_steps.lineage import PROJECT_ROOT, code_version, sources_hash


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    shutil.copytree(
        PROJECT_ROOT / "flow_steps", root / "flow_steps", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(PROJECT_ROOT / "MLproject", root / "MLproject")
    return root


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def test_sources_hash_changes_with_the_code(project_copy: Path):
    before = sources_hash(project_copy)
    assert sources_hash(project_copy) == before
    (project_copy / "flow_steps" / "__pycache__").mkdir(exist_ok=True)
    (project_copy / "flow_steps" / "__pycache__" / "x.pyc").write_bytes(b"cache")
    assert sources_hash(project_copy) == before
    with (project_copy / "flow_steps" / "evaluation.py").open("a") as source:
        source.write("\n# edited\n")
    assert sources_hash(project_copy) != before


def test_clean_git_tree_uses_the_commit_and_a_dirty_one_the_hash(project_copy: Path):
    assert code_version(project_copy).startswith("src-")  # not a git repository
    _git(project_copy, "init", "-q")
    _git(project_copy, "add", "-A")
    _git(project_copy, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    assert code_version(project_copy) == _git(project_copy, "rev-parse", "HEAD")
    (project_copy / "flow_steps" / "evaluation.py").write_text("# changed\n")
    assert code_version(project_copy) == "src-" + sources_hash(project_copy)
