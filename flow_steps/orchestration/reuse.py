"""Whether a step's finished run can be reused: the look-up and its rules.

A step is reused when a FINISHED run has the same entry point, parameters, code version and extra tags
(`find_reusable`). The search names the entry point, the code version, the extra tags and as many of the
step's parameters (its input first: the ticker, the file or the model it reads) as keep the query quick
to plan (MLflow joins one relation per clause; fifteen were planned badly on a year of history, eight took
22 ms to plan); the other parameters are compared here. A downloaded file is reused only while
its source cannot have changed (`download_reuse_tags`).
"""

from __future__ import annotations

from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PROJECT_ENTRY_POINT

from flow_steps.config.entry_points import BY_ENTRY_POINT
from flow_steps.config.errors import SourceError
from flow_steps.config.names import TAG_CODE_VERSION
from flow_steps.data.sources import source_for
from flow_steps.runtime.tracking import pages

REUSE_PAGE_SIZE = 100  # candidate runs read per search page (most look-ups find one)
# A reuse search joins runs, its two tags, its extra tags and its params. PostgreSQL plans joins beyond
# join_collapse_limit (8) in the order written, and the time to plan grows fast below it: 22 ms at 8
# relations, 8 at 7, 3.5 at 6 (docs/performance.md, "History"), paid on every search.
JOINED_RELATIONS = 7


def searched_params(entry_point: str, params: dict[str, str], tags: dict[str, str]) -> list[str]:
    """The params a reuse search names: the step's input, then the others in MLproject's order, as many
    as fit in JOINED_RELATIONS beside runs, the entry point and code version tags and `tags`."""
    room = max(1, JOINED_RELATIONS - 3 - len(tags))
    return [param.name for param in BY_ENTRY_POINT[entry_point].params if param.name in params][:room]


def reuse_filter(entry_point: str, params: dict[str, str], version: str, tags: dict[str, str]) -> str:
    """MLflow search filter for the FINISHED runs of `entry_point` at this code version with these tags
    and the same `searched_params`; `same_inputs` then checks every param."""
    clauses = [
        "attributes.status = 'FINISHED'",
        f"tags.`{MLFLOW_PROJECT_ENTRY_POINT}` = {quoted(entry_point)}",
        f"tags.{TAG_CODE_VERSION} = {quoted(version)}",
    ]
    clauses += [f"tags.{name} = {quoted(value)}" for name, value in sorted(tags.items())]
    clauses += [
        f"params.{name} = {quoted(params[name])}" for name in searched_params(entry_point, params, tags)
    ]
    return " and ".join(clauses)


def same_inputs(run: Run, params: dict[str, str], tags: dict[str, str]) -> bool:
    """Whether `run` was logged with every one of these params and tags, at these values."""
    return all(run.data.params.get(name) == value for name, value in params.items()) and all(
        run.data.tags.get(name) == value for name, value in tags.items()
    )


def find_reusable(
    client: MlflowClient,
    experiment_id: str,
    entry_point: str,
    params: dict[str, str],
    version: str,
    tags: dict[str, str],
) -> Run | None:
    """The newest FINISHED run of `entry_point` in the experiment with the same params, code version and
    tags, or None."""
    if any("'" in value for value in [version, *tags.values(), *params.values()]):
        return None  # not expressible in a filter string: run the step instead
    found = pages(
        lambda token: client.search_runs(
            experiment_ids=[experiment_id],
            filter_string=reuse_filter(entry_point, params, version, tags),
            order_by=["attributes.start_time DESC"],
            max_results=REUSE_PAGE_SIZE,
            page_token=token,
        )
    )
    return next((run for run in found if same_inputs(run, params, tags)), None)


def download_reuse_tags(data_source: str) -> dict[str, str] | None:
    """Extra tags a reusable download run must carry, as its source says, or None when the source may
    have changed (or names nothing: the download step then refuses it in one line)."""
    try:
        source = source_for(data_source)
    except SourceError:
        return None
    return source.reuse_tags(data_source)


def quoted(value: str) -> str:
    """`value` as a string literal of an MLflow search filter (it must hold no single quote)."""
    return f"'{value}'"
