"""What a pipeline run costs beyond its real work: cold, second and fully reused runs, the same work in
one process, a profile per step, and the reuse look-up as the store grows.

    python benchmarks/pipeline.py                                   # default parameters, about 12 minutes
    python benchmarks/pipeline.py --epochs 1 --repeats 1 --lookup-runs 10 1000  # a quick pass

Each pipeline run is `python main.py` on a SQLite store in a temporary folder (nothing is left
behind): cold (a fresh store, nothing to reuse; the median of --repeats runs, each followed by an
in-process run, as the load of a shared machine drifts), second (download and transform reused), fully reused
(`--reuse-training`: nothing to train, the version already registered). The in-process run does the
same work with the same MLflow logging (a parent run, one nested run per step, artifacts handed over
as URIs and downloaded) in one Python process, timed from its start, imports included. Step times
come from the runs' own start and end times. The reuse look-up is the driver's own query
(`StepRunner.find_finished`) on a store holding N finished download runs, created in bulk.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from flow_steps.config.names import DOWNLOAD_STEP, REGISTER_STEP, TRAIN_STEP, TRANSFORM_STEP

PROJECT_ROOT = Path(__file__).resolve().parents[1]
STEPS = (DOWNLOAD_STEP, TRANSFORM_STEP, TRAIN_STEP, REGISTER_STEP)
STEP_MODULES = {step: f"flow_steps.{step}" for step in STEPS}
EXPERIMENT = "pipeline-benchmark"
TARGETS = {"pipeline / in-process": 1.3, "fully reused / cold": 0.15, "look-up ms at 10,000 runs": 100.0}
logger = logging.getLogger("benchmarks.pipeline")


def store_env(folder: Path) -> dict[str, str]:
    """The environment of a process that logs to the SQLite store in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env.update(
        {"MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}", "MLFLOW_EXPERIMENT_NAME": EXPERIMENT}
    )
    return env


def timed_command(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Run `command` from the project root; its wall seconds and stdout. Fails loudly."""
    started = time.perf_counter()
    result = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command[:3])} failed:\n{result.stderr[-3000:]}")
    return seconds, result.stdout


def step_seconds(tracking_uri: str, parent_run_id: str) -> dict[str, float]:
    """Seconds each child run of `parent_run_id` took, by step (its own start and end times)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    parent = client.get_run(parent_run_id)
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_run_id}'", max_results=100
    )
    return {
        run.data.tags.get("mlflow.project.entryPoint", run.info.run_name.split()[-1]): (
            run.info.end_time - run.info.start_time
        )
        / 1000
        for run in children
    }


