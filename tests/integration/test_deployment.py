"""Deployment: the Model Registry's champion/challenger, the served REST model and the forecast command.

One temporary store for the module: five models of known RMSE registered in a row (worse, better, worse
again, the same as the champion, the champion nudged), then `mlflow models serve` on the champion and the
forecast command. Promotion by evidence has its own models: one with a real edge on prices that drift,
and LSTMs trained with different seeds.
"""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from deploy.local_serving import invocation_payload, served_model
from flow_steps import download_raw_data, forecast, register_model, train_model, transform_data
from flow_steps.config.names import (
    DOWNLOAD_STEP,
    FORECAST_ENTRY_POINT,
    FORECAST_TABLE_PATH,
    KEPT,
    MAX_HORIZON,
    METRIC_CHAMPION_TEST_RMSE,
    REGISTER_STEP,
    SCORED_FROM_TRAINING,
    SCORED_HERE,
    TAG_CHALLENGER_SCORE_SOURCE,
    TAG_CHAMPION_SAW_TEST_DAYS,
    TAG_CHAMPION_SCORE_SOURCE,
    TAG_ERROR,
    TRAIN_STEP,
    TRANSFORM_STEP,
    TRANSFORMED_DATA_PATH,
)
from flow_steps.data.ingest import load_prices
from flow_steps.data.sources import fetch_raw_prices
from flow_steps.deployment.scoring import holdout_days
from flow_steps.model.intervals import INTERVAL_COLUMNS
from flow_steps.runtime.inputs import read_prepared
from flow_steps.training.evaluation import rmse
from tests.conftest import (
    EXPERIMENT,
    FIXTURES,
    TINY_PARAMS,
    invoke_step,
    run_command,
    temporary_tracking,
)
from tests.support.helpers import mlflow_run, newest
from tests.support.known_models import BETTER, MULTIPLIERS, NUDGED, WORSE, register

# One worker for the whole file: its module-scoped fixture is set up once.
pytestmark = [pytest.mark.xdist_group("test_deployment")]

MODEL = "stock-MSFT-lstm"
CHAMPION = f"models:/{MODEL}@champion"
# Registered in this order: worse, better, worse again, the same as the champion, the champion nudged.
SEQUENCE = (WORSE, BETTER, WORSE, BETTER, NUDGED)


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """Five registrations in a row: worse, better, worse again, the same as the champion, nudged.

    The models' forecasts are known by construction, so the outcome does not depend on training
    numerics; the full training path is covered by test_pipeline's `mlflow run` test. The steps run in
    this process (click's runner), which spares each a TensorFlow start-up.
    """
    with (
        temporary_tracking(tmp_path_factory.mktemp("registry")) as tracking,
        pytest.MonkeyPatch.context() as env,
    ):
        env.setenv("MLFLOW_EXPERIMENT_NAME", EXPERIMENT)
        env.delenv("MLFLOW_RUN_ID", raising=False)
        # Run alone, each step prints its output's URI, and the next step takes that URI as it is.
        raw = invoke_step(download_raw_data.cli)
        download = newest(tracking.runs_of_name(DOWNLOAD_STEP))
        assert raw == f"{download.info.artifact_uri}/raw-data/MSFT.csv"
        prepared = invoke_step(
            transform_data.cli, "--dataset-stock-csv", raw, "--max-row-limit", TINY_PARAMS["max_row_limit"]
        )
        transform = newest(tracking.runs_of_name(TRANSFORM_STEP))
        assert transform.data.params["dataset_stock_csv"] == raw
        assert prepared == f"{transform.info.artifact_uri}/{TRANSFORMED_DATA_PATH}"
        stock_data = mlflow.artifacts.download_artifacts(prepared)
        mlflow.set_experiment(EXPERIMENT)
        yield tracking, [register(tracking.client, stock_data, c, MODEL) for c in SEQUENCE]


