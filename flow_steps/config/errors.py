"""Errors a user can act on. Steps report them as one line (`one_line`), exit non-zero and mark their run
FAILED."""

from flow_steps.config.secrets import mask_secrets


class PipelineError(Exception):
    """A problem with the input or the parameters, explained in one line."""


class DataValidationError(PipelineError):
    """The price data cannot be used as it is (names the column, row or value)."""


class SourceError(PipelineError):
    """The price source could not be read (names the source)."""


def one_line(error: BaseException | str) -> str:
    """The error's message on a single line, secrets masked."""
    return mask_secrets(" ".join(str(error).split()))
