"""The ``ecosphere`` command line.

``ecosphere up``     run the five services locally (over RabbitMQ, else embedded)
``ecosphere run``    run one service (how ``up`` starts each process)
``ecosphere keys``   key files;  ``ecosphere genesis``: the consortium's genesis
``ecosphere sim``    deterministic simulation of the consortium under faults
``ecosphere bench``  benchmarks that print their figures with the machine's limits
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.ledger.core.genesis import Genesis
    from services.runtime.datadir import DataDir


def _cmd_sim(args: argparse.Namespace) -> int:
    from services.composition import build_application
    from services.ledger.sim.simulator import SimConfig, run_seed

    config = SimConfig(replicas=args.replicas, byzantine=args.byzantine,
                       chaos_ms=args.chaos_ms, txs=args.txs, faults=not args.no_faults)
    if 3 * config.byzantine >= config.replicas:
        print("sim: byzantine replicas must be fewer than a third (n >= 3f+1)",
              file=sys.stderr)
        return 2
    seeds = [args.seed] if args.seed is not None else list(
        range(args.first_seed, args.first_seed + args.seeds))
    totals = {"safety_violations": 0, "liveness_failures": 0, "committed_blocks": 0,
              "committed_txs": 0}
    failed: list[int] = []
    started = time.monotonic()
    for seed in seeds:
        result = run_seed(seed, config, app=build_application())  # the real state machine
        totals["safety_violations"] += result.safety_violations
        totals["liveness_failures"] += result.liveness_failures
        totals["committed_blocks"] += result.committed_blocks
        totals["committed_txs"] += result.committed_txs
        if result.violation is not None:
            failed.append(seed)
            print(f"sim: seed {seed} FAILED: {result.violation}", file=sys.stderr)
            if args.seed is not None:
                print("\n".join(result.trace), file=sys.stderr)
        elif args.verbose:
            print(f"sim: seed {seed} ok blocks={result.committed_blocks} "
                  f"txs={result.committed_txs} digest={result.digest} "
                  f"rejected={sum(result.rejections.values())} "
                  f"misbehaviour={sum(result.misbehaviour.values())}", file=sys.stderr)
    elapsed = time.monotonic() - started
    print(f"sim: seeds={len(seeds)} replicas={config.replicas} byzantine={config.byzantine} "
          f"safety_violations={totals['safety_violations']} "
          f"liveness_failures={totals['liveness_failures']} "
          f"committed_blocks={totals['committed_blocks']} "
          f"committed_txs={totals['committed_txs']}")
    if failed:
        print(f"sim: failing seeds {failed} (replay one with --seed S)", file=sys.stderr)
    if args.verbose:
        print(f"sim: {elapsed:.1f}s wall", file=sys.stderr)
    return 1 if failed else 0


def _cmd_up(args: argparse.Namespace) -> int:
    import asyncio
    import os
    import signal
    from pathlib import Path

    from services.ledger.node.amqp import broker_answers
    from services.ledger.node.settings import DEFAULT_AMQP_URL
    from services.runtime.datadir import DataDir, ensure_genesis, lock_network

    data = DataDir(Path(args.data))
    lock = lock_network(data)  # raises NetworkInUse: one clear line, exit 2
    genesis = ensure_genesis(data)
    configured = os.environ.get("ECOSPHERE_AMQP_URL")

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if args.duration:
            loop.call_later(args.duration, stop.set)
        url = configured or DEFAULT_AMQP_URL
        if args.embedded or (not configured and not await broker_answers(url)):
            return await _up_embedded(args, data, stop)
        return await _up_processes(args, data, genesis, url, stop, lock_fd=lock.fileno())

    print(f"ecosphere: chain {genesis.chain_id}, genesis {genesis.hash.hex()[:16]}, "
          f"data in {data.root}", flush=True)
    try:
        return asyncio.run(main())
    finally:
        lock.close()


async def _up_processes(args: argparse.Namespace, data: DataDir, genesis: Genesis, url: str,
                        stop: asyncio.Event, *, lock_fd: int | None = None) -> int:
    import asyncio
    import os

    from services.ledger.node import keys
    from services.ledger.node.amqp import Topology, claim_prefix
    from services.runtime.datadir import network_prefix
    from services.runtime.network import ProcessNetwork
    from services.runtime.uptraffic import LoadStats, drive_load, report

    # The network's own topology prefix: two networks on one broker never share queues
    # or exchanges (the operator may still name one with ECOSPHERE_AMQP__PREFIX).
    prefix = os.environ.get("ECOSPHERE_AMQP__PREFIX") or network_prefix(genesis)
    owner = await claim_prefix(url, Topology(prefix))  # raises PrefixInUse: exit 2
    network = ProcessNetwork(data, args.port, url, prefix=prefix,
                             status_path=data.root / "up.json", lock_fd=lock_fd)
    print(f"ecosphere: five services as processes over RabbitMQ at {_redact(url)} "
          f"(topology prefix {prefix}); logs in <data>/<service>/service.log", flush=True)

    def say(line: str) -> None:
        print(line, file=sys.stderr if "exited" in line or "killed" in line else sys.stdout,
              flush=True)

    tasks = []
    try:
        await network.start()
        gateway = f"http://127.0.0.1:{args.port}"
        print(f"ecosphere: gateway at {gateway} (Ctrl-C stops; a service that dies is "
              "restarted)", flush=True)
        load = LoadStats() if args.load else None
        if load is not None:
            tasks.append(asyncio.create_task(drive_load(gateway, keys.load(data.demo_key),
                                                        args.load, stop, load)))
        if args.report_s > 0:
            tasks.append(asyncio.create_task(report(gateway, args.report_s, stop, say,
                                                    load)))
        code = await network.supervise(stop, say)
    finally:  # whatever went wrong here, no child outlives this process unsupervised
        stop.set()
        if tasks:
            await asyncio.wait(tasks, timeout=10)
        codes = await network.stop()
        await owner.close()
    failed = {s: c for s, c in codes.items() if c not in (0, None)}
    print("ecosphere: stopped cleanly" if not failed else f"ecosphere: exit codes {failed}",
          flush=True)
    return code or (1 if failed else 0)


async def _up_embedded(args: argparse.Namespace, data: DataDir, stop: asyncio.Event) -> int:

    from services.ledger.core.replica import Commit
    from services.runtime.embedded import EmbeddedNetwork

    why = ("as asked (--embedded)" if getattr(args, "embedded", False)
           else "no AMQP URL configured and no broker answers")
    print(f"ecosphere: embedded mode: {why}, so all five services run in this process "
          "over the in-memory transport", flush=True)
    network = EmbeddedNetwork(data, port=args.port)
    stats = {"height": 0, "txs": 0}

    def committed(service: str, commit: Commit) -> None:
        if service == "gateway":
            stats["height"] = commit.block.height
            stats["txs"] += len(commit.block.txs)

    network.on_commit.append(committed)
    await network.start()
    print(f"ecosphere: gateway at http://127.0.0.1:{network.port} (Ctrl-C stops)", flush=True)
    load = asyncio.create_task(network.drive_load(args.load, stop)) if args.load else None
    last = (0, 0)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=args.report_s if args.report_s > 0
                                   else 3600)
        if args.report_s <= 0:
            continue
        height, txs = stats["height"], stats["txs"]
        print(f"ecosphere: height={height} txs={txs} "
              f"(+{height - last[0]} blocks, +{txs - last[1]} txs)", flush=True)
        last = (height, txs)
    if load is not None:
        await load
    failed = [name for name, r in network.runners.items() if r.failed is not None]
    await network.stop()
    print("ecosphere: stopped cleanly" if not failed else f"ecosphere: {failed} failed",
          flush=True)
    return 1 if failed else 0


def _redact(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url


def _cmd_run(args: argparse.Namespace) -> int:
    import asyncio
    import os
    import signal

    from services.runtime import logs
    from services.runtime.node import run_service
    from services.runtime.settings import NodeSettings

    if args.data:
        os.environ["ECOSPHERE_DATA_DIR"] = args.data
    settings = NodeSettings(service=args.service)
    logs.configure(settings.service, settings.log_level)

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        parent = os.environ.get("ECOSPHERE_PARENT_PID")
        if parent:
            watcher = loop.create_task(_stop_when_orphaned(int(parent), stop))
            watcher.add_done_callback(lambda _: None)
        return await run_service(settings, stop)

    profile_dir = os.environ.get("ECOSPHERE_PROFILE_DIR")
    if profile_dir:  # for profiling benchmarks: cProfile the whole process
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
        try:
            return asyncio.run(main())
        finally:
            profiler.disable()
            profiler.dump_stats(os.path.join(profile_dir, f"{settings.service}.prof"))
    return asyncio.run(main())


async def _stop_when_orphaned(parent: int, stop: asyncio.Event) -> None:
    """A service started by ``up`` stops when ``up`` is gone, however it died."""
    import os

    while not stop.is_set():
        if os.getppid() != parent:
            stop.set()
            return
        await asyncio.sleep(1.0)


def _cmd_views(args: argparse.Namespace) -> int:
    """Recreate every view from the chain (the gateway's store)."""
    import asyncio
    import os
    from pathlib import Path

    from services.composition import view_specs
    from services.gateway.views.mongo import open_database
    from services.gateway.views.projector import Projector
    from services.ledger.node.store import SqliteStore
    from services.runtime.datadir import DataDir

    data = DataDir(Path(args.data))
    store = SqliteStore(data.store(args.service))
    uri = args.mongo_uri or os.environ.get("ECOSPHERE_MONGO_URI")

    async def main() -> dict[str, object]:
        views = await open_database(uri, data_dir=data.root / args.service,
                                    db_name=args.db_name)
        try:
            report = await Projector(store, views.db, view_specs()).rebuild()
        finally:
            await views.close()
        return report.to_dict()

    try:
        print(json.dumps(asyncio.run(main()), sort_keys=True))
    finally:
        store.close()
    return 0


def _cmd_asyncapi(args: argparse.Namespace) -> int:
    """Write (or --check) docs/asyncapi.yaml from the composition's event catalogue."""
    from pathlib import Path

    from services.composition import event_catalogue
    from services.gateway import asyncapi

    output = asyncapi.DOCUMENT_PATH if args.output is None else Path(args.output)
    return asyncapi.write(event_catalogue(), output, check=args.check)


def _cmd_broker(args: argparse.Namespace) -> int:
    """Remove a network's queues and exchanges from the broker (``broker remove``)."""
    import asyncio
    import os
    from pathlib import Path

    from services.ledger.core.errors import LedgerError
    from services.ledger.node.amqp import Topology, broker_answers, delete_topology
    from services.ledger.node.settings import DEFAULT_AMQP_URL
    from services.runtime.datadir import DataDir, load_genesis, lock_network, network_prefix

    data = DataDir(Path(args.data))
    if not data.genesis_path.exists():
        print(f"ecosphere: no network in {data.root} (no genesis.json); give the --data "
              "of the network whose topology to remove", file=sys.stderr)
        return 2
    lock = lock_network(data)  # never pull the queues from under a running network
    try:
        try:
            genesis = load_genesis(data)
        except (LedgerError, ValueError, OSError) as exc:
            print(f"ecosphere: {data.genesis_path} is not a genesis document ({exc})",
                  file=sys.stderr)
            return 2
        prefix = args.prefix or os.environ.get("ECOSPHERE_AMQP__PREFIX") or network_prefix(
            genesis)
        url = args.amqp_url or os.environ.get("ECOSPHERE_AMQP_URL") or DEFAULT_AMQP_URL
        node_ids = sorted({k.key_id for k in genesis.keys if "node" in k.permissions}
                          | {v.key_id for v in genesis.validators.validators})

        async def remove() -> bool:
            if not await broker_answers(url):
                return False
            await delete_topology(url, Topology(prefix), node_ids)
            return True

        if not asyncio.run(remove()):
            print(f"ecosphere: no AMQP broker answers at {_redact(url)}", file=sys.stderr)
            return 2
    finally:
        lock.close()
    print(json.dumps({"removed_prefix": prefix, "queues_of_nodes": len(node_ids)}))
    return 0


def _cmd_chaos(args: argparse.Namespace) -> int:
    import asyncio
    import os
    from pathlib import Path

    from services.runtime.chaos import run_chaos

    figures = asyncio.run(run_chaos(
        rounds=args.rounds, senders=args.senders, rate=args.rate, interval_s=args.interval,
        port=args.port, data_dir=Path(args.data) if args.data else None, seed=args.seed,
        amqp_url=os.environ.get("ECOSPHERE_AMQP_URL")))
    print(json.dumps(figures, sort_keys=True))
    ok = figures["lost"] == 0 and figures["wedged_senders"] == 0 and figures[
        "identical_chains"]
    return 0 if ok else 1


def _cmd_demo(args: argparse.Namespace) -> int:
    from services.runtime.demo import run_demo

    return run_demo(args.gateway, args.data)


def _cmd_keys(args: argparse.Namespace) -> int:
    from pathlib import Path

    from services.ledger.node import keys

    path = Path(args.out)
    if path.exists():
        print(f"keys: {path} exists; refusing to overwrite a key", file=sys.stderr)
        return 2
    key = keys.generate()
    keys.save(key, path)
    print(json.dumps({"key_id": key.key_id, "public_key": key.public.hex(),
                      "file": str(path)}))
    return 0


def _cmd_genesis(args: argparse.Namespace) -> int:
    from pathlib import Path

    from services.runtime.datadir import DataDir, ensure_genesis

    data = DataDir(Path(args.data))
    existed = data.genesis_path.exists()
    genesis = ensure_genesis(data, **({"chain_id": args.chain_id} if args.chain_id else {}))
    if existed and args.chain_id and genesis.chain_id != args.chain_id:
        print(f"ecosphere: {data.genesis_path} already holds chain {genesis.chain_id!r}; "
              f"a genesis is never replaced (use another --data for {args.chain_id!r})",
              file=sys.stderr)
        return 2
    print(json.dumps({"chain_id": genesis.chain_id, "genesis_hash": genesis.hash.hex(),
                      "file": str(data.genesis_path), "created": not existed,
                      "validators": [v.key_id for v in genesis.validators.validators]}))
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    if args.target == "core":
        from services.ledger.bench import bench_core

        figures = bench_core(txs=args.txs, replicas=4)
    elif args.target == "trace":
        import asyncio

        from services.runtime.bench_trace import bench_trace

        figures = asyncio.run(bench_trace(pallets=args.pallets, seconds=args.duration,
                                          readers=args.concurrency))
    elif args.target == "gateway":
        import asyncio

        from services.runtime.bench_gateway import bench_gateway

        figures = asyncio.run(bench_gateway(duration=args.duration, rate=args.rate or 1000.0,
                                            readers=args.concurrency))
    else:
        import asyncio

        from services.runtime.bench_network import bench_network

        figures = asyncio.run(bench_network(duration=args.duration, rate=args.rate,
                                            batch=args.batch,
                                            concurrency=args.concurrency))
    if args.json:
        print(json.dumps(figures, sort_keys=True))
    else:
        for name, value in figures.items():
            print(f"{name}: {value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ecosphere", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("sim", help="deterministic simulation under faults")
    sim.add_argument("--seeds", type=int, default=100, help="number of seeds to run")
    sim.add_argument("--first-seed", type=int, default=0)
    sim.add_argument("--seed", type=int,
                     help="replay one seed exactly (prints its trace if it fails)")
    sim.add_argument("--replicas", type=int, default=4)
    sim.add_argument("--byzantine", type=int, default=1)
    sim.add_argument("--chaos-ms", type=int, default=20_000,
                     help="simulated time with faults before the network heals")
    sim.add_argument("--txs", type=int, default=40, help="client transactions per seed")
    sim.add_argument("--no-faults", action="store_true")
    sim.add_argument("-v", "--verbose", action="store_true")
    sim.set_defaults(func=_cmd_sim)

    up = sub.add_parser("up", help="run the five services locally (RabbitMQ or embedded)")
    up.add_argument("--data", default="data", help="data directory (created when absent)")
    up.add_argument("--port", type=int, default=8080, help="the gateway's HTTP port")
    up.add_argument("--embedded", action="store_true",
                    help="run in one process over the in-memory transport")
    up.add_argument("--duration", type=float, default=0, help="stop after S seconds")
    up.add_argument("--load", type=int, default=0,
                    help="a demo merchant anchors documents at this rate (tx/s)")
    up.add_argument("--report-s", type=float, default=2.0,
                    help="print a progress line this often (0: never)")
    up.set_defaults(func=_cmd_up)

    run = sub.add_parser("run", help="run one service (settings from ECOSPHERE_*)")
    run.add_argument("service", choices=["ledger", "trace", "customs", "credit", "gateway"])
    run.add_argument("--data", help="data directory (else ECOSPHERE_DATA_DIR)")
    run.set_defaults(func=_cmd_run)

    keys_cmd = sub.add_parser("keys", help="key management")
    keys_sub = keys_cmd.add_subparsers(dest="keys_command", required=True)
    new = keys_sub.add_parser("new", help="generate an Ed25519 key file (0600)")
    new.add_argument("--out", required=True)
    new.set_defaults(func=_cmd_keys)

    views = sub.add_parser("views", help="the gateway's MongoDB views")
    views.add_argument("action", choices=["rebuild"])
    views.add_argument("--data", default="data")
    views.add_argument("--service", default="gateway", help="whose store to read")
    views.add_argument("--mongo-uri", help="else $ECOSPHERE_MONGO_URI, else the embedded "
                                           "server (stop the gateway first)")
    views.add_argument("--db-name", default="ecosphere")
    views.set_defaults(func=_cmd_views)

    doc = sub.add_parser("asyncapi", help="write docs/asyncapi.yaml (partner events)")
    doc.add_argument("--output", default=None,
                     help="where to write (default: docs/asyncapi.yaml of this checkout)")
    doc.add_argument("--check", action="store_true",
                     help="do not write; fail if the file is stale or invalid")
    doc.set_defaults(func=_cmd_asyncapi)

    broker = sub.add_parser("broker", help="the network's RabbitMQ topology")
    broker.add_argument("action", choices=["remove"],
                        help="remove: delete the network's queues and exchanges (stop "
                             "'ecosphere up' first; they are declared again at the next start)")
    broker.add_argument("--data", default="data", help="the network's data directory")
    broker.add_argument("--prefix", help="topology prefix (default: the network's own, "
                                         "from its genesis, or $ECOSPHERE_AMQP__PREFIX)")
    broker.add_argument("--amqp-url", help="else $ECOSPHERE_AMQP_URL, else the local broker")
    broker.set_defaults(func=_cmd_broker)

    chaos = sub.add_parser("chaos", help="soak 'ecosphere up' under kill -9 and broker "
                                         "drops; prints rounds, losses, wedged senders")
    chaos.add_argument("--rounds", type=int, default=12)
    chaos.add_argument("--senders", type=int, default=16)
    chaos.add_argument("--rate", type=float, default=200.0, help="offered tx/s in all")
    chaos.add_argument("--interval", type=float, default=8.0, help="seconds between faults")
    chaos.add_argument("--port", type=int, default=18300)
    chaos.add_argument("--data", help="data directory (default: a new temporary one)")
    chaos.add_argument("--seed", type=int, default=1, help="which validator each kill hits")
    chaos.set_defaults(func=_cmd_chaos)

    demo = sub.add_parser("demo", help="play the supply-chain scenario against 'ecosphere up'")
    demo.add_argument("--gateway", default="http://127.0.0.1:8080")
    demo.add_argument("--data", default="data", help="the data directory of 'ecosphere up'")
    demo.set_defaults(func=_cmd_demo)

    gen = sub.add_parser("genesis", help="create the consortium's keys and genesis")
    gen.add_argument("--data", default="data")
    gen.add_argument("--chain-id", help="for a new genesis (default ecosphere-local)")
    gen.set_defaults(func=_cmd_genesis)

    from services.sdk import cli as client_cli

    client_cli.add_parser(sub)

    bench = sub.add_parser("bench", help="benchmarks (figures with the machine's limits)")
    bench.add_argument("target", choices=["core", "network", "gateway", "trace"])
    bench.add_argument("--json", action="store_true")
    bench.add_argument("--pallets", type=int, default=4,
                       help="trace: pallets of 10 tins, each tin a 50-step history")
    bench.add_argument("--txs", type=int, default=20_000, help="core: transactions")
    bench.add_argument("--duration", type=float, default=20.0, help="network: seconds")
    bench.add_argument("--rate", type=float, help="network: offered tx/s (else saturate)")
    bench.add_argument("--batch", type=int, default=200, help="network: txs per request")
    bench.add_argument("--concurrency", type=int, default=16,
                       help="network: requests in flight when saturating")
    bench.set_defaults(func=_cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "client":
        from services.sdk import cli as client_cli

        return client_cli.run(args)
    from pydantic import ValidationError

    from services.ledger.node.amqp import PrefixInUse
    from services.ledger.node.keys import KeyFileError
    from services.ledger.node.store import StoreInUse
    from services.runtime.datadir import NetworkInUse
    from services.runtime.settings import ConfigFileError

    try:
        return int(args.func(args))
    except (StoreInUse, NetworkInUse, PrefixInUse, KeyFileError, ConfigFileError,
            ValidationError) as exc:
        # An operator's mistake: one clear line, no traceback.
        print(f"ecosphere: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
