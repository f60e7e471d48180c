"""The start-up check of a tracking server: one line naming MLFLOW_TRACKING_URI and what is wrong."""

from __future__ import annotations

import re
import socket

import mlflow
import pytest

from deploy.local_serving import free_port
from flow_steps.config.errors import PipelineError
from flow_steps.runtime.tracking import check_tracking_server


@pytest.fixture
def tracking_uri():
    """Set this process's tracking URI for the test, the previous one back afterwards."""
    previous = mlflow.get_tracking_uri()
    yield mlflow.set_tracking_uri
    mlflow.set_tracking_uri(previous)


def test_an_unknown_host_is_named(tracking_uri):
    uri = "http://no-such-tracking-host.invalid:5000"  # .invalid never resolves (RFC 2606)
    tracking_uri(uri)
    with pytest.raises(PipelineError, match=rf"^MLFLOW_TRACKING_URI={re.escape(uri)}: unknown host$"):
        check_tracking_server()


def test_a_closed_port_is_named(tracking_uri):
    uri = f"http://127.0.0.1:{free_port()}"
    tracking_uri(uri)
    with pytest.raises(PipelineError, match=r": connection refused \(is the tracking server running"):
        check_tracking_server()


def test_local_stores_are_not_checked(tracking_uri, tmp_path):
    tracking_uri(f"sqlite:///{tmp_path / 'never-made.db'}")
    check_tracking_server()
    assert not (tmp_path / "never-made.db").exists()


@pytest.mark.slow
def test_a_server_that_accepts_but_never_answers_is_named_with_the_wait(tracking_uri):
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts connections, never answers
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        tracking_uri(uri)
        with pytest.raises(
            PipelineError, match=rf"^MLFLOW_TRACKING_URI={re.escape(uri)} did not answer within 0.5 s$"
        ):
            check_tracking_server(timeout=0.5)
