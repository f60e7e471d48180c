"""Every limit of the deployment rules (degradation, scoring, promotion, registry names), on it and on
each side; expected values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from mlflow.entities import Metric, Run, RunData, RunInfo, RunTag

from flow_steps.config.errors import PipelineError
from flow_steps.config.names import (
    FIRST_VERSION,
    KEPT,
    MAX_HORIZON,
    METRIC_TEST_RMSE,
    PROMOTED,
    SCORED_FROM_TRAINING,
    TAG_STOCK_DATA_SHA256,
)
from flow_steps.deployment.degradation import Thresholds, degradation, realized_metrics
from flow_steps.deployment.promotion import Promotion, decide_promotion, train_run_id, version_description
from flow_steps.deployment.scoring import day_text, holdout_days, model_score, score_from_training
from flow_steps.deployment.versions import MODEL_NAME_PATTERN, RUNS_URI, model_description

THRESHOLDS = Thresholds(max_rmse_vs_naive=1.25, min_coverage_80=0.5, max_coverage_80=0.75)


def metrics(ratio: float, coverage: float) -> dict[str, float]:
    return {"rmse_vs_naive": ratio, "coverage_80": coverage}


# RMSE / naive: 1.25 is allowed, beyond it is degraded.
@pytest.mark.parametrize(("ratio", "degraded"), [(1.24, False), (1.25, False), (1.26, True)])
def test_the_rmse_ratio_limit_is_inclusive(ratio, degraded):
    reason = degradation(metrics(ratio, 0.6), THRESHOLDS)
    assert (
        (reason == f"realized RMSE / naive {ratio:.3f} > max_rmse_vs_naive 1.25")
        if degraded
        else reason is None
    )


# Coverage: [0.5, 0.75], both bounds allowed.
@pytest.mark.parametrize(
    ("coverage", "degraded"), [(0.49, True), (0.5, False), (0.6, False), (0.75, False), (0.76, True)]
)
def test_the_coverage_band_includes_both_bounds(coverage, degraded):
    reason = degradation(metrics(1.0, coverage), THRESHOLDS)
    expected = f"80% interval covered {coverage:.1%}, outside [0.5, 0.75]"
    assert reason == expected if degraded else reason is None


def test_both_reasons_are_joined_and_a_missing_coverage_is_no_reason():
    reason = degradation(metrics(2.0, 0.1), THRESHOLDS)
    assert reason == (
        "realized RMSE / naive 2.000 > max_rmse_vs_naive 1.25; "
        "80% interval covered 10.0%, outside [0.5, 0.75]"
    )
    assert degradation(metrics(1.0, float("nan")), THRESHOLDS) is None


def test_a_naive_rmse_of_zero_gives_no_ratio():
    scored = pd.DataFrame(
        {
            "forecast_run_id": ["a", "a"],
            "error": [3.0, -4.0],
            "naive_error": [0.0, 0.0],
            "inside_80": [1.0, 0.0],
        }
    ).assign(inside_95=np.nan)
    found = realized_metrics(scored)
    # RMSE of 3 and -4: sqrt((9 + 16) / 2)
    assert found["rmse"] == pytest.approx(math.sqrt(12.5))
    assert math.isnan(found["rmse_vs_naive"])
    assert (found["forecasts"], found["days"], found["coverage_80"]) == (1.0, 2.0, 0.5)
    assert math.isnan(found["coverage_95"])


# The champion moves only for a strictly lower RMSE.
@pytest.mark.parametrize(("challenger", "decision"), [(0.99, PROMOTED), (1.0, KEPT), (1.01, KEPT)])
def test_an_equal_rmse_keeps_the_champion(challenger, decision):
    promotion = decide_promotion(challenger, "3", 1.0)
    assert promotion.decision == decision
    assert promotion.promotes == (decision == PROMOTED)
    verb = "beats" if decision == PROMOTED else "does not beat"
    assert promotion.reason == f"RMSE {challenger:.6g} {verb} champion version 3's 1"


def test_the_first_version_promotes_and_an_unscored_champion_is_kept():
    assert decide_promotion(5.0, None, None).promotes
    assert decide_promotion(5.0, None, None).decision == FIRST_VERSION
    kept = decide_promotion(5.0, "2", None)
    assert (kept.decision, kept.promotes) == (KEPT, False)
    assert kept.reason == "champion version 2 cannot be scored on these test days"


PRICES = pd.DataFrame(
    {"Date": pd.date_range("2021-01-01", periods=10, freq="D"), "Close": np.arange(1.0, 11.0)}
)


def test_holdout_days_are_the_last_rounded_fraction():
    # 10 rows, 0.25: round(2.5) = 2 test days (half to even), the closes 9 and 10.
    days = holdout_days(PRICES, 0.25, "abc")
    assert (days.n_test, days.actual.tolist(), days.prices_sha256) == (2, [9.0, 10.0], "abc")


def training_run(sha: str | None, n_test: float, rmse: float = 1.5) -> Run:
    tags = [RunTag(TAG_STOCK_DATA_SHA256, sha)] if sha is not None else []
    data = RunData(
        metrics=[Metric("n_test_days", n_test, 0, 0), Metric(METRIC_TEST_RMSE, rmse, 0, 0)], tags=tags
    )
    info = RunInfo("r" * 32, "0", "user", "FINISHED", 0, 1, "active")
    return Run(info, data)


@pytest.mark.parametrize(
    ("sha", "n_test", "reused"),
    [("abc", 2, True), ("abd", 2, False), (None, 2, False), ("abc", 3, False), ("abc", 1, False)],
)
def test_a_training_score_is_reused_only_for_the_same_file_and_days(sha, n_test, reused):
    days = holdout_days(PRICES, 0.25, "abc")
    assert score_from_training(training_run(sha, n_test), days) == (1.5 if reused else None)


def test_an_unknown_file_never_reuses_a_score():
    days = holdout_days(PRICES, 0.25, "")
    assert score_from_training(training_run("", 2), days) is None


def test_a_reused_score_says_where_it_came_from():
    days = holdout_days(PRICES, 0.25, "abc")
    assert model_score("models:/m/1", training_run("abc", 2, rmse=0.75), days) == (0.75, SCORED_FROM_TRAINING)


def test_days_are_written_as_iso_dates():
    assert day_text(pd.Timestamp("2021-03-04 15:30")) == "2021-03-04"
    assert day_text("2021-03-04") == "2021-03-04"


def test_the_description_gives_the_ratio_the_days_and_the_coverage():
    days = holdout_days(PRICES, 0.25, "abc")
    promotion = Promotion(PROMOTED, "why")
    text = version_description(1.5, 2.0, days, promotion, {"test_coverage_80": 0.8, "test_coverage_95": 0.95})
    # 1.5 / 2 = 0.75; test days 2021-01-09 and -10; trained through the day before, 2021-01-08.
    assert text == (
        "Test RMSE 1.5 = 0.750 x naive over 2 days 2021-01-09..2021-01-10; 80%/95% intervals covered "
        f"80.0%/95.0%; trained through 2021-01-08; {PROMOTED}: why"
    )
    assert "intervals covered" not in version_description(
        1.5, 2.0, days, promotion, {"test_coverage_80": 0.8}
    )
    assert "intervals covered" not in version_description(1.5, 2.0, days, promotion)


RUN_ID = "0123456789abcdef0123456789abcdef"


def test_a_runs_uri_needs_a_32_digit_run_id_and_a_path():
    assert train_run_id(f"runs:/{RUN_ID}/model") == RUN_ID
    for bad in (f"runs:/{RUN_ID[:-1]}/model", f"runs:/{RUN_ID}0/model", f"runs:/{RUN_ID}/", "models:/m/1"):
        assert RUNS_URI.match(bad) is None
        with pytest.raises(PipelineError, match=f"^model_uri '{bad}' is not a runs:/"):
            train_run_id(bad)


# Model names: a first character and up to 99 more.
@pytest.mark.parametrize(("length", "valid"), [(1, True), (99, True), (100, True), (101, False)])
def test_a_model_name_has_at_most_100_characters(length, valid):
    assert bool(MODEL_NAME_PATTERN.match("m" * length)) == valid


def test_the_registry_description_names_the_horizon_and_the_rule():
    text = model_description("msft-lstm")
    assert text.startswith("msft-lstm: forecasts the next trading days' closing prices")
    assert f"(1-{MAX_HORIZON} trading days)" in text and "(1-260 trading days)" in text
    assert "strictly lower than the current champion's" in text
