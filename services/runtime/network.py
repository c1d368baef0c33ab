"""``ecosphere up``: the five services as separate processes over RabbitMQ, supervised.

Each service runs as ``python -m services.cli run <service>`` with its
settings in the environment, its log in ``<data>/<service>/service.log``.
Validators serve their admin endpoints on ``port + 1 .. port + 4``; the
gateway serves the API on ``port``.

Supervision (:meth:`ProcessNetwork.supervise`): a service that dies is
restarted with exponential backoff (``RestartPolicy``) while the others keep
running — four validators tolerate one fault, and a restarted replica catches
up from its peers. Restarts are printed, counted in the restarted service's
``/metrics`` (``ecosphere_restarts_total``) and written, with every child's
pid, to ``<data>/up.json``. A child that exits with code 2 (an operator's
mistake: a store in use, bad settings) is not restarted: everything stops and
``up`` exits 2 with that child's last log lines. Only SIGINT/SIGTERM stop the
network otherwise (SIGTERM to every child, then SIGKILL after a grace period).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from services.runtime.datadir import SERVICES, DataDir

STOP_GRACE_S = 10.0
EXIT_OPERATOR_ERROR = 2  # what ``ecosphere run`` exits with for a mistake restarts cannot fix
EXIT_UPGRADE_REQUIRED = 3  # the chain runs a composition the service's code lacks


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    stable_s: float = 60.0  # a child up this long restarts next time without delay
    poll_s: float = 0.2  # how often children are checked

    def delay(self, restarts_in_a_row: int) -> float:
        doublings = max(0, restarts_in_a_row - 1)
        return float(min(self.backoff_max_s, self.backoff_initial_s * 2.0 ** doublings))


@dataclass
class ChildState:
    restarts: int = 0  # restarts since ``up`` started
    in_a_row: int = 0  # restarts since the child last ran for ``stable_s``
    started_at: float = 0.0  # monotonic
    restart_at: float | None = None  # monotonic time of a scheduled restart
    last_exit: int | None = None


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
    children: dict[str, ChildState] = field(default_factory=dict)
    status_path: Path | None = None  # where ``supervise`` writes pids and restarts
    #: the data directory's ``up.lock`` (see datadir.lock_network): every child inherits
    #: it, so the lock holds until the last of them exits, even if ``up`` itself died
    lock_fd: int | None = None

    def env(self, service: str) -> dict[str, str]:
        env = {**os.environ, **self.extra_env,
               "ECOSPHERE_SERVICE": service,
               "ECOSPHERE_DATA_DIR": str(self.data.root),
               "ECOSPHERE_AMQP_URL": self.amqp_url,
               "ECOSPHERE_AMQP__PREFIX": self.prefix,
               "PYTHONUNBUFFERED": "1",
               "ECOSPHERE_PARENT_PID": str(os.getpid()),
               "ECOSPHERE_RESTARTS": str(self.children.get(service, ChildState()).restarts)}
        if service == "gateway":
            env["ECOSPHERE_GATEWAY__PORT"] = str(self.port)
            # One machine: webhook receivers on this machine are the local developer's.
            env.setdefault("ECOSPHERE_TRACE__WEBHOOK_LOOPBACK_ALLOWED", "true")
        else:
            env["ECOSPHERE_ADMIN_PORT"] = str(admin_port(self.port, service))
        return env

    async def start_one(self, service: str) -> asyncio.subprocess.Process:
        log_path = self.data.log(service)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = log_path.open("ab")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.cli", "run", service, env=self.env(service),
            stdout=log_file, stderr=log_file, start_new_session=True,
            pass_fds=() if self.lock_fd is None else (self.lock_fd,))
        log_file.close()
        self.procs[service] = proc
        state = self.children.setdefault(service, ChildState())
        state.started_at, state.restart_at = time.monotonic(), None
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

    async def supervise(self, stop: asyncio.Event, say: Callable[[str], None],
                        policy: RestartPolicy | None = None) -> int:
        """Keep every service running until ``stop``; returns ``up``'s exit code."""
        policy = policy or RestartPolicy()
        self.write_status()
        code = 0
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=policy.poll_s)
            if stop.is_set():
                break
            now = time.monotonic()
            changed = False
            for service in list(self.procs):
                proc, state = self.procs[service], self.children[service]
                if proc.returncode is not None and state.restart_at is None:
                    changed = True
                    state.last_exit = proc.returncode
                    if proc.returncode == EXIT_UPGRADE_REQUIRED:
                        state.restart_at = float("inf")  # restarting cannot help either
                        say(f"ecosphere: {service} halted: the chain upgraded to a "
                            f"composition its code lacks; upgrade the code and run 'up' "
                            f"again (the others go on):\n"
                            f"{log_tail(self.data.log(service), 2)}")
                        continue
                    if proc.returncode == EXIT_OPERATOR_ERROR:
                        say(f"ecosphere: {service} exited with {proc.returncode} (a setting or "
                            f"a busy store: restarting cannot help); stopping:\n"
                            f"{log_tail(self.data.log(service))}")
                        code = EXIT_OPERATOR_ERROR
                        stop.set()
                        break
                    state.in_a_row = 1 if now - state.started_at >= policy.stable_s \
                        else state.in_a_row + 1
                    delay = policy.delay(state.in_a_row)
                    state.restart_at = now + delay
                    say(f"ecosphere: {service} {describe_exit(proc.returncode)}; restarting "
                        f"in {delay:.2f}s (restart {state.restarts + 1}); last log lines:\n"
                        f"{log_tail(self.data.log(service), 3)}")
                elif state.restart_at is not None and state.restart_at <= now:
                    state.restarts += 1
                    await self.start_one(service)
                    changed = True
                    say(f"ecosphere: {service} restarted (pid {self.procs[service].pid}, "
                        f"restart {state.restarts})")
            if changed:
                self.write_status()
        return code

    def write_status(self) -> None:
        """``<data>/up.json``: each child's pid, restarts and last exit (atomically)."""
        if self.status_path is None:
            return
        status = {"pid": os.getpid(), "port": self.port, "amqp_prefix": self.prefix,
                  "services": {
                      service: {"pid": proc.pid,
                                "running": proc.returncode is None,
                                "restarts": self.children[service].restarts,
                                "last_exit": self.children[service].last_exit}
                      for service, proc in self.procs.items()}}
        tmp = self.status_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(status, indent=2, sort_keys=True))
        os.replace(tmp, self.status_path)


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"exited with {returncode}"


LOG_TAIL_BYTES = 16 * 1024  # read from the end of a log only (a log may be huge)


def log_tail(path: Path, lines: int = 5) -> str:
    try:
        with path.open("rb") as log_file:
            size = log_file.seek(0, os.SEEK_END)
            log_file.seek(max(0, size - LOG_TAIL_BYTES))
            tail = log_file.read(LOG_TAIL_BYTES)
    except OSError:
        return ""
    return "\n".join(tail.decode(errors="replace").splitlines()[-lines:])
