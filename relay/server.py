"""Production serving: gunicorn for HTTP plus the dispatcher, as one service.

``asc-relay serve`` runs the dispatcher as a thread of its own process and
gunicorn as a child process, so gunicorn can fork workers without copying a
running thread. The child gets SIGTERM if this process dies, and a SIGTERM
to this process stops both cleanly.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
from types import FrameType

from relay.config import Settings
from relay.dispatcher import Dispatcher
from relay.store import Store

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1


def gunicorn_command(host: str, port: int, workers: int, threads: int) -> list[str]:
    """Return the gunicorn command line for the relay's WSGI application."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"{host}:{port}",
        "--worker-class",
        "gthread",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--timeout",
        "30",
        "--graceful-timeout",
        "20",
        "--keep-alive",
        "5",
        "--max-requests",
        "20000",
        "--max-requests-jitter",
        "2000",
        "--error-logfile",
        "-",
        "--log-level",
        "warning",
        "relay.wsgi:application",
    ]


def _die_with_parent() -> None:
    """Ask Linux to send SIGTERM to the child when the relay process dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def serve(
    settings: Settings, *, host: str, port: int, workers: int, threads: int
) -> int:
    """Run until SIGTERM or SIGINT; return the exit status."""
    store = Store(settings.database)  # creates the schema before any worker starts
    dispatcher = Dispatcher(settings, store)
    dispatcher_thread = dispatcher.start()

    env = dict(os.environ)
    env["RELAY_DRY_RUN"] = "1" if settings.dry_run else ""
    child = subprocess.Popen(
        gunicorn_command(host, port, workers, threads),
        env=env,
        preexec_fn=_die_with_parent,  # noqa: PLW1509 - only sets a signal
    )
    logger.info(
        "listening on http://%s:%d (%d workers x %d threads, database %s)",
        host,
        port,
        workers,
        threads,
        settings.database,
    )

    stopping = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        if not stopping.is_set():
            logger.info("received %s; stopping", signal.Signals(signum).name)
            stopping.set()
            child.terminate()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    try:
        while child.poll() is None:
            if not dispatcher_thread.is_alive() and not stopping.is_set():
                logger.error("dispatcher thread ended unexpectedly; starting it again")
                dispatcher = Dispatcher(settings, store)
                dispatcher_thread = dispatcher.start()
            stopping.wait(0.5)
        child.wait()
    finally:
        dispatcher.stop()
        dispatcher_thread.join(timeout=25)
        if child.poll() is None:
            child.kill()

    if stopping.is_set():
        return 0
    logger.error("gunicorn exited with status %s", child.returncode)
    return child.returncode or 1
