"""Take docs/pipeline.md's screenshots of `mlflow ui`: two pipeline runs compared, and the registry page.

    python docs/ui_screenshot.py              # writes docs/mlflow-ui-compare.png, docs/mlflow-ui-registry.png
    python docs/ui_screenshot.py --output-dir /tmp --keep-store /tmp/ui-store

Runs `mlflow run . -P epochs=1` and `mlflow run . -P epochs=1 -P lstm_units=60` on a temporary SQLite
store, starts `mlflow ui` for it on 127.0.0.1, opens the experiment's chart view and the registered
model's page in headless Chromium (Debian's `chromium` package: `apt-get install -y chromium`) and writes
the PNGs. Not part of the tests. Every process it
starts is stopped at the end, also on failure. Takes about two minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from mlflow.tracking import MlflowClient

from deploy.local_serving import HOST, free_port
from flow_steps.config.names import DEFAULT_EXPERIMENT, registered_model_name
from flow_steps.runtime.lineage import PROJECT_ROOT

logger = logging.getLogger("ui_screenshot")

EXPERIMENT = DEFAULT_EXPERIMENT
REGISTERED_MODEL = registered_model_name("MSFT")
RUNS = (["-P", "epochs=1"], ["-P", "epochs=1", "-P", "lstm_units=60"])
CHROMIUM = ("chromium", "chromium-browser", "google-chrome")


def run_pipelines(env: dict[str, str]) -> None:
    """The two runs docs/pipeline.md compares, through `mlflow run` as a user would start them."""
    for parameters in RUNS:
        command = [sys.executable, "-m", "mlflow", "run", ".", "--env-manager", "local"]
        command += ["--experiment-name", EXPERIMENT, *parameters]
        logger.info("Running %s", " ".join(command[2:]))
        subprocess.run(command, cwd=PROJECT_ROOT, env=env, check=True, capture_output=True)


def start_ui(store: Path, port: int, log_file) -> subprocess.Popen:
    """`mlflow ui` on 127.0.0.1 in its own process group, once it answers."""
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        f"sqlite:///{store / 'mlflow.db'}",
    ]
    command += ["--default-artifact-root", (store / "mlruns").as_uri(), "--host", HOST, "--port", str(port)]
    process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow ui exited with {process.returncode}")
        try:
            if requests.get(f"http://{HOST}:{port}/health", timeout=2).ok:
                return process
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    raise RuntimeError("mlflow ui did not answer within 120 s")


def stop(process: subprocess.Popen) -> None:
    """End a process group started with start_new_session."""
    for signal_number, seconds in ((signal.SIGTERM, 15), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, signal_number)
            process.wait(timeout=seconds)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def screenshot(url: str, output: Path, width: int, height: int) -> None:
    """Render `url` in headless Chromium, waiting for the page's scripts, and save a PNG."""
    browser = next((shutil.which(name) for name in CHROMIUM if shutil.which(name)), None)
    if browser is None:
        raise SystemExit("no Chromium found: apt-get install -y chromium")
    with tempfile.TemporaryDirectory() as profile:
        command = [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
        command += [f"--user-data-dir={profile}", f"--window-size={width},{height}"]
        command += ["--virtual-time-budget=30000", f"--screenshot={output}", url]
        subprocess.run(command, check=True, capture_output=True, timeout=180)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output-dir", type=Path, default=PROJECT_ROOT / "docs")
    parser.add_argument("--keep-store", type=Path, help="use (and keep) this folder for the store")
    parser.add_argument("--width", type=int, default=1600)
    parser.add_argument("--height", type=int, default=1000)
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    with tempfile.TemporaryDirectory() as temporary:
        store = arguments.keep_store or Path(temporary)
        store.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{store / 'mlflow.db'}"
        env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
        env["MLFLOW_TRACKING_URI"] = uri
        if not MlflowClient(uri).search_experiments(filter_string=f"name = '{EXPERIMENT}'"):
            MlflowClient(uri).create_experiment(EXPERIMENT, artifact_location=(store / "mlruns").as_uri())
            run_pipelines(env)
        experiment_id = MlflowClient(uri).get_experiment_by_name(EXPERIMENT).experiment_id
        port = free_port()
        with (store / "ui.log").open("w") as log_file:
            ui = start_ui(store, port, log_file)
            try:
                base = f"http://{HOST}:{port}/#"
                pages = {  # workflowType: the UI's "Model training" view (it opens on GenAI otherwise)
                    "mlflow-ui-compare.png": f"{base}/experiments/{experiment_id}/runs"
                    "?workflowType=machine_learning&compareRunsMode=CHART",
                    "mlflow-ui-registry.png": f"{base}/models/{REGISTERED_MODEL}"
                    "?workflowType=machine_learning",
                }
                for name, url in pages.items():
                    logger.info("Screenshot of %s", url)
                    screenshot(url, arguments.output_dir / name, arguments.width, arguments.height)
                    logger.info("Wrote %s", arguments.output_dir / name)
            finally:
                stop(ui)


if __name__ == "__main__":
    main()
