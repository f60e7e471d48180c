"""The real pipeline: `mlflow run .` and `python main.py` on a temporary tracking store."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from mlflow.entities import Run

from flow_steps import train_model
from flow_steps.config.entry_points import BY_ENTRY_POINT
from flow_steps.config.names import (
    BACKTEST_PATH,
    DOWNLOAD_STEP,
    FORECAST_PLOT_PATH,
    INTERVAL_METHODS,
    METRICS_TABLE_PATH,
    MODEL_ARTIFACT,
    PREDICTIONS_PATH,
    REGISTER_STEP,
    SCORED_FROM_TRAINING,
    TAG_CHALLENGER_SCORE_SOURCE,
    TAG_CODE_VERSION,
    TAG_ERROR,
    TAG_RAW_SHA256,
    TRAIN_STEP,
    TRANSFORM_STEP,
    TRANSFORMED_DATA_PATH,
)
from flow_steps.data.sources import SAMPLE_FILE
from flow_steps.deployment.packaging import served_code_files
from flow_steps.deployment.prediction import request_prices
from flow_steps.deployment.scoring import holdout_days, score
from flow_steps.model.adaptive import ANSWER_INTERVAL_COLUMNS, DEFAULT_INTERVALS, answer_columns
from flow_steps.runtime.inputs import read_prepared
from flow_steps.runtime.lineage import PROJECT_ROOT, RUNNING_CODE
from flow_steps.training.evaluation import BASELINES, STATISTICAL_PEERS
from tests.conftest import EXPERIMENT, FIXTURES, TINY_PARAMS, cli_options, python_main, run_command
from tests.support.helpers import mlflow_run, newest


def assert_chained(tracking, parent, registered: bool = False) -> dict:
    """FINISHED children of `parent`, each consuming the previous one's artifact URI."""
    children = tracking.children(parent)
    assert set(children) == {DOWNLOAD_STEP, TRANSFORM_STEP, TRAIN_STEP} | (
        {REGISTER_STEP} if registered else set()
    )
    assert all(run.info.status == "FINISHED" for run in children.values())
    download, transform, train = children[DOWNLOAD_STEP], children[TRANSFORM_STEP], children[TRAIN_STEP]
    assert transform.data.params["dataset_stock_csv"] == f"{download.info.artifact_uri}/raw-data/MSFT.csv"
    assert train.data.params["stock_data"] == f"{transform.info.artifact_uri}/{TRANSFORMED_DATA_PATH}"
    if registered:
        register = children[REGISTER_STEP]
        assert register.data.params["model_uri"] == f"runs:/{train.info.run_id}/{MODEL_ARTIFACT}"
        assert register.data.params["stock_data"] == train.data.params["stock_data"]
    for run in children.values():
        assert run.info.run_name == f"MSFT {run.data.tags['mlflow.project.entryPoint']}"
        assert run.data.tags[TAG_CODE_VERSION] == parent.data.tags[TAG_CODE_VERSION]
    return children


REGISTER_AND_REPORT_TENSORFLOW = """
import sys
from flow_steps import register_model
try:
    register_model.cli.main(sys.argv[1:], standalone_mode=False)
finally:
    print("tensorflow loaded:", "tensorflow" in sys.modules)
"""


def register_arguments(register: Run) -> list[str]:
    """The command-line options of a register_model run, from its logged parameters."""
    return cli_options(
        {name: register.data.params[name] for name in ("model_uri", "stock_data", "model_name")}
    )


def interval(answer: pd.DataFrame, method: str, level: int) -> tuple[float, float]:
    """The first row's interval of one way (static or adaptive) at `level`."""
    lower, upper = answer_columns(method, level)
    return answer[lower].item(), answer[upper].item()


