"""A real ``asc-relay serve`` process on 127.0.0.1 for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

from relay.signatures import sign
from tests.relay.conftest import REPOSITORY, SECRET, TOKEN
from tests.standins.github import GitHubStandIn

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Relay:
    process: subprocess.Popen[bytes]
    url: str
    database: str
    log: Path

    def post(
        self, body: bytes, path: str = "/webhook", **kwargs: object
    ) -> requests.Response:
        headers = {
            "content-type": "application/json",
            "x-apple-signature": sign(SECRET, body),
        }
        return requests.post(
            self.url + path, data=body, headers=headers, timeout=10, **kwargs
        )  # type: ignore[arg-type]

    def kill_group(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


def start_relay(
    tmp_path: Path, github: GitHubStandIn, database: str, *extra: str
) -> Relay:
    port = free_port()
    log = tmp_path / f"relay-{port}.log"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(REPO_ROOT),
        "ASC_WEBHOOK_SECRET": SECRET,
        "GITHUB_TOKEN": TOKEN,
        "GITHUB_REPOSITORY": REPOSITORY,
        "GITHUB_API_URL": github.url,
        "RELAY_DATABASE": database,
    }
    with open(log, "ab") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "relay.cli", "serve", "--port", str(port), *extra],
            env=env,
            stdout=handle,
            stderr=handle,
            start_new_session=True,
            cwd=REPO_ROOT,
        )
    relay = Relay(process, f"http://127.0.0.1:{port}", database, log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"relay exited early:\n{log.read_text()}")
        try:
            if requests.get(relay.url + "/readyz", timeout=1).status_code == 200:
                return relay
        except requests.RequestException:
            pass
        time.sleep(0.05)
    relay.kill_group()
    raise AssertionError(f"relay did not become ready:\n{log.read_text()}")


def wait_for(condition: Callable[[], object], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False