def test_the_first_version_becomes_champion_with_its_metrics_and_lineage(registry):
    tracking, [first, *_] = registry
    assert first.decision == "first_version"
    version = tracking.client.get_model_version(MODEL, "1")
    tags, train = version.tags, first.train
    assert version.run_id == train.info.run_id
    # The model's scores are the logged model's metrics, as train_model logged them.
    scores = {
        metric.key: metric.value
        for metric in mlflow.get_logged_model(version.source.removeprefix("models:/")).metrics
    }
    assert scores["test_rmse"] == first.expected_rmse
    assert scores["naive_test_rmse"] == train.data.metrics["naive_test_rmse"]
    # Scored through the registry, on the days training held out: the RMSE known by construction.
    assert first.register.data.metrics["challenger_test_rmse"] == pytest.approx(first.expected_rmse, rel=1e-9)
    assert tags["train_run_id"] == train.info.run_id
    assert tags["code_version"] == train.data.tags["code_version"]
    prices = read_prepared(train.data.params["stock_data"], "stock_data")
    n_test = holdout_days(prices, 0.2).n_test
    test_days = prices["Date"].iloc[-n_test:].dt.strftime("%Y-%m-%d")
    assert tags["trained_through"] == prices["Date"].iloc[-n_test - 1].strftime("%Y-%m-%d")
    # One line that says how good it is, on which days, and what the registry decided: a 1% rise a day
    # has no skill over the naive forecast, and the version says so (a tag, the description, the run).
    ratio = first.expected_rmse / train.data.metrics["naive_test_rmse"]
    skill_p = first.register.data.metrics["skill_p_value"]
    assert skill_p > 0.05 and first.register.data.metrics["skill_improvement"] < 0
    assert version.description == (
        f"Test RMSE {first.expected_rmse:.4g} = {ratio:.3f} x naive (skill test p={skill_p:.3g}) over "
        f"{n_test} days {test_days.iloc[0]}..{test_days.iloc[-1]}; trained through "
        f"{tags['trained_through']}; first_version: no champion yet: the first version becomes champion, "
        "with no evidence of skill over the naive forecast"
    )
    assert tags["no_skill_over_naive"] == "true" and first.register.data.tags["no_skill_over_naive"] == "true"
    assert "promotion_p_value" not in first.register.data.metrics  # no champion to test against


def test_a_better_model_takes_the_champion_alias(registry):
    tracking, [first, second, *_] = registry
    metrics = second.register.data.metrics
    # The champion was scored again on the new model's test days (here the same days as its own).
    assert metrics["champion_test_rmse"] == pytest.approx(first.expected_rmse, rel=1e-9)
    assert metrics["challenger_test_rmse"] == pytest.approx(second.expected_rmse, rel=1e-9)
    assert metrics["challenger_test_rmse"] == pytest.approx(metrics["naive_test_rmse"], rel=1e-12)
    # By evidence: significantly (one-sided Diebold-Mariano) and practically (at least 0.5%) better.
    assert metrics["promotion_p_value"] <= 0.05 and metrics["promotion_dm_statistic"] < 0
    assert metrics["promotion_improvement"] == pytest.approx(
        1 - second.expected_rmse / first.expected_rmse, rel=1e-9
    )
    assert metrics["promotion_improvement"] >= 0.005 and metrics["promotion_mean_loss_difference"] < 0
    assert metrics["promotion_interval_p_value"] > 0.05  # its intervals are the same width: not worse
    assert second.decision == "promoted"
    assert second.register.data.tags["promotion_reason"].startswith("better than the champion: RMSE ")
    assert second.register.data.tags["champion_version_before"] == "1"
    assert "champion_saw_test_days" not in second.register.data.tags  # trained on days before them
    assert tracking.client.get_model_version(MODEL, "2").tags["promotion"] == "promoted"


def test_a_worse_model_stays_challenger(registry):
    tracking, [_, second, third, *_] = registry
    metrics = third.register.data.metrics
    assert metrics["champion_test_rmse"] == pytest.approx(second.expected_rmse, rel=1e-9)
    assert metrics["challenger_test_rmse"] == pytest.approx(third.expected_rmse, rel=1e-9)
    assert third.decision == "kept"
    reason = third.register.data.tags["promotion_reason"]
    assert reason.startswith("not better enough than the champion: RMSE ")
    assert "against champion version 2's" in reason and "higher, under min_improvement 0.50%" in reason
    assert metrics["promotion_p_value"] > 0.5  # one-sided: far from evidence in its favour
    assert f"kept: {reason}" in tracking.client.get_model_version(MODEL, "3").description


