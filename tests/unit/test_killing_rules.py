"""What mutation testing found untested in the data, deployment, outage and spec rules: each case worked
out by hand from the rule's definition."""

import click
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from flow_steps.config.spec import Param
from flow_steps.data.ingest import SuspectMove, suspect_move_message
from flow_steps.data.reading import read_price_table, resolve_date_format
from flow_steps.data.sessions import describe_non_sessions
from flow_steps.data.tickers import parse_tickers
from flow_steps.deployment.degradation import by_version, realized_metrics, scored_days
from flow_steps.deployment.promotion import Promotion, decide_promotion, version_description
from flow_steps.deployment.scoring import DailyLosses, HoldoutDays
from flow_steps.deployment.versions import model_description
from flow_steps.runtime.outages import outage_error, retries_for
from flow_steps.training.evaluation import backtest_summary


def forecasts(**columns) -> pd.DataFrame:
    base = {
        "Date": ["2020-01-02", "2020-01-03"],
        "forecast_close": [10.0, 10.0],
        "last_close": [9.0, 9.0],
        "forecast_run_id": ["r1", "r1"],
        "model_version": ["1", "1"],
    }
    return pd.DataFrame({**base, **columns})


PRICES = pd.DataFrame({"Date": pd.to_datetime(["2020-01-02", "2020-01-03"]), "Close": [10.0, 12.0]})


def test_a_close_exactly_on_an_interval_bound_is_inside():
    # Closes 10 and 12; the 80% interval [10, 12] holds both bounds; the 95% one (10, 11.99) misses 12.
    scored = scored_days(
        forecasts(
            lower_80=[10.0, 10.0], upper_80=[12.0, 12.0], lower_95=[10.0, 10.0], upper_95=[11.99, 11.99]
        ),
        PRICES,
    )
    assert scored["inside_80"].tolist() == [1.0, 1.0]
    assert scored["inside_95"].tolist() == [1.0, 0.0]
    assert "index" not in scored.columns and scored.index.tolist() == [0, 1]


def test_realized_metrics_from_their_definitions():
    # errors 10-10 = 0 and 12-10 = 2: RMSE sqrt((0 + 4) / 2) = sqrt(2); naive errors 1 and 3: sqrt(5);
    # their ratio sqrt(2 / 5) = 0.6325; no interval columns: coverage NaN.
    metrics = realized_metrics(scored_days(forecasts(), PRICES))
    assert metrics["rmse"] == pytest.approx(np.sqrt(2))
    assert metrics["naive_rmse"] == pytest.approx(np.sqrt(5))
    assert metrics["rmse_vs_naive"] == pytest.approx(np.sqrt(2 / 5))
    assert (metrics["forecasts"], metrics["days"]) == (1.0, 2.0)
    assert np.isnan(metrics["coverage_80"])


def test_versions_are_listed_newest_first_and_a_model_uri_last():
    table = scored_days(
        pd.concat(
            [
                forecasts(model_version=["runs:/abc/model"] * 2, forecast_run_id=["r0", "r0"]),
                forecasts(model_version=["2", "2"], forecast_run_id=["r2", "r2"]),
                forecasts(model_version=["10", "10"], forecast_run_id=["r3", "r3"]),
            ]
        ),
        PRICES,
    )
    assert by_version(table)["model_version"].tolist() == ["10", "2", "runs:/abc/model"]


def test_outage_lines_name_a_refused_connection_however_it_is_spelt():
    assert (
        outage_error(OSError("Failed to establish a new connection: Connection refused"))
        .args[0]
        .endswith(": connection refused")
    )
    assert outage_error(OSError("[Errno 111] no listener")).args[0].endswith(": connection refused")
    assert outage_error(OSError("read timed out")).args[0].endswith(": no answer")


def test_the_shortest_outage_takes_two_retries():
    # The schedule's sleeps are 0, 2, 4 ... s: one retry waits 0 s, so 0.001 s needs two (0 + 2 = 2 s).
    assert retries_for(0.001) == 2
    assert retries_for(2) == 2 and retries_for(2.001) == 3


def test_a_bad_value_is_refused_by_click_naming_the_option_and_the_rule():
    window = Param("window", "int", 30, "Days per sample.", low=2)

    @click.command()
    @click.option(
        window.flag, type=window.click_type(), default=window.default, callback=window.click_callback
    )
    def command(window: int) -> None:
        click.echo(f"window={window}")

    assert CliRunner().invoke(command, ["--window", "2"]).output == "window=2\n"
    refused = CliRunner().invoke(command, ["--window", "1"])
    assert refused.exit_code == 2
    assert "Invalid value for '--window': 1 is not in the range x>=2." in refused.output


