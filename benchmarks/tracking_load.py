"""The tracking requests one ticker costs, and whether the team server holds the rate of many tickers an hour.

    python benchmarks/tracking_load.py                                 # about 5 minutes on 2 cores
    python benchmarks/tracking_load.py --tickers-per-hour 500 --seconds 120 --server-workers 2

1. Starts a throwaway PostgreSQL cluster and the team server (deploy/team_server.py: basic-auth,
   proxied artifacts, `--workers` as given) on 127.0.0.1, as the tests do (deploy/local_team.py),
   and a user `pipeline` with EDIT on the benchmark's experiment, as the pipeline logs in.
2. Runs two tickers' pipelines in this process with the steps in-process, as a universe's worker does,
   and records every HTTP request MLflow sends for the second ticker: the count by endpoint, the time
   the ticker waited for the answers (each request until its body is read) and the CPU time the server
   and its database spent meanwhile, against the ticker's wall.
3. Replays that mix of requests (the same methods, paths and bodies, artifacts included) at the rate
   `--tickers-per-hour` tickers send, from a pool of threads, for `--seconds`, and reports p50/p95
   latency, server errors and failed connections. Replayed creations that already exist answer 4xx;
   they are counted apart.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import logging
import os
import re
import statistics
import tempfile
import threading
import time
from pathlib import Path

import requests

from deploy.local_postgres import PostgresCluster
from deploy.local_team import TeamServer

logger = logging.getLogger("benchmarks.tracking_load")
EXPERIMENT = "tracking-load"
# The pipeline logs in as a user with EDIT on its experiment, as docs/team-server.md sets one up (the admin
# would skip the server's permission checks, and so cost it less than a team's pipeline does).
PIPELINE_USER = ("pipeline", "pipeline-pw-3b8e1f-a2")
RUN_ID = re.compile(r"[0-9a-f]{32}")


class Recorder:
    """Records what `requests` sends (MLflow's client uses it for every call) while `recording`."""

    def __init__(self) -> None:
        self.recording = False
        self.calls: list[dict] = []
        self._send = requests.Session.send
        recorder = self

        def send(session, request, **kwargs):
            body = request.body
            if hasattr(body, "read"):  # an artifact upload: keep its bytes for the replay
                position = body.tell()
                content = body.read()
                body.seek(position)
                body = content
            started = time.perf_counter()
            response = recorder._send(session, request, **kwargs)  # its body read too (not streamed)
            if recorder.recording:
                # An empty file went out chunked (requests cannot size a stream of length 0); its bytes
                # are replayed as a plain body, sized by Content-Length: the chunked header would make
                # the server wait for chunks that never come.
                headers = {k: v for k, v in request.headers.items() if k.lower() != "transfer-encoding"}
                recorder.calls.append(
                    {
                        "method": request.method,
                        "url": request.url,
                        "headers": headers,
                        "body": body,
                        # Until the body is in: `response.elapsed` stops at the headers, and so misses
                        # a body held back after them (docs/performance.md: 40 ms a request, once).
                        "seconds": time.perf_counter() - started,
                    }
                )
            return response

        requests.Session.send = send


def endpoint(call: dict) -> str:
    path = call["url"].split("?", 1)[0].split("://", 1)[1].split("/", 1)[1]
    return f"{call['method']} /{RUN_ID.sub('<id>', path)}"


def cpu_seconds(process_ids: list[int]) -> float:
    """The CPU time (user and system) the processes `process_ids` have used so far."""
    total = 0
    for pid in process_ids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    return total / os.sysconf("SC_CLK_TCK")


def server_processes(server: TeamServer, cluster: PostgresCluster) -> list[int]:
    """The team server's processes (its process group) and the database's (the postmaster's children)."""
    postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
    group = os.getpgid(server.process.pid)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group or int(fields[1]) == postmaster or int(entry.name) == postmaster:
            found.append(int(entry.name))
    return found


def one_ticker(
    server: TeamServer, cluster: PostgresCluster, folder: Path, recorder: Recorder, epochs: int
) -> tuple[float, float, list[dict]]:
    """Two tickers in this process (the first warms it up); the second's wall, the CPU seconds the
    server and its database spent on it, and its requests."""
    import mlflow
    import pandas as pd

    from flow_steps.config.declarations import PIPELINE_PARAMS
    from flow_steps.data.sources import SAMPLE_FILE
    from flow_steps.orchestration.driver import run_pipeline
    from flow_steps.orchestration.in_process import BACKEND
    from flow_steps.orchestration.workers import WORKER_SETTINGS
    from flow_steps.runtime.lifecycle import configure_logging
    from flow_steps.runtime.tracking import client_defaults

    os.environ.update(
        {
            "MLFLOW_TRACKING_URI": server.url,
            "MLFLOW_TRACKING_USERNAME": PIPELINE_USER[0],
            "MLFLOW_TRACKING_PASSWORD": PIPELINE_USER[1],
            **WORKER_SETTINGS,  # as in a universe's worker
        }
    )
    configure_logging()
    client_defaults()
    mlflow.set_tracking_uri(server.url)
    mlflow.set_experiment(EXPERIMENT)
    sample = pd.read_csv(SAMPLE_FILE)
    values = {param.name: param.text(param.default) for param in PIPELINE_PARAMS if param.default is not None}
    values = {
        name: value for name, value in values.items() if name not in ("reuse_training", "register_model")
    }
    values.update({"epochs": str(epochs), "max_row_limit": "1500"})
    wall = 0.0
    for index, ticker in enumerate(("WARM", "LOAD")):
        path = folder / f"{ticker}.csv"
        sample.iloc[index * 300 : index * 300 + 1700].to_csv(path, index=False)
        recorder.recording, recorder.calls = index == 1, []
        processes = server_processes(server, cluster)
        cpu_before, started = cpu_seconds(processes), time.perf_counter()
        run_pipeline({**values, "company_abbreviation": ticker, "data_source": str(path)}, backend=BACKEND)
        wall = time.perf_counter() - started
        server_cpu = cpu_seconds(server_processes(server, cluster)) - cpu_before
    recorder.recording = False
    return wall, server_cpu, recorder.calls


def replay(calls: list[dict], rate: float, seconds: float, threads: int) -> dict[str, object]:
    """Send `calls` round-robin at `rate` per second for `seconds`; latencies and outcomes."""
    latencies: list[float] = []
    outcomes: collections.Counter = collections.Counter()
    unanswered: collections.Counter = collections.Counter()  # endpoint -> requests not answered 2xx
    lock = threading.Lock()
    local = threading.local()

    def send(call: dict) -> None:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        started = time.perf_counter()
        try:
            answer = session.request(
                call["method"],
                call["url"],
                headers=call["headers"],
                data=call["body"],
                timeout=60,
                verify=False,
            )
            kind = "2xx" if answer.ok else f"{answer.status_code // 100}xx"
        except requests.RequestException as error:
            kind = f"failed ({type(error).__name__})"
        with lock:
            latencies.append(time.perf_counter() - started)
            outcomes[kind] += 1
            if kind != "2xx":
                unanswered[f"{kind} {endpoint(call)}"] += 1

    interval = 1 / rate
    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
        started = time.perf_counter()
        sent = 0
        while (elapsed := time.perf_counter() - started) < seconds:
            pool.submit(send, calls[sent % len(calls)])
            sent += 1
            time.sleep(max(0.0, sent * interval - (time.perf_counter() - started)))
        logger.info("sent %d requests in %.0f s; waiting for the last answers", sent, elapsed)
    latencies.sort()
    return {
        "sent": sent,
        "per second": sent / seconds,
        "p50 ms": 1000 * statistics.median(latencies),
        "p95 ms": 1000 * latencies[int(0.95 * (len(latencies) - 1))],
        "outcomes": dict(outcomes),
        "not 2xx": dict(unanswered.most_common()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tickers-per-hour", type=float, default=500)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--server-workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=5)
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    recorder = Recorder()
    with tempfile.TemporaryDirectory(prefix="tracking-load-") as name:
        folder = Path(name)
        (folder / "artifacts").mkdir()
        cluster = PostgresCluster()
        server = TeamServer(cluster, folder / "artifacts")
        try:
            cluster.init().start()
            cluster.create_database("mlflow")
            cluster.create_database("mlflow_auth")
            server.start("--workers", str(arguments.server_workers))
            experiment = server.api("POST", "experiments/create", name=EXPERIMENT).json()["experiment_id"]
            server.create_user(*PIPELINE_USER)
            server.grant("experiment", experiment, PIPELINE_USER[0], "EDIT")
            wall, server_cpu, calls = one_ticker(server, cluster, folder, recorder, arguments.epochs)
            rate = len(calls) * arguments.tickers_per_hour / 3600
            logger.info(
                "replaying %d requests at %.1f per second for %.0f s", len(calls), rate, arguments.seconds
            )
            load = replay(calls, rate, arguments.seconds, arguments.threads)
        finally:
            server.stop()
            cluster.remove()
    by_endpoint = collections.Counter(endpoint(call) for call in calls)
    seconds_by_endpoint = collections.Counter()
    for call in calls:
        seconds_by_endpoint[endpoint(call)] += call["seconds"]
    server_seconds = sum(call["seconds"] for call in calls)
    print(
        f"\nOne ticker ({arguments.epochs} epochs, 1,500 days, registration included): {len(calls)} requests"
    )
    for name, count in by_endpoint.most_common():
        print(f"  {count:4d}  {seconds_by_endpoint[name]:6.3f} s  {name}")
    print(
        f"of the ticker's {wall:.1f} s wall: waiting for the server {server_seconds:.2f} s "
        f"({server_seconds / wall:.1%}; the requests' round trips), the server's and its database's "
        f"CPU {server_cpu:.2f} s ({server_cpu / wall:.1%})"
    )
    print(
        f"\nLoad: {arguments.tickers_per_hour:g} tickers an hour = {rate:.1f} requests/s, for "
        f"{arguments.seconds:g} s, team server with {arguments.server_workers} worker(s):"
    )
    print(
        f"  sent {load['sent']} ({load['per second']:.1f}/s); p50 {load['p50 ms']:.0f} ms, "
        f"p95 {load['p95 ms']:.0f} ms; outcomes {load['outcomes']}"
    )
    for name, count in load["not 2xx"].items():
        print(f"  {count:4d}  {name}")


if __name__ == "__main__":
    main()
