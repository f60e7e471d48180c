"""How a universe's ticker runs on Ray: in a long-lived worker (`in-worker`, the default) or as processes.

- `in-worker`: one Ray actor per CPU (`TickerWorker`) imports TensorFlow, MLflow and the tracking store
  once, then runs tickers one after another with the driver of `python main.py` (`run_pipeline`), its
  steps through `mlflow.run` with the `in-process` backend: the same run tree, params, tags, artifacts,
  reuse rules and registration, without five Python start-ups per ticker. Between tickers the worker puts
  back what a ticker may have changed (open runs, Keras state, environment variables).
- `process`: a Ray task per ticker runs `python main.py` in its own process group, and every step is its
  own process (full isolation).

Either way a ticker that fails, fails alone, and a worker that dies costs the ticker it held (reported
FAILED with the reason; the pool replaces the worker).
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import mlflow
from mlflow.exceptions import MlflowException

from flow_steps.config.declarations import PIPELINE_PARAMS
from flow_steps.config.errors import PipelineError, one_line
from flow_steps.data.sources import check_data_source
from flow_steps.data.tickers import ticker_source
from flow_steps.orchestration.in_process import BACKEND
from flow_steps.runtime.interruption import FAILED, is_alive
from flow_steps.runtime.lifecycle import configure_logging
from flow_steps.runtime.outages import is_outage, outage_error
from flow_steps.runtime.tracking import client_defaults

logger = logging.getLogger(__name__)

IN_WORKER, PROCESS = "in-worker", "process"
WORKER_DIED = -1  # a ticker's return code when its Ray worker died under it
# A ticker's process or worker: one thread per CPU it was given, and no "View run at" lines (MLflow reads
# the run again to print each; nobody reads a worker's stdout).
WORKER_SETTINGS = {
    "OMP_NUM_THREADS": "1",
    "TF_NUM_INTRAOP_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "1",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}
PIPELINE_FLAGS = ("reuse_training", "register_model")  # main.py's own flags, not step parameters
MLFLOW_CODE_MODEL_MODULES = "code_model_"  # the modules MLflow loads models-from-code as


@dataclass
class TickerOutcome:
    """What the driver learns from one ticker: its pipeline's exit code, its last error line, its time."""

    ticker: str
    returncode: int
    seconds: float
    last_error: str
    worker_kib: int = 0  # an in-worker worker's resident memory after the ticker (0: process executor)


def ticker_values(ticker: str, params: dict[str, str]) -> dict[str, str]:
    """The pipeline's parameters for one ticker: the universe's, with its ticker and its data source."""
    return {
        **params,
        "company_abbreviation": ticker,
        "data_source": ticker_source(params["data_source"], ticker),
    }


def pipeline_arguments(ticker: str, params: dict[str, str], universe_run_id: str) -> list[str]:
    """`python main.py` options for one ticker: every pipeline parameter, its data source, its parent."""
    values = ticker_values(ticker, params)
    arguments = [item for param in PIPELINE_PARAMS for item in (param.flag, values[param.name])]
    return [*arguments, "--universe-run-id", universe_run_id]


def resident_kib() -> int:
    """This process's resident memory (VmRSS), in KiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class TickerWorker:
    """One in-worker process (a Ray actor with 1 CPU): `run` one ticker's pipeline at a time."""

    def __init__(self, env: dict[str, str]):
        # Imported before the first ticker, not with it: a ticker's download then follows its start
        # closely, which is what a paced universe counts on (orchestration/pacing.py).
        import flow_steps.orchestration.driver  # noqa: F401

        os.environ.update({**env, **WORKER_SETTINGS})
        configure_logging()
        client_defaults()
        self.environment = dict(os.environ)
        self.frozen = False

    def pid(self) -> int:
        return os.getpid()

    def memory_kib(self) -> int:
        return resident_kib()

    def run(self, ticker: str, params: dict[str, str], universe_run_id: str) -> TickerOutcome:
        """Run `ticker`'s pipeline (`params` as `python main.py` takes them) under the universe run."""
        from flow_steps.orchestration.driver import run_pipeline

        started = time.monotonic()
        values = ticker_values(ticker, params)
        try:
            check_data_source(values["data_source"])
            run_pipeline(
                {name: value for name, value in values.items() if name not in PIPELINE_FLAGS},
                reuse_training=values["reuse_training"] == "true",
                register_model=values["register_model"] == "true",
                universe_run_id=universe_run_id,
                backend=BACKEND,
            )
            returncode, error = 0, ""
        except PipelineError as failure:
            returncode, error = 1, one_line(failure)
        except MlflowException as failure:
            if not is_outage(failure):
                raise
            returncode, error = 1, one_line(outage_error(failure))
        finally:
            self._reset()
        if error:
            logger.error("%s failed: %s", ticker, error)
        return TickerOutcome(ticker, returncode, time.monotonic() - started, error, resident_kib())

    def _reset(self) -> None:
        """No open run, no model left loaded, no Keras graphs, the environment (MLFLOW_RUN_ID and the
        like) as at start."""
        while mlflow.active_run():
            mlflow.end_run(FAILED)
        # MLflow loads a model logged as code as a new module per load (log_model's check of the input
        # example, register_model's scoring), kept in sys.modules, and the last model it made in
        # `mlflow.models.model.__mlflow_model__`: together about 20 MiB a ticker, measured.
        for name in [name for name in sys.modules if name.startswith(MLFLOW_CODE_MODEL_MODULES)]:
            del sys.modules[name]
        mlflow.models.model.__mlflow_model__ = None
        import keras

        keras.backend.clear_session(free_memory=False)  # Keras' global state; the collection is below
        for name in set(os.environ) - set(self.environment):
            del os.environ[name]
        os.environ.update(self.environment)
        # A full collection walks TensorFlow's, MLflow's and pandas' objects too: 0.45 s a ticker, twice
        # with clear_session's own. After the first ticker they are frozen out of the collector's walk
        # (they live as long as the worker), so that each later collection only walks a ticker's objects.
        gc.collect()
        if not self.frozen:
            gc.freeze()
            self.frozen = True


