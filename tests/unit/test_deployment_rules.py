"""The pure rules of deployment: when the champion moves, which days a forecast is for, which model."""

import numpy as np
import pandas as pd
import pytest

from deploy.local_serving import invocation_payload
from flow_steps.config.errors import PipelineError
from flow_steps.deployment.prediction import forecast_table, render, resolve_model_uri, write_csv
from flow_steps.deployment.promotion import decide_promotion, train_run_id
from flow_steps.deployment.scoring import DailyLosses, holdout_days

# 20 days: the champion's squared errors are all 1; the challenger's alternate 0.625 and 0.5 (RMSE 0.75,
# 25% lower, with every day better: significant at any usual level).
CHAMPION = DailyLosses(np.ones(20), np.ones(20))
BETTER = DailyLosses(np.tile([0.625, 0.5], 10), np.ones(20))


def test_the_first_version_is_promoted():
    promotion = decide_promotion(BETTER, champion_version=None, champion=None)
    assert promotion.promotes and promotion.decision == "first_version"


def test_the_champion_moves_only_for_a_significant_and_large_enough_improvement():
    promoted = decide_promotion(BETTER, "3", CHAMPION)
    assert promoted.decision == "promoted" and promoted.against_champion.improvement == 0.25
    tie = decide_promotion(CHAMPION, "3", CHAMPION)
    assert (
        not tie.promotes and "not significant, these test days cannot tell it apart from luck" in tie.reason
    )
    worse = decide_promotion(CHAMPION, "3", BETTER)
    assert not worse.promotes and "(33.33% higher, under min_improvement 0.50%)" in worse.reason


def test_a_champion_that_cannot_be_scored_is_kept():
    promotion = decide_promotion(BETTER, "3", None)
    assert not promotion.promotes and "cannot be scored" in promotion.reason


def test_holdout_days_are_the_days_training_held_out():
    prices = pd.DataFrame({"Date": pd.bdate_range("2020-01-01", periods=50), "Close": np.arange(1.0, 51)})
    days = holdout_days(prices, 0.2)
    assert days.n_test == 10
    np.testing.assert_array_equal(days.actual, np.arange(41.0, 51))


def test_only_runs_uris_of_a_training_run_are_registered():
    assert train_run_id("runs:/0123456789abcdef0123456789abcdef/model") == "0123456789abcdef0123456789abcdef"
    with pytest.raises(PipelineError, match="is not a runs:/<run id>/<path> URI"):
        train_run_id("models:/stock-MSFT-lstm/1")


def test_forecast_dates_are_the_sessions_after_the_last_price():
    prices = pd.DataFrame({"Date": pd.to_datetime(["2024-05-30", "2024-05-31"]), "Close": [100.0, 110.0]})
    answer = pd.DataFrame(
        {
            "days_ahead": [1, 2, 3],
            "forecast_close": [121.0, 99.0, 110.0],
            "lower_80": [115.0, 90.0, 99.0],
            "upper_80": [127.0, 108.0, 121.0],
            "lower_95": [112.0, 85.0, 94.0],
            "upper_95": [130.5, 113.0, 127.0],
        }
    )
    table = forecast_table(prices, answer, "XNYS")
    # Friday 31 May -> Monday 3, Tuesday 4, Wednesday 5 June.
    assert table["Date"].dt.strftime("%Y-%m-%d").tolist() == ["2024-06-03", "2024-06-04", "2024-06-05"]
    np.testing.assert_allclose(table["change_pct"], [10.0, -10.0, 0.0])
    assert table.columns.tolist()[3:] == ["lower_80", "upper_80", "lower_95", "upper_95", "last_close"]
    assert table["last_close"].tolist() == [110.0] * 3
    text = render(prices, table, "models:/m@champion")
    assert text.splitlines()[0] == "Model models:/m@champion; last close 110.00 on 2024-05-31"
    assert text.splitlines()[1].split() == [
        "date",
        "forecast",
        "change",
        "80%",
        "interval",
        "95%",
        "interval",
    ]
    assert text.splitlines()[2].split() == ["2024-06-03", "121.00", "+10.00%", "[115.00,", "127.00]"] + [
        "[112.00,",
        "130.50]",
    ]


def test_the_csv_is_replaced_whole(tmp_path):
    output = tmp_path / "new" / "forecast.csv"
    table = pd.DataFrame(
        {"Date": pd.to_datetime(["2024-06-03"]), "forecast_close": [1.5], "change_pct": [0.0]}
    )
    write_csv(table, output)
    assert output.read_text().splitlines() == ["Date,forecast_close,change_pct", "2024-06-03,1.5,0.0"]
    assert [path.name for path in output.parent.iterdir()] == ["forecast.csv"]  # no temporary file left


def test_aliases_name_the_tickers_registered_model():
    assert resolve_model_uri("champion", " msft ") == "models:/stock-MSFT-lstm@champion"
    assert resolve_model_uri("challenger", "AAPL") == "models:/stock-AAPL-lstm@challenger"
    assert resolve_model_uri("runs:/abc/model", "MSFT") == "runs:/abc/model"


def test_the_request_body_is_mlflows_dataframe_split_with_params():
    assert invocation_payload([1, 2.5], horizon=3) == {
        "dataframe_split": {"columns": ["Close"], "data": [[1.0], [2.5]]},
        "params": {"horizon": 3},
    }
    assert "params" not in invocation_payload([1.0])