def test_a_model_that_only_ties_the_champion_stays_challenger(registry):
    tracking, [_, second, _, fourth, _] = registry
    metrics = fourth.register.data.metrics
    assert metrics["challenger_test_rmse"] == metrics["champion_test_rmse"]
    assert (metrics["promotion_p_value"], metrics["promotion_improvement"]) == (1.0, 0.0)  # no evidence
    assert fourth.decision == "kept"
    assert "these test days cannot tell it apart from luck" in fourth.register.data.tags["promotion_reason"]
    assert tracking.client.get_model_version_by_alias(MODEL, "champion").version == 2
    assert tracking.client.get_model_version(MODEL, "1").aliases == []


def test_a_nudged_champion_is_not_promoted_on_a_difference_too_small_to_matter(registry):
    """The naive forecast nudged up 0.02% a day: its RMSE differs from the champion's by far less than
    min_improvement, whatever the test says."""
    tracking, [*_, fifth] = registry
    metrics = fifth.register.data.metrics
    assert abs(metrics["promotion_improvement"]) < 0.005
    assert (
        fifth.decision == "kept"
        and "under min_improvement 0.50%" in fifth.register.data.tags["promotion_reason"]
    )
    assert tracking.client.get_model_version_by_alias(MODEL, "champion").version == 2
    assert tracking.client.get_model_version_by_alias(MODEL, "challenger").version == 5


def test_registering_the_same_training_run_again_adds_no_version(registry):
    tracking, [first, *_] = registry
    stock_data = first.train.data.params["stock_data"]
    model_uri = f"runs:/{first.train.info.run_id}/model"
    result = CliRunner().invoke(
        register_model.cli, ["--model-uri", model_uri, "--stock-data", stock_data, "--model-name", MODEL]
    )
    assert result.exit_code == 0, result.output
    again = max(tracking.runs_of_name(REGISTER_STEP), key=lambda run: run.info.start_time)
    assert again.data.tags["promotion"] == "already_registered"
    assert again.data.tags["model_version"] == "1"
    assert len(tracking.client.search_model_versions(f"name = '{MODEL}'")) == len(SEQUENCE)
    assert tracking.client.get_model_version_by_alias(MODEL, "champion").version == 2
    assert tracking.client.get_model_version_by_alias(MODEL, "challenger").version == len(SEQUENCE)


def test_registering_something_that_is_not_a_training_run_fails_the_step(registry):
    tracking, [first, *_] = registry
    stock_data = first.train.data.params["stock_data"]
    result = CliRunner().invoke(
        register_model.cli,
        ["--model-uri", "models:/elsewhere/1", "--stock-data", stock_data, "--model-name", MODEL],
    )
    assert result.exit_code == 1
    [failed] = tracking.runs("attributes.status = 'FAILED'")
    assert "model_uri 'models:/elsewhere/1' is not a runs:/<run id>/<path> URI" in failed.data.tags[TAG_ERROR]
    assert tracking.client.get_model_version_by_alias(MODEL, "champion").version == 2


def test_a_champion_is_scored_again_on_other_days_and_flagged_when_it_trained_on_them(registry, tmp_path):
    """A champion scored on its own test days takes its training run's score; on another file's test
    days (here earlier ones, inside its own training days) it is loaded and scored there, by hand's
    numbers, and the register run says it saw those days."""
    tracking, [first, *_] = registry
    stock_data, name = first.train.data.params["stock_data"], "scored-elsewhere"
    champion = register(tracking.client, stock_data, BETTER, name, as_trained=True)
    assert champion.register.data.tags[TAG_CHALLENGER_SCORE_SOURCE] == SCORED_FROM_TRAINING
    same_days = register(tracking.client, stock_data, WORSE, name, as_trained=True)
    assert same_days.register.data.tags[TAG_CHAMPION_SCORE_SOURCE] == SCORED_FROM_TRAINING
    assert TAG_CHAMPION_SAW_TEST_DAYS not in same_days.register.data.tags

    prices = read_prepared(stock_data, "stock_data")
    days = holdout_days(prices, 0.2)
    earlier = tmp_path / "earlier.csv"  # the champion's training days only: it saw every test day
    prices.iloc[: -days.n_test].to_csv(earlier, index=False, date_format="%Y-%m-%d")
    elsewhere = register(tracking.client, str(earlier), WORSE, name)
    tags, metrics = elsewhere.register.data.tags, elsewhere.register.data.metrics
    assert tags[TAG_CHALLENGER_SCORE_SOURCE] == tags[TAG_CHAMPION_SCORE_SOURCE] == SCORED_HERE
    assert tags[TAG_CHAMPION_SAW_TEST_DAYS] == "true"
    other = holdout_days(read_prepared(str(earlier), "stock_data"), 0.2)
    naive = rmse(other.actual, other.closes[-other.n_test - 1 : -1])  # BETTER is the naive forecast
    assert metrics[METRIC_CHAMPION_TEST_RMSE] == pytest.approx(naive, rel=1e-9)
    assert elsewhere.decision == KEPT


