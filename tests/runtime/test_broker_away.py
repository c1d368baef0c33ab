"""A service whose broker is away answers health checks and stops cleanly."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from services.runtime.datadir import DataDir, ensure_genesis

pytestmark = pytest.mark.functional


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_health_is_served_while_the_broker_is_away_and_sigterm_stops_cleanly(
        tmp_path: Path) -> None:
    """Found in review: no admin endpoint answered until the broker did, and SIGTERM
    ended in a traceback after the backoff."""
    data = DataDir(tmp_path / "net")
    ensure_genesis(data)
    port = free_port()
    env = {**os.environ, "ECOSPHERE_AMQP_URL": "amqp://guest:guest@127.0.0.1:1/",
           "ECOSPHERE_DATA_DIR": str(data.root), "ECOSPHERE_ADMIN_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "-m", "services.cli", "run", "ledger"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                health = get(f"http://127.0.0.1:{port}/healthz")
                break
            except OSError:
                assert time.monotonic() < deadline, "no /healthz while the broker is away"
                time.sleep(0.1)
        assert health[0] == 200
        status, ready = get(f"http://127.0.0.1:{port}/readyz")
        assert status == 503 and "not connected to the broker" in str(ready["detail"])
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out.decode()[-2000:]
    assert b"Traceback" not in out
