"""data/findings.py: what a step records and says about the price checks' findings, written out by hand."""

from flow_steps.data.findings import MAX_TAG_LENGTH, price_findings
from flow_steps.data.ingest import CleaningReport, SuspectMove
from flow_steps.data.sessions import Hole


def report(**changes) -> CleaningReport:
    """A clean report of 100 rows read with ISO dates on XNYS, with `changes`."""
    fields = dict(
        rows_in=100,
        price_column="Close",
        newest_first=False,
        missing_dropped=0,
        duplicates_dropped=0,
        limit_dropped=0,
        rows_out=100,
        date_format="ISO8601",
        adjusted=False,
        largest_gap_days=4,
        largest_daily_move=0.05,
        suspect_moves=(),
        calendar="XNYS",
    )
    return CleaningReport(**{**fields, **changes})


def test_a_clean_report_gives_its_figures_the_date_format_and_no_warning():
    findings = price_findings(report())
    assert findings.metrics == {
        "largest_gap_days": 4.0,
        "largest_daily_move": 0.05,
        "largest_gap_sessions": 0.0,
        "missing_sessions": 0.0,
        "non_session_prices": 0.0,
    }
    assert findings.tags == {"date_format_resolved": "ISO8601"}
    assert findings.warnings == ()


def test_suspect_moves_are_tagged_and_named_in_one_warning():
    # 100 -> 50 is -50.0%; 20 -> 10 too. The first is the largest, "and 1 more".
    moves = (SuspectMove("2014-06-09", 100.0, 50.0), SuspectMove("2015-01-02", 20.0, 10.0))
    findings = price_findings(report(suspect_moves=moves, largest_daily_move=-0.5))
    assert findings.tags["suspect_moves"] == ("2014-06-09 (100 -> 50, -50.0%); 2015-01-02 (20 -> 10, -50.0%)")
    assert findings.warnings == (
        "'Close' moved -50.0% in one day on 2014-06-09 (100 -> 50, -50.0%) and 1 more, and the file has "
        "no adjusted close: an unadjusted split, a data error or a real crash; prefer a source with adjusted "
        "closes; on_suspect_move=fail refuses such a file",
    )
    assert findings.metrics["largest_daily_move"] == -0.5


def test_session_holes_are_counted_tagged_and_the_largest_named():
    holes = (Hole("2020-03-02", "2020-03-10", 5), Hole("2020-05-01", "2020-05-05", 1))
    findings = price_findings(report(session_holes=holes))
    # The largest hole's sessions, and every missing session: 5 + 1 = 6.
    assert (findings.metrics["largest_gap_sessions"], findings.metrics["missing_sessions"]) == (5.0, 6.0)
    assert findings.tags["session_holes"] == (
        "5 sessions between 2020-03-02 and 2020-03-10; 1 session between 2020-05-01 and 2020-05-05"
    )
    assert findings.warnings == (
        "No prices for 5 sessions of XNYS between 2020-03-02 and 2020-03-10, and 1 more hole; training "
        "windows straddle them as if they were one day (max_gap_sessions refuses longer holes)",
    )


def test_one_hole_alone_says_no_more_and_three_say_holes():
    one = price_findings(report(session_holes=(Hole("2020-03-02", "2020-03-04", 1),)))
    assert one.warnings[0].startswith("No prices for 1 session of XNYS between 2020-03-02 and 2020-03-04;")
    three = (Hole("a", "b", 3), Hole("c", "d", 2), Hole("e", "f", 1))
    assert ", and 2 more holes;" in price_findings(report(session_holes=three)).warnings[0]


def test_prices_on_closed_days_are_counted_the_tag_names_twenty_the_warning_three():
    dates = tuple(f"2016-12-{day:02d}" for day in range(1, 23))  # 22 dates
    findings = price_findings(report(non_session_dates=dates))
    assert findings.metrics["non_session_prices"] == 22.0
    tagged = ", ".join(dates[:20])
    assert findings.tags["non_session_dates"] == (
        f"22 prices dated on days XNYS was closed: {tagged} and 2 more"
    )
    assert findings.warnings == (
        "22 prices dated on days XNYS was closed: 2016-12-01, 2016-12-02, 2016-12-03 and 19 more: a wrong "
        "file or a wrong calendar? (they are kept)",
    )


def test_every_kind_of_finding_gives_its_own_warning_in_a_fixed_order():
    findings = price_findings(
        report(
            suspect_moves=(SuspectMove("2014-06-09", 100.0, 50.0),),
            session_holes=(Hole("2020-03-02", "2020-03-10", 5),),
            non_session_dates=("2016-12-25",),
        )
    )
    assert [line.split(" ", 1)[0] for line in findings.warnings] == ["'Close'", "No", "1"]


def test_a_tag_is_cut_to_what_a_store_keeps():
    moves = tuple(SuspectMove(f"2014-06-{day % 28 + 1:02d}", 100.0, 50.0) for day in range(400))
    findings = price_findings(report(suspect_moves=moves))
    assert MAX_TAG_LENGTH == 4000
    assert len(findings.tags["suspect_moves"]) == 4000
    exactly = price_findings(report(date_format="x" * 4000)).tags["date_format_resolved"]
    assert len(exactly) == 4000
    assert len(price_findings(report(date_format="x" * 3999)).tags["date_format_resolved"]) == 3999