def drifting_prices(path) -> str:
    """300 business days of prices that rise 1% a day, give or take 0.5%: a 1% rise a day (WORSE on
    real prices) has a real edge over the naive forecast on them."""
    rng = np.random.default_rng(7)
    closes = 50 * np.exp(np.cumsum(0.01 + 0.005 * rng.standard_normal(300)))
    pd.DataFrame({"Date": pd.bdate_range("2015-01-01", periods=300), "Close": closes}).to_csv(
        path, index=False, date_format="%Y-%m-%d"
    )
    return str(path)


def test_a_challenger_with_a_real_edge_is_promoted_by_evidence(registry, tmp_path):
    """On drifting prices the naive champion (no skill over itself: tagged) gives way to the drift model,
    with a p-value far below promotion_alpha; asked for a 99% improvement, the same model is kept."""
    tracking, _ = registry
    stock_data, name = drifting_prices(tmp_path / "drift.csv"), "drift"
    naive = register(tracking.client, stock_data, BETTER, name)
    assert naive.decision == "first_version"
    assert naive.register.data.metrics["skill_p_value"] == 1.0  # it is the naive forecast: no evidence
    assert tracking.client.get_model_version(name, "1").tags["no_skill_over_naive"] == "true"

    asked_too_much = register(
        tracking.client, stock_data, WORSE, name, False, MULTIPLIERS, "--min-improvement", "0.99"
    )
    assert asked_too_much.decision == KEPT
    assert asked_too_much.register.data.params["min_improvement"] == "0.99"
    assert "under min_improvement 99.00%" in asked_too_much.register.data.tags["promotion_reason"]

    edge = register(tracking.client, stock_data, WORSE, name)
    metrics = edge.register.data.metrics
    assert edge.decision == "promoted"
    assert metrics["promotion_p_value"] < 1e-6 and metrics["promotion_improvement"] > 0.5
    assert metrics["promotion_interval_p_value"] > 0.05
    assert metrics["skill_p_value"] < 1e-6  # and skill over naive: no tag
    assert "no_skill_over_naive" not in tracking.client.get_model_version(name, "3").tags
    assert tracking.client.get_model_version_by_alias(name, "champion").version == 3
    description = tracking.client.get_model_version(name, "3").description
    assert "promoted: better than the champion: RMSE " in description
    assert "Diebold-Mariano p=" in description and "<= promotion_alpha 0.05" in description


def test_the_same_lstm_trained_with_other_seeds_is_not_promoted_on_noise(registry):
    """Three seeds, the same data and parameters: a version is promoted only with the evidence the rule
    asks for (measured 2026-12-06 on these 60 test days: none was)."""
    tracking, [first, *_] = registry
    stock_data, name = first.train.data.params["stock_data"], "seeds"
    params = ["--window", "10", "--lstm-units", "8", "--epochs", "2", "--batch-size", "32"]
    decisions = []
    for seed in ("1", "2", "3"):
        invoke_step(train_model.cli, "--stock-data", stock_data, *params, "--seed", seed)
        train = newest(tracking.runs_of_name(TRAIN_STEP))
        arguments = ["--model-uri", f"runs:/{train.info.run_id}/model", "--stock-data", stock_data]
        result = CliRunner().invoke(register_model.cli, [*arguments, "--model-name", name])
        assert result.exit_code == 0, result.output
        run = newest(tracking.runs_of_name(REGISTER_STEP))
        assert run.data.tags[TAG_CHALLENGER_SCORE_SOURCE] == SCORED_FROM_TRAINING  # its test predictions
        decisions.append(run.data.tags["promotion"])
        if run.data.tags["promotion"] == "promoted":
            assert run.data.metrics["promotion_p_value"] <= 0.05
            assert run.data.metrics["promotion_improvement"] >= 0.005
        elif run.data.tags["promotion"] == KEPT:
            metrics = run.data.metrics
            assert metrics["promotion_p_value"] > 0.05 or metrics["promotion_improvement"] < 0.005
    assert decisions == ["first_version", KEPT, KEPT]