def test_a_callback_checks_every_value_it_is_given_and_skips_none():
    seen = []
    param = Param("name", "string", "a", "h", validate=seen.append)
    assert param.click_callback(None, None, None) is None and seen == []
    assert param.click_callback(None, None, "b") == "b" and seen == ["b"]
    refusing = Param("model_name", "string", "a", "h", choices=("a",))
    with pytest.raises(click.BadParameter, match="model_name must be one of a, got 'b'"):
        refusing.click_callback(click.Context(click.Command("x")), None, "b")


def test_a_number_bounded_above_only_is_a_range():
    # high=10 alone: click's IntRange with no minimum.
    kind = Param("n", "int", 5, "h", high=10).click_type()
    assert isinstance(kind, click.IntRange) and (kind.min, kind.max) == (None, 10)
    assert Param("flag", "bool", False, "h").click_type() is click.BOOL
    path = Param("file", "path", None, "h").click_type()
    assert isinstance(path, click.Path) and path.dir_okay is False


def test_one_price_on_a_closed_day_is_said_in_the_singular():
    assert (
        describe_non_sessions(("2016-12-25",), "XNYS") == "1 price dated on days XNYS was closed: 2016-12-25"
    )
    assert describe_non_sessions(("a", "b"), "XNYS") == "2 prices dated on days XNYS was closed: a, b"


def test_a_ticker_file_line_keeps_what_comes_before_its_first_hash(tmp_path):
    watchlist = tmp_path / "watchlist.txt"
    watchlist.write_text("MSFT # software # and clouds\n# a comment\naapl\n")
    assert parse_tickers(f"@{watchlist}") == ["MSFT", "AAPL"]


def test_one_suspect_move_is_named_alone_in_full():
    assert suspect_move_message((SuspectMove("2014-06-09", 100.0, 50.0),), "Close") == (
        "'Close' moved -50.0% in one day on 2014-06-09 (100 -> 50, -50.0%), and the file has no adjusted "
        "close: an unadjusted split, a data error or a real crash; prefer a source with adjusted closes"
    )


def test_in_a_semicolon_file_dots_without_a_decimal_comma_are_decimal_points():
    # No value of Close holds a comma: "1.234" is 1.234, never 1234; Volume's "1.234,5" is 1234.5.
    table = read_price_table(
        "Date;Close;Volume\n2020-01-02;1.234;1.234,5\n2020-01-03;12.345;12,25\n", "p.csv"
    )
    assert table["Close"].tolist() == ["1.234", "12.345"]
    assert table["Volume"].tolist() == ["1234.5", "12.25"]


def test_an_ambiguous_column_names_a_date_that_reads_two_ways():
    # 05/05/2020 is the same day either way; 01/02/2020 is 2 January or 1 February: it is the example.
    with pytest.raises(Exception, match="'01/02/2020' is 2020-01-02 as %m/%d/%Y and 2020-02-01 as %d/%m/%Y"):
        resolve_date_format(pd.Series(["05/05/2020", "01/02/2020"]), "Date")


def test_the_first_version_says_so_and_a_description_names_its_coverage():
    first = decide_promotion(DailyLosses(np.array([0.25, 0.25])), None, None)
    assert first == Promotion("first_version", "no champion yet: the first version becomes champion")
    days = HoldoutDays(
        closes=np.array([1.0, 2.0, 3.0]),
        dates=pd.Series(pd.to_datetime(["2020-01-01", "2020-01-02", "2020-01-03"])),
        n_test=2,
    )
    # RMSE 0.5 against naive 1.0: 0.500 x naive; 80% / 95% coverage 0.75 / 1.0 -> 75.0% / 100.0%.
    assert version_description(
        0.5, 1.0, days, first, {"test_coverage_80": 0.75, "test_coverage_95": 1.0}
    ) == (
        "Test RMSE 0.5 = 0.500 x naive over 2 days 2020-01-02..2020-01-03; 80%/95% intervals covered "
        "75.0%/100.0%; trained through 2020-01-01; first_version: no champion yet: the first version "
        "becomes champion"
    )
    assert "intervals covered" not in version_description(0.5, 1.0, days, first)


