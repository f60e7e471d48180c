"""A test whose pytest worker dies ends the run, naming that test, instead of hanging it: pytest-xdist 3.8.0
under `--dist loadgroup` waits for ever once a crashed worker is replaced (pytest-dev/pytest-xdist#1323,
#1327; fixed after 3.8.0), so the suite's own settings (pyproject.toml's addopts) forbid the restart."""

from __future__ import annotations

import subprocess
import sys
from textwrap import dedent

from deploy.local_serving import stop_process_group
from tests.conftest import PROJECT_ROOT

# Two workers: a group of two tests, one test that takes its worker down, and enough others that work is
# still waiting when it dies (the case that hung).
TESTS = dedent(
    """
    import os
    import time

    import pytest


    @pytest.mark.xdist_group("pair")
    def test_first_of_a_group():
        time.sleep(1)


    @pytest.mark.xdist_group("pair")
    def test_second_of_a_group():
        time.sleep(1)


    def test_dies():
        time.sleep(0.5)
        os._exit(1)


    @pytest.mark.parametrize("number", range(6))
    def test_others(number):
        time.sleep(0.3)
    """
)


def test_a_dead_worker_ends_the_run_and_names_its_test(tmp_path):
    """With the project's settings the run ends within two minutes (it hung for ever before), fails,
    and its summary names the test the worker died in."""
    (tmp_path / "test_dying_worker.py").write_text(TESTS)
    command = [sys.executable, "-m", "pytest", "-c", str(PROJECT_ROOT / "pyproject.toml"), "--rootdir"]
    process = subprocess.Popen(
        [*command, str(tmp_path), "-p", "no:cacheprovider", str(tmp_path / "test_dying_worker.py")],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            stop_process_group(process, grace_seconds=5)
    assert process.returncode == 1, output[-3000:]
    assert "worker 'gw" in output and "crashed while running 'test_dying_worker.py::test_dies'" in output
    assert "crashed and worker restarting disabled" in output, output[-3000:]