def test_mlflow_run_chains_the_steps_and_registers_a_model_that_serves_any_price_level(tracking):
    params = {**TINY_PARAMS, "lstm_units": "6", "backtest_folds": "2", "register_model": "true"}
    result = run_command(mlflow_run(params, experiment=EXPERIMENT), tracking.env)
    assert result.returncode == 0, result.stderr[-3000:]
    # A readable console: training reports its progress, and a machine without a GPU logs no error.
    assert "flow_steps.training.lstm: epoch 1/1: train loss" in result.stderr
    assert "kept the best, epoch 1 (validation loss" in result.stderr
    assert not re.findall(r"^E\d{4} |\bERROR\b|Traceback", result.stderr, flags=re.MULTILINE)

    [parent] = tracking.parents()
    assert parent.info.status == "FINISHED"
    assert parent.data.params["lstm_units"] == "6"
    # Runs a person can tell apart in `mlflow ui`, in an experiment its UI opens on training runs.
    assert parent.info.run_name == ("MSFT max_row_limit=300 lstm_units=6 window=10 epochs=1 backtest_folds=2")
    experiment = tracking.client.get_experiment(tracking.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    children = assert_chained(tracking, parent, registered=True)
    train = children[TRAIN_STEP]
    assert train.data.params["lstm_units"] == "6"
    # What each model learnt from, as MLflow dataset inputs whose source is the artifact they came from.
    [trained_on] = train.inputs.dataset_inputs
    assert trained_on.dataset.name == "MSFT prices"
    assert json.loads(trained_on.dataset.source)["uri"] == train.data.params["stock_data"]
    assert [tag.value for tag in trained_on.tags if tag.key == "mlflow.data.context"] == ["training"]
    [raw_input] = children[TRANSFORM_STEP].inputs.dataset_inputs
    assert (
        json.loads(raw_input.dataset.source)["uri"]
        == children[TRANSFORM_STEP].data.params["dataset_stock_csv"]
    )
    assert raw_input.dataset.digest and trained_on.dataset.digest != raw_input.dataset.digest
    assert train.data.params["window"] == "10"
    metrics = train.data.metrics
    for prefix in ("", "naive_", "moving_average_", "linear_regression_", "knn_", "autoarima_", "autoets_"):
        for name in ("rmse", "mae", "mape", "mase", "directional_accuracy"):
            assert f"{prefix}test_{name}" in metrics
    for prefix in ("", "naive_", "autoets_"):  # intervals: the LSTM's, the constant baseline's, AutoETS's
        for name in ("coverage_80", "coverage_95", "interval_score_80", "interval_score_95"):
            assert f"{prefix}test_{name}" in metrics
    # The LSTM's intervals both ways, side by side; the unprefixed ones are the default way's.
    for way in INTERVAL_METHODS:
        for name in ("coverage_80", "coverage_95", "interval_score_80", "interval_score_95"):
            assert f"{way}_test_{name}" in metrics and f"backtest_{way}_test_{name}" in metrics
    assert metrics["test_coverage_80"] == metrics[f"{DEFAULT_INTERVALS}_test_coverage_80"]
    assert metrics["test_interval_score_95"] == metrics[f"{DEFAULT_INTERVALS}_test_interval_score_95"]
    assert metrics["autoarima_fit_seconds"] > 0 and metrics["train_seconds"] > 0
    assert metrics["test_rmse_vs_naive"] == pytest.approx(metrics["test_rmse"] / metrics["naive_test_rmse"])
    assert 0 <= metrics["test_up_share"] <= 1
    for name in ("train_loss", "val_loss"):
        assert len(tracking.client.get_metric_history(train.info.run_id, name)) == 1  # one epoch
    assert [m.step for m in tracking.client.get_metric_history(train.info.run_id, "fold_test_rmse")] == [0, 1]
    assert "backtest_test_rmse_vs_naive" in metrics
    assert parent.data.metrics["test_rmse_vs_naive"] == metrics["test_rmse_vs_naive"]
    assert children[DOWNLOAD_STEP].data.tags["raw_rows"] == str(len(pd.read_csv(SAMPLE_FILE)))
    assert parent.data.tags["model_uri"] == f"runs:/{train.info.run_id}/{MODEL_ARTIFACT}"

    prices = pd.read_csv(mlflow.artifacts.download_artifacts(f"{train.data.params['stock_data']}"))
    assert list(prices.columns) == ["Date", "Close"] and len(prices) == 300
    assert prices["Date"].is_monotonic_increasing
    predictions = pd.read_csv(
        mlflow.artifacts.download_artifacts(run_id=train.info.run_id, artifact_path=PREDICTIONS_PATH)
    )
    assert len(predictions) == train.data.metrics["n_test_days"] == 60
    assert list(predictions.columns) == [
        "Date",
        "actual",
        "lstm",
        *BASELINES,
        *STATISTICAL_PEERS,
        *(f"lstm_{column}" for column in ANSWER_INTERVAL_COLUMNS),
    ]
    table = pd.read_csv(
        mlflow.artifacts.download_artifacts(run_id=train.info.run_id, artifact_path=METRICS_TABLE_PATH)
    )
    assert table["model"].tolist() == ["lstm", *BASELINES, *STATISTICAL_PEERS]
    assert table.loc[table["model"] == "lstm", "rmse"].item() == pytest.approx(metrics["test_rmse"])
    assert table.loc[table["model"] == "lstm", "coverage_80"].item() == pytest.approx(
        metrics["test_coverage_80"]
    )
    folds = pd.read_csv(
        mlflow.artifacts.download_artifacts(run_id=train.info.run_id, artifact_path=BACKTEST_PATH)
    )
    models = ["lstm", *BASELINES, *STATISTICAL_PEERS]
    assert folds["fold"].tolist() == [fold for fold in range(int(params["backtest_folds"])) for _ in models]
    plot = Path(
        mlflow.artifacts.download_artifacts(run_id=train.info.run_id, artifact_path=FORECAST_PLOT_PATH)
    )
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The first registered version of the ticker's model becomes champion.
    version = tracking.client.get_model_version_by_alias("stock-MSFT-lstm", "champion")
    assert str(version.version) == "1" and version.run_id == train.info.run_id
    assert sorted(version.aliases) == ["challenger", "champion"]
    assert version.tags["promotion"] == "first_version"
    assert parent.data.tags["registered_model"] == "stock-MSFT-lstm"
    assert parent.data.tags["model_version"] == parent.data.tags["champion_version"] == "1"
    assert parent.data.tags["promotion"] == "first_version"
    # Tested on the same prices and days, the training run's score stands for the model's: register
    # took it instead of loading the model, and loading and scoring it gives the same RMSE.
    register = children[REGISTER_STEP]
    assert register.data.tags[TAG_CHALLENGER_SCORE_SOURCE] == SCORED_FROM_TRAINING
    # (the same squared errors, summed in another order after a CSV round trip: equal to the last bits)
    assert register.data.metrics["challenger_test_rmse"] == pytest.approx(metrics["test_rmse"], rel=1e-12)
    stock_data = mlflow.artifacts.download_artifacts(train.data.params["stock_data"])
    days = holdout_days(read_prepared(stock_data, "stock_data"), 0.2)
    assert score("models:/stock-MSFT-lstm/1", days).rmse == pytest.approx(metrics["test_rmse"], rel=1e-5)
    # Registering it again trains nothing and scores nothing: no TensorFlow start-up.
    again = run_command(
        [sys.executable, "-c", REGISTER_AND_REPORT_TENSORFLOW, *register_arguments(register)], tracking.env
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.strip().splitlines()[-1] == "tensorflow loaded: False"
    assert newest(tracking.runs_of_name(REGISTER_STEP)).data.tags["promotion"] == "already_registered"
    # The version's lineage reaches back through the parent run to the data.
    download = children[DOWNLOAD_STEP]
    assert version.tags[f"{DOWNLOAD_STEP}_run_id"] == download.info.run_id
    assert version.tags[f"{TRANSFORM_STEP}_run_id"] == children[TRANSFORM_STEP].info.run_id
    assert version.tags["raw_sha256"] == download.data.tags["raw_sha256"]
    assert version.tags["data_source_resolved"] == "sample:WIKI-MSFT.csv"
    # A registry page a person can read: a description, a one-line version description, few tags.
    assert not [name for name in version.tags if name.startswith(("metric.", "param."))]
    assert set(version.tags) == {  # the lineage, the decision, and that it showed no skill over naive
        "train_run_id",
        "code_version",
        "trained_through",
        f"{DOWNLOAD_STEP}_run_id",
        f"{TRANSFORM_STEP}_run_id",
        "data_source_resolved",
        "raw_sha256",
        "promotion",
        "no_skill_over_naive",
    }
    assert version.description.startswith(f"Test RMSE {metrics['test_rmse']:.4g} = ")
    assert "first_version: no champion yet" in version.description and "\n" not in version.description
    assert f"80%/95% intervals covered {metrics['test_coverage_80']:.1%}/" in version.description
    assert "forecasts the next trading days' closing prices" in (
        tracking.client.get_registered_model("stock-MSFT-lstm").description
    )
    logged = mlflow.get_logged_model(version.source.removeprefix("models:/"))
    assert logged.metrics and {m.key: m.value for m in logged.metrics}["test_rmse"] == metrics["test_rmse"]

    # The logged model ships the model/ folder and what it imports, and nothing else of the project.
    code = Path(mlflow.artifacts.download_artifacts(run_id=train.info.run_id, artifact_path="model/code"))
    shipped = sorted(path.relative_to(code / "flow_steps").as_posix() for path in code.rglob("*.py"))
    assert shipped == sorted(served_code_files())

    model = mlflow.pyfunc.load_model("models:/stock-MSFT-lstm@champion")
    assert model.metadata.get_input_schema().input_names() == ["Close"]
    # The interval multipliers calibrated in training travel, as logged, into the served model.
    assert model.unwrap_python_model().multipliers == {
        level: metrics[f"interval_multiplier_{level}"] for level in (80, 95)
    }
    # 300 real closes from 2016-2017, far above anything in the bundled 2000-2013 sample.
    later = pd.read_csv(FIXTURES / "EOD-MSFT.csv").sort_values("Date")["Adj_Close"].tail(300)
    assert later.min() > prices["Close"].max() * 1.5
    forecast = model.predict(pd.DataFrame({"Close": later.to_numpy()}))
    assert forecast["forecast_close"].item() == pytest.approx(later.iloc[-1], rel=0.05)
    assert forecast["lower_95"].item() < forecast["lower_80"].item() < forecast["forecast_close"].item()
    assert forecast["forecast_close"].item() < forecast["upper_80"].item() < forecast["upper_95"].item()
    # Its adaptive intervals start from the calibration scores it carries; after a run of misses in the
    # request's closes (moves growing 20% a day, ahead of any volatility estimate) they are wider than
    # the static ones; with no close beyond one window they are the static ones.
    served = model.unwrap_python_model()
    assert len(served.scores) >= 5 and model.model_config["trained_through"] == f"{prices['Date'].iloc[-61]}"
    storm = later.iloc[-1] * np.exp(np.cumsum([0.003 * 1.2**day * (-1) ** day for day in range(1, 26)]))
    stormy = model.predict(pd.DataFrame({"Close": [*later.to_numpy()[-10:], *storm]}))  # one window first
    widths = {
        way: np.log(interval(stormy, way, 80)[1] / interval(stormy, way, 80)[0]) for way in INTERVAL_METHODS
    }
    assert widths["adaptive"] > widths["static"]  # at 95% the static multiplier may be the largest score
    one_window = model.predict(pd.DataFrame({"Close": later.to_numpy()[-10:]}))
    for level in (80, 95):
        assert interval(one_window, "adaptive", level) == interval(one_window, "static", level)
    # A forecast sends the closes from one window before the first test day: none it was trained on.
    sent = request_prices(prices.assign(Date=pd.to_datetime(prices["Date"])), model.model_config)
    assert len(sent) == 60 + 10

    # Run again with --reuse-training (given alone): every step is reused, the registration too,
    # since that training run is already version 1; no step process is launched.
    runs_before = len(tracking.runs())
    again = python_main(tracking, *cli_options(params), "--reuse-training")
    assert again.returncode == 0, again.stderr[-3000:]
    reused = max(tracking.parents(), key=lambda run: run.info.start_time)
    assert len(tracking.runs()) == runs_before + 1  # the new parent run only
    assert reused.info.status == "FINISHED"
    assert all(reused.data.tags[f"reused_{step}"] == "true" for step in children)
    assert reused.data.tags["promotion"] == "already_registered"
    assert reused.data.tags["model_version"] == reused.data.tags["champion_version"] == "1"


def test_bad_price_file_fails_the_download_and_the_parent_with_one_line(tracking):
    path = tracking.folder / "no_price_column.csv"
    shutil.copy(FIXTURES / path.name, path)
    message = "no price column (expected one of"
    result = python_main(tracking, "--data-source", str(path), *cli_options(TINY_PARAMS))

    assert result.returncode == 1
    error_lines = [line for line in result.stderr.splitlines() if "ERROR" in line and message in line]
    assert len(error_lines) == 2, result.stderr[-3000:]  # the step's own line and the driver's
    [parent] = tracking.parents()
    assert parent.info.status == "FAILED"
    assert message in parent.data.tags[TAG_ERROR]
    [download] = tracking.runs_of(DOWNLOAD_STEP)
    assert download.info.status == "FAILED"
    assert message in download.data.tags[TAG_ERROR]
    assert tracking.runs_of(TRANSFORM_STEP) == [] and tracking.runs_of(TRAIN_STEP) == []


def test_each_step_documents_its_options(tracking):
    for step in ("download_raw_data", "transform_data"):  # the steps that start without TensorFlow
        result = run_command([sys.executable, "-m", f"flow_steps.{step}", "--help"], tracking.env)
        assert result.returncode == 0 and result.stdout.startswith(
            f"Usage: python -m flow_steps.{step} [OPTIONS]"
        )
        for param in BY_ENTRY_POINT[step].params:
            assert param.flag in result.stdout and param.help.split()[0] in result.stdout, param.name
    help_text = CliRunner().invoke(train_model.cli, ["--help"]).output
    assert "--stock-data" in help_text and "--backtest-folds" in help_text


def copy_of_the_project(folder: Path) -> Path:
    """The running code (flow_steps, main.py, MLproject and its conda.yml) in `folder`, to edit there."""
    for name in (*RUNNING_CODE, "conda.yml"):
        source = PROJECT_ROOT / name
        if source.is_dir():
            shutil.copytree(source, folder / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, folder / name)
    return folder


def test_reuse_follows_the_file_content_and_the_code_through_the_driver(tracking, tmp_path):
    """`python main.py --reuse-training` on a local CSV: an unchanged file and code reuse every step; an
    edit of the running code reuses nothing; a changed file is downloaded again, so it is transformed
    and trained again, while the unchanged code is still the same version."""
    project = copy_of_the_project(tmp_path / "project")
    prices = tmp_path / "prices.csv"
    shutil.copy(SAMPLE_FILE, prices)
    options = [*cli_options(TINY_PARAMS), "--data-source", str(prices), "--reuse-training"]

    def pipeline(name: str) -> dict[str, str]:
        command = [sys.executable, "main.py", *options, "--run-name", name]
        result = subprocess.run(command, cwd=project, env=tracking.env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-3000:]
        [parent] = tracking.runs_of_name(name)
        return {
            step: parent.data.tags[f"reused_{step}"] for step in (DOWNLOAD_STEP, TRANSFORM_STEP, TRAIN_STEP)
        }

    nothing = dict.fromkeys((DOWNLOAD_STEP, TRANSFORM_STEP, TRAIN_STEP), "false")
    everything = dict.fromkeys(nothing, "true")
    assert pipeline("first") == nothing
    assert pipeline("same file, same code") == everything

    with (project / "flow_steps" / "transform_data.py").open("a") as source:
        source.write("\n# an edit: the code version changes\n")
    assert pipeline("edited code") == nothing

    prices.write_text("".join(prices.read_text().splitlines(keepends=True)[:-1]))  # one day fewer
    assert pipeline("changed file") == nothing
    [edited, changed] = (tracking.runs_of_name(name)[0] for name in ("edited code", "changed file"))
    assert edited.data.tags[TAG_CODE_VERSION] == changed.data.tags[TAG_CODE_VERSION]
    downloads = {run.data.tags[TAG_RAW_SHA256] for run in tracking.runs_of(DOWNLOAD_STEP)}
    assert len(downloads) == 2  # the same file twice, then its new content
