"""Errors a user can act on. Steps report them as one line, exit non-zero and mark their run FAILED."""


class PipelineError(Exception):
    """A problem with the input or the parameters, explained in one line."""


class DataValidationError(PipelineError):
    """The price data cannot be used as it is (names the column, row or value)."""


class SourceError(PipelineError):
    """The price source could not be read (names the source)."""
