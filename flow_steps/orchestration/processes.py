"""A step in its own process, as MLflow's local backend starts it, with how it ended and its last words.

`mlflow.run(backend="local")` waits for the step's process itself and keeps only whether it exited 0; the
driver needs how it ended (a crash is retried, orchestration/crashes.py) and what it last logged.
`launch` does what the local backend does with `env_manager="local"`, with MLflow's own functions: it
creates the step's run (`get_or_create_run`: the same tags and params, a child of the active run), names
it, builds the command line from MLproject (path parameters downloaded) and starts `bash -c <command>`
with the run's environment (MLFLOW_RUN_ID, ...). The step's stderr is passed on to this process's stderr
as it comes (the user sees it live, as before) and its last part is kept.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading

from mlflow.entities import RunStatus, RunTag
from mlflow.projects.utils import (
    fetch_and_validate_project,
    get_entry_point_command,
    get_or_create_run,
    get_run_env_vars,
    load_project,
)
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PROJECT_BACKEND, MLFLOW_RUN_NAME

from flow_steps.config.names import PROJECT_ROOT

logger = logging.getLogger(__name__)

TAIL_BYTES = 64 * 1024  # of the step's stderr, kept to find its last log line
RELAY_SECONDS = 5  # to pass on what is left in the pipe once the step has exited
STDERR = 2


class StepProcess:
    """A step's running process: its run id, its return code once it ends and the tail of its stderr."""

    def __init__(self, run_id: str, process: subprocess.Popen):
        self.run_id = run_id
        self.process = process
        self._tail = bytearray()
        self._relay = threading.Thread(target=self._pass_on, name=f"stderr of {run_id}", daemon=True)
        self._relay.start()

    def _pass_on(self) -> None:
        """Copy the step's stderr to ours, chunk by chunk as it comes, keeping the last TAIL_BYTES."""
        source, passing_on = self.process.stderr.fileno(), True
        while chunk := os.read(source, 65536):
            if passing_on:
                try:
                    _write_all(STDERR, chunk)
                except OSError:  # our stderr is gone: keep reading, or the step would block on a full pipe
                    passing_on = False
            self._tail += chunk
            del self._tail[:-TAIL_BYTES]
        self.process.stderr.close()

    def wait(self) -> int:
        """The process's return code once it has ended (-N: killed by signal N). Interrupted, the step is
        stopped first (SIGTERM, then waited for), as MLflow's own wait does."""
        try:
            code = self.process.wait()
        except KeyboardInterrupt:
            self.stop()
            raise
        self._relay.join(RELAY_SECONDS)
        return code

    def stop(self) -> None:
        """SIGTERM the step unless it has ended, and wait for it: it ends its run KILLED."""
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait()
        self._relay.join(RELAY_SECONDS)

    def stderr_tail(self) -> str:
        """The last TAIL_BYTES of what the step wrote to stderr (read so far)."""
        return bytes(self._tail).decode(errors="replace")


def launch(entry_point: str, params: dict[str, str], experiment_id: str, run_name: str) -> StepProcess:
    """Start MLproject's `entry_point` with `params` in a new run `run_name` of `experiment_id`, a child of
    the active run, as `mlflow.run(..., env_manager="local", backend="local")` does; see the module."""
    uri = str(PROJECT_ROOT)
    work_dir = fetch_and_validate_project(uri, None, entry_point, params)
    project = load_project(work_dir)
    run_id = get_or_create_run(None, uri, experiment_id, work_dir, None, entry_point, params).info.run_id
    client = MlflowClient()
    try:
        client.log_batch(
            run_id, tags=[RunTag(MLFLOW_PROJECT_BACKEND, "local"), RunTag(MLFLOW_RUN_NAME, run_name)]
        )
        [command] = get_entry_point_command(project, entry_point, params, None)
        env = {**os.environ, **get_run_env_vars(run_id, experiment_id)}
        logger.debug("Running %s in run %s: %s", entry_point, run_id, command)
        process = subprocess.Popen(
            ["bash", "-c", command], cwd=work_dir, env=env, stderr=subprocess.PIPE, close_fds=True
        )
    except BaseException:  # the step never started: its run is not left RUNNING
        client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))
        raise
    return StepProcess(run_id, process)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