@pytest.fixture(scope="module")
def served_champion(registry):
    tracking, _ = registry
    with served_model(CHAMPION, env=tracking.env) as served:
        yield served


@pytest.fixture(scope="module")
def later_closes() -> list[float]:
    """2016-2017 closes, far above anything the models were trained on."""
    return pd.read_csv(FIXTURES / "EOD-MSFT.csv").sort_values("Date")["Adj_Close"].tail(30).tolist()


def test_the_served_champion_answers_like_the_loaded_model(registry, served_champion, later_closes):
    local = mlflow.pyfunc.load_model(CHAMPION)
    frame = pd.DataFrame({"Close": later_closes})

    answer = served_champion.invoke(invocation_payload(later_closes))
    assert answer.status_code == 200, answer.text
    [row] = answer.json()["predictions"]
    assert row["days_ahead"] == 1
    assert row["forecast_close"] == pytest.approx(local.predict(frame)["forecast_close"].item(), rel=1e-6)

    answer = served_champion.invoke(invocation_payload(later_closes, horizon=5))
    assert answer.status_code == 200, answer.text
    served = pd.DataFrame(answer.json()["predictions"])
    expected = local.predict(frame, params={"horizon": 5})
    assert served["days_ahead"].tolist() == [1, 2, 3, 4, 5]
    np.testing.assert_allclose(served["forecast_close"], expected["forecast_close"], rtol=1e-6)
    assert served["forecast_close"].iloc[0] == pytest.approx(row["forecast_close"], rel=1e-9)
    # The 80% and 95% intervals travel with the forecast, widening with the days ahead.
    for column in INTERVAL_COLUMNS:
        np.testing.assert_allclose(served[column], expected[column], rtol=1e-6)
    assert (served["lower_95"] < served["lower_80"]).all() and (served["upper_80"] < served["upper_95"]).all()
    assert served["lower_80"].iloc[0] < served["forecast_close"].iloc[0] < served["upper_80"].iloc[0]
    assert np.all(np.diff(np.log(served["upper_80"] / served["lower_80"])) > 0)


def _frame(values: list) -> dict:
    return {"dataframe_split": {"columns": ["Close"], "data": [[value] for value in values]}}


