"""A separately started Ray cluster for tests: `ray start --head --block` on 127.0.0.1, its own temp dir.

The head runs in its own process group and is stopped by signalling that group; any process of this
cluster that left the group (found by its temp dir on the command line) is stopped too. Other Ray
instances on the machine (another test's local Ray) are never touched, which `ray stop` would not
guarantee.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from deploy.local_serving import HOST, free_port, stop_process_group

READY_LINE = "Ray runtime started."  # what `ray start` prints once the head's processes are up


@dataclass
class RayHead:
    """A one-node Ray cluster with `num_cpus` CPUs; `address` is what RAY_ADDRESS takes."""

    num_cpus: int = 2
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="ray", dir="/tmp")))
    port: int = field(default_factory=free_port)
    token: str = field(default_factory=lambda: secrets.token_hex(32))
    process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def client_env(self) -> dict[str, str]:
        """What a driver needs to use this cluster: its address and its token (Ray's token auth)."""
        return {"RAY_ADDRESS": self.address, **self._auth()}

    def _auth(self) -> dict[str, str]:
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token}

    def start(self, timeout: float = 120) -> RayHead:
        ray = shutil.which("ray", path=os.path.dirname(sys.executable)) or "ray"
        command = [ray, "start", "--head", "--block", "--node-ip-address", HOST, "--port", str(self.port)]
        command += ["--num-cpus", str(self.num_cpus), "--temp-dir", str(self.folder / "t")]
        command += ["--include-dashboard", "false", "--disable-usage-stats"]
        command += ["--ray-client-server-port", str(free_port())]
        env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"} | self._auth()
        env["PYTHONUNBUFFERED"] = "1"  # its console tells when it is ready
        log = (self.folder / "head.log").open("w")
        self.process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ray start exited: {self.log()[-3000:]}")
            if READY_LINE in self.log():  # read from its console: a `ray status` costs 2 s of CPU
                return self
            time.sleep(0.3)
        raise RuntimeError(f"the Ray head did not come up within {timeout:.0f} s: {self.log()[-3000:]}")

    def log(self) -> str:
        return (self.folder / "head.log").read_text(errors="replace")

    def diagnostics(self) -> str:
        """The head's console and its GCS server's error log (both removed by `stop`), for a failing test."""
        gcs = "".join(
            path.read_text(errors="replace")[-2000:] for path in self.folder.rglob("gcs_server.err")
        )
        return f"\n--- ray start ---\n{self.log()[-2000:]}\n--- gcs_server.err ---\n{gcs}"

    def stop(self) -> None:
        if self.process is not None:
            # `ray start --block` takes over 30 s to wind down on SIGTERM; a throwaway head need not
            stop_process_group(self.process, grace_seconds=5)
            self.process = None
        for pid in self._strays():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.folder, ignore_errors=True)

    def _strays(self) -> list[int]:
        """Processes whose command line names this cluster's temp dir."""
        marker = str(self.folder).encode()
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if marker in (entry / "cmdline").read_bytes():
                        found.append(int(entry.name))
                except OSError:
                    continue
        return [pid for pid in found if pid != os.getpid()]
