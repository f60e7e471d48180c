"""What the price checks found, in numbers and words: the metrics and tags a step records, and one
warning line per kind of finding (suspect moves, holes in the calendar's sessions, prices on days the
exchange was closed). Pure: the steps log them (runtime/lifecycle.py `record_price_checks`)."""

from __future__ import annotations

from dataclasses import dataclass

from flow_steps.config.names import (
    METRIC_LARGEST_DAILY_MOVE,
    METRIC_LARGEST_GAP_DAYS,
    METRIC_LARGEST_GAP_SESSIONS,
    METRIC_MISSING_SESSIONS,
    METRIC_NON_SESSION_PRICES,
    TAG_DATE_FORMAT,
    TAG_NON_SESSION_DATES,
    TAG_SESSION_HOLES,
    TAG_SUSPECT_MOVES,
)
from flow_steps.data.ingest import CleaningReport, suspect_move_message
from flow_steps.data.sessions import describe_non_sessions

MAX_TAG_LENGTH = 4000  # what a tracking store keeps of a tag's value
NON_SESSION_DATES_TAGGED = 20  # dates named in the tag (the warning names 3)


@dataclass(frozen=True)
class PriceFindings:
    """The checks' findings as a step records them."""

    metrics: dict[str, float]
    tags: dict[str, str]
    warnings: tuple[str, ...]


def price_findings(report: CleaningReport) -> PriceFindings:
    """Metrics, tags (cut to what a store keeps) and warning lines for a cleaning report."""
    metrics = {
        METRIC_LARGEST_GAP_DAYS: float(report.largest_gap_days),
        METRIC_LARGEST_DAILY_MOVE: float(report.largest_daily_move),
        METRIC_LARGEST_GAP_SESSIONS: float(report.largest_gap_sessions),
        METRIC_MISSING_SESSIONS: float(sum(hole.sessions for hole in report.session_holes)),
        METRIC_NON_SESSION_PRICES: float(len(report.non_session_dates)),
    }
    tags = {TAG_DATE_FORMAT: report.date_format}
    warnings = []
    if report.suspect_moves:
        tags[TAG_SUSPECT_MOVES] = "; ".join(move.describe() for move in report.suspect_moves)
        warnings.append(
            f"{suspect_move_message(report.suspect_moves, report.price_column)}; "
            "on_suspect_move=fail refuses such a file"
        )
    if report.session_holes:
        tags[TAG_SESSION_HOLES] = "; ".join(hole.describe() for hole in report.session_holes)
        largest, others = report.session_holes[0], len(report.session_holes) - 1
        more = f", and {others} more hole{'s' if others > 1 else ''}" if others else ""
        warnings.append(
            f"No prices for {largest.sessions} session{'s' if largest.sessions != 1 else ''} of "
            f"{report.calendar} between {largest.before} and {largest.after}{more}; training windows "
            "straddle them as if they were one day "
            "(max_gap_sessions refuses longer holes)"
        )
    if report.non_session_dates:
        tags[TAG_NON_SESSION_DATES] = describe_non_sessions(
            report.non_session_dates, report.calendar, NON_SESSION_DATES_TAGGED
        )
        warnings.append(
            f"{describe_non_sessions(report.non_session_dates, report.calendar)}: a wrong file or a wrong "
            "calendar? (they are kept)"
        )
    tags = {name: value[:MAX_TAG_LENGTH] for name, value in tags.items()}
    return PriceFindings(metrics, tags, tuple(warnings))
