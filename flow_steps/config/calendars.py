"""Trading calendars: the codes a `calendar` parameter takes, checked before anything starts.

The calendars themselves (sessions, holidays) are exchange-calendars', used by data/sessions.py; the
package is imported here only when a code is checked.
"""

from __future__ import annotations

from flow_steps.config.errors import PipelineError

NO_CALENDAR = "none"  # weekdays: forecasts on Monday to Friday, gaps measured in calendar days
DEFAULT_CALENDAR = "XNYS"  # the New York Stock Exchange: the bundled data and Quandl's WIKI/EOD are US
LIST_CALENDARS = (
    'python -c "import exchange_calendars as x; print(*x.get_calendar_names(include_aliases=False))"'
)


def check_calendar(code: object) -> None:
    """Refuse a code exchange-calendars does not know, saying how to list the ones it does."""
    if code == NO_CALENDAR:
        return
    import exchange_calendars

    if code not in exchange_calendars.get_calendar_names():
        raise PipelineError(
            f"calendar={code!r} is not an exchange calendar (XNYS New York, XLON London, XTKS Tokyo, ... "
            f"or '{NO_CALENDAR}' for weekdays); list the codes with: {LIST_CALENDARS}"
        )