BAD_REQUESTS = {
    "no Close column": (
        {"dataframe_split": {"columns": ["Price"], "data": [[100.0]] * 12}},
        "missing inputs ['Close']",
    ),
    "too few rows": (_frame([100.0] * 9), "input has 9 rows of 'Close', the model needs at least 10"),
    "not a number": (_frame(["abc"] + [100.0] * 11), "could not convert string to float: 'abc'"),
    "a missing value": (_frame([None] + [100.0] * 11), "'Close' row 0 is missing"),
    "zero price": (_frame([100.0] * 11 + [0.0]), "'Close' row 11 is not positive: 0"),
    "negative price": (_frame([-5.0] + [100.0] * 11), "'Close' row 0 is not positive: -5"),
    "horizon 0": (
        {**_frame([100.0] * 12), "params": {"horizon": 0}},
        f"horizon must be between 1 and {MAX_HORIZON}, got 0",
    ),
    "horizon too far": (
        {**_frame([100.0] * 12), "params": {"horizon": 1000}},
        f"between 1 and {MAX_HORIZON}, got 1000",
    ),
    "horizon not a number": (
        {**_frame([100.0] * 12), "params": {"horizon": "five"}},
        "Failed to validate type and shape for 'horizon'",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_requests_get_a_400_that_names_the_problem(served_champion, case):
    payload, message = BAD_REQUESTS[case]
    answer = served_champion.invoke(payload)
    assert answer.status_code == 400, answer.text
    assert message in answer.json()["message"]


def test_the_server_keeps_serving_after_bad_requests(served_champion, later_closes):
    answer = served_champion.invoke(invocation_payload(later_closes))
    assert answer.status_code == 200
    assert len(answer.json()["predictions"]) == 1


def test_a_date_column_beside_close_is_accepted_and_ignored(served_champion, later_closes):
    dates = pd.bdate_range("2017-11-16", periods=len(later_closes)).strftime("%Y-%m-%d").tolist()
    with_dates = {
        "dataframe_split": {
            "columns": ["Date", "Close"],
            "data": [list(row) for row in zip(dates, later_closes, strict=True)],
        }
    }
    answer, plain = (
        served_champion.invoke(with_dates),
        served_champion.invoke(invocation_payload(later_closes)),
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == plain.json()


def sample_prices() -> pd.DataFrame:
    return load_prices(fetch_raw_prices("sample", "MSFT").content, "sample").prices


def test_forecast_entry_point_prints_and_writes_trading_day_forecasts(registry, tmp_path):
    tracking, _ = registry
    output = tmp_path / "out" / "forecast.csv"
    params = {"horizon": "5", "output": str(output)}
    result = run_command(mlflow_run(params, FORECAST_ENTRY_POINT, EXPERIMENT), tracking.env)
    assert result.returncode == 0, result.stderr[-3000:]

    prices = sample_prices()
    expected = mlflow.pyfunc.load_model(CHAMPION).predict(prices[["Close"]], params={"horizon": 5})
    written = pd.read_csv(output)
    assert written["Date"].tolist() == ["2013-03-04", "2013-03-05", "2013-03-06", "2013-03-07", "2013-03-08"]
    np.testing.assert_allclose(written["forecast_close"], expected["forecast_close"], rtol=1e-6)
    last_close = prices["Close"].iloc[-1]
    np.testing.assert_allclose(written["change_pct"], 100 * (written["forecast_close"] / last_close - 1))
    assert f"Model {CHAMPION}; last close {last_close:.2f} on 2013-03-01" in result.stdout
    for date, value in zip(written["Date"], written["forecast_close"], strict=True):
        assert f"{date}  {value:>10.2f}" in result.stdout
    for column in INTERVAL_COLUMNS:
        np.testing.assert_allclose(written[column], expected[column], rtol=1e-6)
    first = written.iloc[0]
    assert f"[{first['lower_80']:.2f}, {first['upper_80']:.2f}]" in result.stdout
    assert (written["last_close"] == last_close).all()

    [run] = tracking.runs_of(FORECAST_ENTRY_POINT)
    assert run.info.status == "FINISHED" and run.data.params["model"] == "champion"
    assert run.data.tags["model_uri"] == CHAMPION and run.data.tags["model_version"] == "2"
    logged = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path=FORECAST_TABLE_PATH)
    pd.testing.assert_frame_equal(pd.read_csv(logged), written)


def test_forecast_with_an_unknown_model_fails_with_one_line(registry, tmp_path):
    tracking, _ = registry
    output = tmp_path / "kept.csv"
    output.write_text("earlier,file\n")
    result = CliRunner().invoke(
        forecast.cli,
        ["--model", "models:/stock-NOPE-lstm@champion", "--horizon", "3", "--output", str(output)],
    )
    assert result.exit_code == 1
    failed = tracking.runs("attributes.status = 'FAILED' and tags.`mlflow.runName` = 'forecast'")
    assert len(failed) == 1
    assert "model 'models:/stock-NOPE-lstm@champion' cannot be loaded" in failed[0].data.tags[TAG_ERROR]
    assert output.read_text() == "earlier,file\n"


def test_forecast_refuses_a_horizon_below_one_before_anything_runs(registry):
    tracking, _ = registry
    before = len(tracking.runs())
    result = CliRunner().invoke(forecast.cli, ["--horizon", "0"])
    assert result.exit_code == 2
    assert f"Invalid value for '--horizon': 0 is not in the range 1<=x<={MAX_HORIZON}" in result.output
    assert len(tracking.runs()) == before
