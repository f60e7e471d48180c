"""Code version: a hash of the code that runs, blind to everything else."""

import shutil
from pathlib import Path

import pytest

from flow_steps.runtime.lineage import PROJECT_ROOT, code_version, sources_hash


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    shutil.copytree(
        PROJECT_ROOT / "flow_steps", root / "flow_steps", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("MLproject", "main.py", "README.md"):
        shutil.copy(PROJECT_ROOT / name, root / name)
    (root / "tests").mkdir()
    (root / "tests" / "test_x.py").write_text("def test_x():\n    pass\n")
    return root


def test_sources_hash_changes_with_the_code(project_copy: Path):
    before = sources_hash(project_copy)
    assert sources_hash(project_copy) == before
    (project_copy / "flow_steps" / "__pycache__").mkdir(exist_ok=True)
    (project_copy / "flow_steps" / "__pycache__" / "x.pyc").write_bytes(b"cache")
    assert sources_hash(project_copy) == before
    with (project_copy / "flow_steps" / "evaluation.py").open("a") as source:
        source.write("\n# edited\n")
    assert sources_hash(project_copy) != before


@pytest.mark.parametrize("changed", ["main.py", "MLproject", "flow_steps/data/sample_data/WIKI-MSFT.csv"])
def test_the_driver_mlproject_and_the_sample_are_part_of_the_code(project_copy: Path, changed: str):
    before = code_version(project_copy)
    with (project_copy / changed).open("a") as file:
        file.write("\n")
    assert code_version(project_copy) != before


def test_stray_files_readme_edits_and_tests_leave_the_code_version_alone(project_copy: Path):
    before = code_version(project_copy)
    (project_copy / "request.json").write_text("{}")  # what the README's serve example writes
    (project_copy / "forecast.csv").write_text("Date,forecast_close\n")
    with (project_copy / "README.md").open("a") as readme:
        readme.write("\nA new paragraph.\n")
    (project_copy / "tests" / "test_x.py").write_text("def test_y():\n    pass\n")
    assert code_version(project_copy) == before == "src-" + sources_hash(project_copy)
