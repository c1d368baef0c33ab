"""``ecosphere up``: the five services as separate processes over RabbitMQ.

Each service runs as ``python -m services.cli run <service>`` with its
settings in the environment, its log in ``<data>/<service>/service.log``.
Validators serve their admin endpoints on ``port + 1 .. port + 4``; the
gateway serves the API on ``port``. SIGINT/SIGTERM stop every child
(SIGTERM, then SIGKILL after a grace period) and ``up`` exits when all have.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

from services.runtime.datadir import SERVICES, DataDir

STOP_GRACE_S = 10.0


def admin_port(port: int, service: str) -> int:
    return port + 1 + SERVICES.index(service) if service != "gateway" else port


@dataclass
class ProcessNetwork:
    data: DataDir
    port: int
    amqp_url: str
    prefix: str = "ecosphere"
    extra_env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)

    def env(self, service: str) -> dict[str, str]:
        env = {**os.environ, **self.extra_env,
               "ECOSPHERE_SERVICE": service,
               "ECOSPHERE_DATA_DIR": str(self.data.root),
               "ECOSPHERE_AMQP_URL": self.amqp_url,
               "ECOSPHERE_AMQP__PREFIX": self.prefix,
               "PYTHONUNBUFFERED": "1",
               "ECOSPHERE_PARENT_PID": str(os.getpid())}
        if service == "gateway":
            env["ECOSPHERE_GATEWAY__PORT"] = str(self.port)
            # One machine: webhook receivers on this machine are the local developer's.
            env.setdefault("ECOSPHERE_GATEWAY__WEBHOOK_LOOPBACK_ALLOWED", "true")
        else:
            env["ECOSPHERE_ADMIN_PORT"] = str(admin_port(self.port, service))
        return env

    async def start_one(self, service: str) -> asyncio.subprocess.Process:
        log_path = self.data.log(service)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = log_path.open("ab")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.cli", "run", service, env=self.env(service),
            stdout=log_file, stderr=log_file, start_new_session=True)
        log_file.close()
        self.procs[service] = proc
        return proc

    async def start(self) -> None:
        for service in SERVICES:
            await self.start_one(service)

    def kill(self, service: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.get(service)
        if proc is not None and proc.returncode is None:
            os.kill(proc.pid, sig)

    async def stop_one(self, service: str) -> int | None:
        proc = self.procs.get(service)
        if proc is None:
            return None
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), STOP_GRACE_S)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        return proc.returncode

    async def stop(self) -> dict[str, int | None]:
        codes = await asyncio.gather(*(self.stop_one(s) for s in list(self.procs)))
        return dict(zip(list(self.procs), codes, strict=True))

    def exited(self) -> list[str]:
        return [s for s, p in self.procs.items() if p.returncode is not None]


def log_tail(path: Path, lines: int = 5) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
