from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from relay.config import GitHubAuth, Route, Settings
from relay.store import Store
from tests.standins.github import GitHubStandIn

if TYPE_CHECKING:
    from tests.relay.live import Relay

SECRET = "relay-test-secret-0123456789"
TOKEN = "test-token"
REPOSITORY = "example/ios-app"


def make_route(name: str = "default", **changes: object) -> Route:
    fields: dict[str, object] = {
        "name": name,
        "secrets": (SECRET.encode(),),
        "repository": REPOSITORY,
        "event_type": "asc-webhook",
        "github": GitHubAuth(token=TOKEN),
    }
    fields.update(changes)
    return Route(**fields)  # type: ignore[arg-type]


def make_settings(database: str, *routes: Route, **changes: object) -> Settings:
    fields: dict[str, object] = {
        "routes": {route.name: route for route in (routes or (make_route(),))},
        "database": database,
        "github_api_url": "http://127.0.0.1:9",
    }
    fields.update(changes)
    return Settings(**fields)  # type: ignore[arg-type]


@pytest.fixture
def database(tmp_path: Path) -> str:
    return str(tmp_path / "relay.db")


@pytest.fixture
def store(database: str) -> Iterator[Store]:
    store = Store(database)
    yield store
    store.close()


@pytest.fixture
def github() -> Iterator[GitHubStandIn]:
    standin = GitHubStandIn(tokens={TOKEN}, repositories={REPOSITORY}).start()
    yield standin
    standin.stop()


@pytest.fixture
def relay(tmp_path: Path, github: GitHubStandIn) -> Iterator[Relay]:
    from tests.relay.live import start_relay

    running = start_relay(tmp_path, github, str(tmp_path / "relay.db"))
    yield running
    if running.process.poll() is None:
        running.process.send_signal(signal.SIGTERM)
        try:
            running.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            running.kill_group()