def test_a_first_version_without_skill_over_naive_says_so_with_its_p_value():
    # 2 days (fewer than 16): no test, p-value 1, no evidence of skill.
    naive = DailyLosses(np.array([1.0, 1.0]))
    first = decide_promotion(DailyLosses(np.array([0.25, 0.25])), None, None, naive=naive)
    assert first.no_skill and first.decision == "first_version"
    days = HoldoutDays(
        closes=np.array([1.0, 2.0, 3.0]),
        dates=pd.Series(pd.to_datetime(["2020-01-01", "2020-01-02", "2020-01-03"])),
        n_test=2,
    )
    assert version_description(0.5, 1.0, days, first) == (
        "Test RMSE 0.5 = 0.500 x naive (skill test p=1) over 2 days 2020-01-02..2020-01-03; trained through "
        "2020-01-01; first_version: no champion yet: the first version becomes champion, with no evidence "
        "of skill over the naive forecast"
    )


def test_a_tie_is_kept_and_the_reason_says_why_word_for_word():
    # 16 identical days: zero variance, no evidence (p 1); improvement 0 < 0.5%; interval scores equal.
    same = DailyLosses(np.full(16, 1.0), np.full(16, 2.0))
    kept = decide_promotion(same, "3", DailyLosses(np.full(16, 1.0), np.full(16, 2.0)))
    assert kept.reason == (
        "not better enough than the champion: RMSE 1 against champion version 3's 1 (0.00% lower, under "
        "min_improvement 0.50%); Diebold-Mariano p=1 > promotion_alpha 0.05: not significant, these test "
        "days cannot tell it apart from luck; 80% interval score not significantly worse (p=1)"
    )


def test_the_registry_page_says_what_the_model_takes_gives_and_how_it_is_promoted():
    # The window's default (60) and the horizon's maximum (260) are the declared ones.
    assert model_description("stock-MSFT-lstm") == (
        "stock-MSFT-lstm: forecasts the next trading days' closing prices of one stock with a two-layer "
        "LSTM. Input: a DataFrame with a 'Close' column of chronological closes (at least the model's "
        "window, 60 by default), in any price units; optional request param 'horizon' (1-260 trading "
        "days). Output: "
        "one row per day ahead, 'days_ahead' and 'forecast_close'. Every version is scored on its test days "
        "next to the naive forecast (tomorrow = today); the alias 'challenger' marks the newest version, "
        "and 'champion' moves to a new version only when, on its test days, it beats the current champion "
        "by evidence: a one-sided Diebold-Mariano test finds its squared errors lower (p at most "
        "promotion_alpha), its RMSE is lower by at least min_improvement, and its 80% interval score is "
        "not significantly worse. Made by the stock-market-prediction pipeline."
    )


def test_a_description_without_the_training_runs_coverage_says_nothing_of_it():
    days = HoldoutDays(
        closes=np.array([1.0, 2.0, 3.0]),
        dates=pd.Series(pd.to_datetime(["2020-01-01", "2020-01-02", "2020-01-03"])),
        n_test=2,
    )
    kept = Promotion("kept", "champion version 1 cannot be scored on these test days")
    assert version_description(0.25, 0.5, days, kept) == (
        "Test RMSE 0.25 = 0.500 x naive over 2 days 2020-01-02..2020-01-03; trained through 2020-01-01; "
        "kept: champion version 1 cannot be scored on these test days"
    )


def test_a_backtest_is_summed_up_fold_by_fold_and_averaged_by_metric():
    fold_tables = [
        pd.DataFrame({"model": ["lstm", "naive"], "rmse": [1.0, 2.0]}),
        pd.DataFrame({"model": ["lstm", "naive"], "rmse": [3.0, 4.0]}),
    ]
    # Means over the two folds: test_rmse (1 + 3) / 2 = 2; test_mae (0.5 + 1.5) / 2 = 1.
    table, means = backtest_summary(
        fold_tables, [{"test_rmse": 1.0, "test_mae": 0.5}, {"test_rmse": 3.0, "test_mae": 1.5}]
    )
    assert table.columns.tolist() == ["fold", "model", "rmse"]
    assert table.values.tolist() == [[0, "lstm", 1.0], [0, "naive", 2.0], [1, "lstm", 3.0], [1, "naive", 4.0]]
    assert table.index.tolist() == [0, 1, 2, 3]
    assert means == {"backtest_test_rmse": 2.0, "backtest_test_mae": 1.0}


def test_a_column_every_format_reads_alike_names_its_first_date():
    # 01/01/2020 and 02/02/2020 read the same as %m/%d/%Y and %d/%m/%Y: no date differs, the first is shown.
    with pytest.raises(Exception, match="'01/01/2020' is 2020-01-01 as %m/%d/%Y and 2020-01-01 as %d/%m/%Y"):
        resolve_date_format(pd.Series(["01/01/2020", "02/02/2020"]), "Date")