def newest_parent(tracking_uri: str) -> str:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs(
        [experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=50
    )
    return next(run.info.run_id for run in runs if "mlflow.parentRunId" not in run.data.tags)


def pipeline_run(name: str, options: list[str], env: dict[str, str]) -> dict[str, float]:
    """One `python main.py`: its wall seconds and each step's."""
    logger.info("Pipeline run: %s", name)
    seconds, _ = timed_command([sys.executable, "main.py", *options], env)
    steps = step_seconds(env["MLFLOW_TRACKING_URI"], newest_parent(env["MLFLOW_TRACKING_URI"]))
    return {"wall": seconds, **steps}


def in_process_run(options: list[str]) -> dict[str, float]:
    """The same work in one process (this script's --in-process mode) on a fresh store, timed from outside."""
    logger.info("In-process run")
    with tempfile.TemporaryDirectory(prefix="pipeline-benchmark-") as folder:
        command = [sys.executable, str(Path(__file__).resolve()), "--in-process", *options]
        seconds, stdout = timed_command(command, store_env(Path(folder)))
    return {"wall": seconds, **json.loads(stdout.strip().splitlines()[-1])}


def compared_runs(options: list[str], repeats: int) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Cold pipeline and in-process runs, interleaved `repeats` times (the median of each kept, as the
    machine's load drifts), then the second and fully reused runs on the last cold run's store."""
    colds, alones = [], []
    with tempfile.TemporaryDirectory(prefix="pipeline-benchmark-") as folder:
        for repeat in range(repeats):
            env = store_env(Path(folder) / str(repeat))
            colds.append(pipeline_run("cold", options, env))
            alones.append(in_process_run(options))
        runs = {
            "cold": median_run(colds),
            "second": pipeline_run("second", options, env),
            "fully reused": pipeline_run("fully reused", [*options, "--reuse-training"], env),
        }
    return runs, median_run(alones)


def median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """The run with the median wall time (its steps stay consistent with it)."""
    return sorted(runs, key=lambda run: run["wall"])[(len(runs) - 1) // 2]


def in_process(params: dict[str, str]) -> dict[str, float]:
    """Download, transform, train and register in this process, logged as the pipeline logs them."""
    import mlflow

    from flow_steps import download_raw_data, train_model, transform_data
    from flow_steps.config.entry_points import BY_ENTRY_POINT
    from flow_steps.config.names import (
        MODEL_ARTIFACT,
        TAG_CODE_VERSION,
        TRANSFORMED_DATA_PATH,
        raw_data_path,
        registered_model_name,
    )
    from flow_steps.config.values import PriceChecks, Registration, TrainParams
    from flow_steps.deployment.registration import register
    from flow_steps.runtime.lifecycle import mark_training_experiment
    from flow_steps.runtime.lineage import code_version

    spec = {param.name: param for param in BY_ENTRY_POINT["main"].params}
    value = {
        name: spec[name].python_type(text) if spec[name].kind != "bool" else text
        for name, text in params.items()
    }
    checks = PriceChecks(**{name: value[name] for name in PriceChecks.__dataclass_fields__})
    train_params = TrainParams(**{name: value[name] for name in TrainParams.__dataclass_fields__})
    ticker = str(value["company_abbreviation"]).upper()
    seconds: dict[str, float] = {}

    def step(name: str, step_params: dict[str, object], work) -> str:
        started = time.perf_counter()
        with mlflow.start_run(run_name=f"{ticker} {name}", nested=True) as run:
            mark_training_experiment(run.info.experiment_id)
            mlflow.set_tags({TAG_CODE_VERSION: code_version(), "mlflow.project.entryPoint": name})
            mlflow.log_params(step_params)
            work()
        seconds[name] = time.perf_counter() - started
        return run.info.run_id

    mlflow.set_experiment(EXPERIMENT)
    with mlflow.start_run(run_name="in-process pipeline"):
        source = {k: value[k] for k in ("company_abbreviation", "data_source", "quandl_database")}
        download = step(DOWNLOAD_STEP, source, lambda: download_raw_data.download(*source.values(), checks))
        raw = mlflow.artifacts.download_artifacts(f"runs:/{download}/{raw_data_path(ticker)}")
        limit = int(value["max_row_limit"])
        transform = step(
            TRANSFORM_STEP,
            {"dataset_stock_csv": raw, "max_row_limit": limit},
            lambda: transform_data.transform(raw, limit, checks),
        )
        prepared = mlflow.artifacts.download_artifacts(f"runs:/{transform}/{TRANSFORMED_DATA_PATH}")
        train = step(
            TRAIN_STEP,
            {"stock_data": prepared, **vars(train_params)},
            lambda: train_model.train(prepared, train_params),
        )
        model_uri = f"runs:/{train}/{MODEL_ARTIFACT}"
        step(
            REGISTER_STEP,
            {"model_uri": model_uri, "stock_data": prepared, "test_fraction": train_params.test_fraction},
            lambda: register(
                model_uri, prepared, Registration(registered_model_name(ticker), train_params.test_fraction)
            ),
        )
    return seconds


def import_seconds(module: str, repeats: int = 3) -> float:
    """Median wall seconds of a fresh interpreter that imports `module` (start-up included)."""
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"import {module}"], cwd=PROJECT_ROOT, check=True)
        runs.append(time.perf_counter() - started)
    return statistics.median(runs)


def lookup_times(counts: list[int], repeats: int = 20) -> dict[int, float]:
    """Median ms of the driver's reuse look-up with N finished download runs in a SQLite store."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    from flow_steps.config.names import SAMPLE_SOURCE, TAG_CODE_VERSION
    from flow_steps.orchestration.steps import StepRunner

    results = {}
    with tempfile.TemporaryDirectory(prefix="lookup-benchmark-") as folder:
        client = MlflowClient(f"sqlite:///{Path(folder) / 'mlflow.db'}")
        experiment_id = client.create_experiment(EXPERIMENT)
        parent = client.create_run(experiment_id)
        runner = StepRunner(client, parent, "src-benchmark", "MSFT")
        params = {"company_abbreviation": "MSFT", "data_source": SAMPLE_SOURCE, "quandl_database": "WIKI"}
        created = 0
        for count in sorted(counts):
            logger.info("Look-up: creating runs up to %d", count)
            while created < count:
                # Other tickers and code versions, as a store that has been used for a while holds.
                run = client.create_run(experiment_id)
                tags = [
                    RunTag("mlflow.project.entryPoint", DOWNLOAD_STEP),
                    RunTag(TAG_CODE_VERSION, f"src-{created % 50}"),
                ]
                run_params = [
                    Param(name, f"T{created % 500}" if name == "company_abbreviation" else value)
                    for name, value in params.items()
                ]
                client.log_batch(run.info.run_id, [Metric("rows", 1.0, 0, 0)], run_params, tags)
                client.set_terminated(run.info.run_id, "FINISHED")
                created += 1
            durations = []
            for _ in range(repeats):
                started = time.perf_counter()
                runner.find_finished(DOWNLOAD_STEP, params, {})
                durations.append((time.perf_counter() - started) * 1000)
            results[count] = statistics.median(durations)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, help="train_model's epochs (default: the pipeline's)")
    parser.add_argument(
        "--max-row-limit", type=int, help="transform_data's row limit (default: the pipeline's)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="cold and in-process runs, interleaved")
    parser.add_argument("--lookup-runs", type=int, nargs="*", default=[10, 1000, 10000])
    parser.add_argument("--skip-pipeline", action="store_true", help="only the look-up")
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from flow_steps.config.entry_points import BY_ENTRY_POINT

    params = {param.name: param.text(param.default) for param in BY_ENTRY_POINT["main"].params}
    options = []
    for name in ("epochs", "max_row_limit"):
        if getattr(arguments, name) is not None:
            params[name] = str(getattr(arguments, name))
            options += [f"--{name.replace('_', '-')}", params[name]]

    if arguments.in_process:
        logging.getLogger().setLevel(logging.WARNING)
        print(json.dumps(in_process(params)))
        return

    rows = []
    if not arguments.skip_pipeline:
        runs, alone = compared_runs(options, arguments.repeats)
        imports = {step: import_seconds(module) for step, module in STEP_MODULES.items()}
        imports["interpreter"] = import_seconds("sys")
        imports["main"] = import_seconds("main")
        print_pipeline_tables(runs, alone, imports)
        rows += [
            ("pipeline / in-process", runs["cold"]["wall"] / alone["wall"]),
            ("fully reused / cold", runs["fully reused"]["wall"] / runs["cold"]["wall"]),
        ]
    if arguments.lookup_runs:
        lookups = lookup_times(arguments.lookup_runs)
        print("\nReuse look-up (SQLite), median of 20:")
        print(pd.Series({f"{count:,} runs": f"{ms:.1f} ms" for count, ms in lookups.items()}).to_string())
        if 10000 in lookups:
            rows.append(("look-up ms at 10,000 runs", lookups[10000]))
    if rows:
        print("\nTargets:")
        for name, value in rows:
            target = TARGETS[name]
            verdict = "met" if value <= target else "NOT met"
            print(f"  {name:<28} {value:8.3f}   target <= {target:g}   {verdict}")


def print_pipeline_tables(runs: dict, alone: dict, imports: dict[str, float]) -> None:
    """Wall and step seconds per run, and the per-step profile."""
    table = pd.DataFrame(
        {
            name: {"wall": run["wall"], **{step: run.get(step, 0.0) for step in STEPS}}
            for name, run in runs.items()
        }
    )
    table["in-process"] = {"wall": alone["wall"], **{step: alone.get(step, 0.0) for step in STEPS}}
    print("\nSeconds (steps: their runs' own start to end; 0 = reused, nothing launched):")
    print(table.round(1).to_string())
    cold = runs["cold"]
    driver = cold["wall"] - sum(cold.get(step, 0.0) for step in STEPS)
    profile = pd.DataFrame(
        {
            step: {
                "pipeline step": cold.get(step, 0.0),
                "start + imports": imports[step],
                "work + logging (in process)": alone.get(step, 0.0),
                "other overhead": cold.get(step, 0.0) - imports[step] - alone.get(step, 0.0),
            }
            for step in STEPS
        }
    ).T
    print(f"\nProfile of the cold run (seconds; interpreter alone {imports['interpreter']:.2f} s):")
    print(profile.round(2).to_string())
    print(
        f"driver (main.py: start + imports {imports['main']:.2f} s, searches, launching steps): "
        f"{driver:.1f} s of the cold run's {cold['wall']:.1f} s"
    )


if __name__ == "__main__":
    main()
