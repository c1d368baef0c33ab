"""``ecosphere up``'s supervisor, with stand-in children (tiny Python processes): what it
restarts, what it does not, and what it reports. The real services under kill -9 are
in tests/integration/test_up_chaos.py."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import pytest

from services.runtime.datadir import DataDir
from services.runtime.network import (
    EXIT_OPERATOR_ERROR,
    EXIT_UPGRADE_REQUIRED,
    ChildState,
    ProcessNetwork,
    RestartPolicy,
)

FAST = RestartPolicy(backoff_initial_s=0.05, backoff_max_s=0.2, stable_s=60, poll_s=0.02)


class StandIns(ProcessNetwork):
    """Children that run ``scripts[service]`` (one per start, the last one repeating)."""

    scripts: dict[str, list[str]]

    async def start_one(self, service: str) -> asyncio.subprocess.Process:
        runs = self.scripts[service]
        script = runs.pop(0) if len(runs) > 1 else runs[0]
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script)
        self.procs[service] = proc
        state = self.children.setdefault(service, ChildState())
        state.started_at, state.restart_at = time.monotonic(), None
        return proc


def network(tmp_path: Path, scripts: dict[str, list[str]]) -> StandIns:
    net = StandIns(DataDir(tmp_path), 0, "amqp://unused", status_path=tmp_path / "up.json")
    net.scripts = scripts
    return net


SLEEP = "import time; time.sleep(30)"


async def run(net: StandIns, seconds: float) -> tuple[int, list[str]]:
    lines: list[str] = []
    stop = asyncio.Event()
    for service in net.scripts:
        await net.start_one(service)
    asyncio.get_running_loop().call_later(seconds, stop.set)
    code = await net.supervise(stop, lines.append, FAST)
    for proc in net.procs.values():
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return code, lines


@pytest.mark.asyncio
async def test_a_child_that_dies_is_restarted_and_the_others_keep_running(tmp_path: Path) -> None:
    net = network(tmp_path, {"credit": ["raise SystemExit(1)", SLEEP], "ledger": [SLEEP]})
    code, lines = await run(net, 1.0)
    assert code == 0
    assert any("credit exited with 1" in line for line in lines), lines
    assert any("credit restarted" in line for line in lines), lines
    status = json.loads((tmp_path / "up.json").read_text())
    assert status["services"]["credit"]["restarts"] == 1
    assert status["services"]["credit"]["last_exit"] == 1
    assert status["services"]["ledger"]["restarts"] == 0


@pytest.mark.asyncio
async def test_restarts_back_off_when_a_child_keeps_dying(tmp_path: Path) -> None:
    net = network(tmp_path, {"credit": ["raise SystemExit(1)"], "ledger": [SLEEP]})
    code, lines = await run(net, 1.2)
    assert code == 0
    delays = [float(line.split("restarting in ")[1].split("s")[0])
              for line in lines if "restarting in" in line]
    assert delays[:3] == [0.05, 0.1, 0.2] and max(delays) == FAST.backoff_max_s


@pytest.mark.asyncio
async def test_an_operator_error_stops_everything_with_exit_2(tmp_path: Path) -> None:
    net = network(tmp_path, {"gateway": [f"raise SystemExit({EXIT_OPERATOR_ERROR})"],
                             "ledger": [SLEEP]})
    code, lines = await run(net, 5.0)
    assert code == EXIT_OPERATOR_ERROR
    assert any("restarting cannot help" in line for line in lines), lines
    assert not any("restarted" in line for line in lines)


@pytest.mark.asyncio
async def test_a_replica_whose_code_lacks_the_composition_is_not_restarted(tmp_path: Path) -> None:
    net = network(tmp_path, {"customs": [f"raise SystemExit({EXIT_UPGRADE_REQUIRED})"],
                             "ledger": [SLEEP]})
    code, lines = await run(net, 0.6)
    assert code == 0
    assert any("customs halted" in line for line in lines), lines
    assert not any("customs restarted" in line for line in lines)
    status = json.loads((tmp_path / "up.json").read_text())
    assert status["services"]["customs"]["running"] is False
    assert status["services"]["ledger"]["running"] is True


@pytest.mark.parametrize("restarts,expected", [(1, 0.05), (2, 0.1), (3, 0.2), (9, 0.2)])
def test_backoff_doubles_up_to_its_cap(restarts: int, expected: float) -> None:
    assert FAST.delay(restarts) == expected