def run_ticker(ticker: str, arguments: list[str], env: dict[str, str], project: str) -> TickerOutcome:
    """One ticker's `python main.py`, in a Ray task; stopped by SIGTERM (runs end KILLED) if cancelled."""
    started = time.monotonic()
    with tempfile.TemporaryFile("w+") as errors:
        process = subprocess.Popen(
            [sys.executable, "main.py", *arguments],
            cwd=project,
            env={**os.environ, **env, **WORKER_SETTINGS},
            stdout=subprocess.DEVNULL,
            stderr=errors,
            text=True,
            start_new_session=True,  # its own group: cancelling the task stops it and its steps
        )
        try:
            returncode = _wait_interruptibly(process)
        except BaseException:  # cancelled (KeyboardInterrupt / TaskCancelledError) or the worker exits
            process.send_signal(signal.SIGTERM)
            process.wait()
            raise
        errors.seek(0)
        lines = [line.strip() for line in errors.read().splitlines() if line.strip()]
    last_error = next((line for line in reversed(lines) if "ERROR" in line or "Error" in line), "")
    return TickerOutcome(ticker, returncode, time.monotonic() - started, last_error)


def _wait_interruptibly(process: subprocess.Popen, poll_seconds: float = 0.5) -> int:
    """The process's exit code. Polled rather than a blocking wait: Ray cancels a task by raising
    KeyboardInterrupt between Python bytecodes, which a wait inside the C call would delay until the
    pipeline had finished on its own."""
    while (returncode := process.poll()) is None:
        time.sleep(poll_seconds)
    return returncode


class TickerPool:
    """Hands tickers to Ray (`submit`) and turns a finished reference into its outcome (`outcome`)."""

    def __init__(self, executor: str, slots: int, env: dict[str, str], project: str):
        import ray

        self.executor, self.env, self.project = executor, env, project
        self.busy: dict[object, object] = {}  # reference -> the worker that runs it (in-worker)
        self.pids: dict[object, int] = {}  # worker -> its process id
        # How long a cancelled ticker may take to end its runs itself: a task SIGTERMs its pipeline; in a
        # worker, a cancel reaches Python code only (not a blocking read), and the worker is then killed.
        self.grace_seconds = 60 if executor == PROCESS else 10
        if executor == IN_WORKER:
            self.worker_class = ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0)(TickerWorker)
            self.idle = self._start_workers(slots)
        else:
            self.task = ray.remote(num_cpus=1, max_retries=0)(run_ticker)

    def _start_workers(self, count: int) -> list[object]:
        """`count` new workers, started side by side (each imports MLflow and the store in its own
        process), once all of them are up."""
        import ray

        workers = [self.worker_class.remote(self.env) for _ in range(count)]
        self.pids.update(zip(workers, ray.get([worker.pid.remote() for worker in workers]), strict=True))
        return workers

    def stop(self) -> None:
        """Kill the in-worker workers and wait until their processes are gone (their runs can then be
        closed as runs of dead processes)."""
        import ray

        for worker, pid in self.pids.items():
            ray.kill(worker)
            deadline = time.monotonic() + 30
            while is_alive(pid, None) and time.monotonic() < deadline:
                time.sleep(0.1)
        self.pids.clear()

    def submit(self, ticker: str, params: dict[str, str], universe_run_id: str) -> object:
        if self.executor == PROCESS:
            arguments = pipeline_arguments(ticker, params, universe_run_id)
            return self.task.remote(ticker, arguments, self.env, self.project)
        worker = self.idle.pop()
        reference = worker.run.remote(ticker, params, universe_run_id)
        self.busy[reference] = worker
        return reference

    def outcome(self, reference: object, ticker: str) -> TickerOutcome:
        """The ticker's outcome; a worker that died is a failed ticker, and is replaced."""
        import ray

        worker = self.busy.pop(reference, None)
        try:
            outcome = ray.get(reference)
        except ray.exceptions.RayError as error:
            logger.error("%s: its Ray worker died (%s)", ticker, type(error).__name__)
            outcome = TickerOutcome(ticker, WORKER_DIED, 0.0, f"its Ray worker died ({type(error).__name__})")
            if worker is not None:
                ray.kill(worker)
                self.pids.pop(worker, None)
                [worker] = self._start_workers(1)
        if worker is not None:
            self.idle.append(worker)
        return outcome

    def memory_kib(self) -> list[int]:
        """Each idle in-worker worker's resident memory (for the benchmark's steadiness figure)."""
        import ray

        if self.executor != IN_WORKER:
            return []
        return ray.get([worker.memory_kib.remote() for worker in self.idle])
