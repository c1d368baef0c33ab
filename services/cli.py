"""The ``ecosphere`` command line.

``ecosphere up``     run the network locally (the four validators, embedded)
``ecosphere sim``    deterministic simulation of the consortium under faults
``ecosphere bench``  benchmarks that print their figures with the machine's limits
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Sequence


def _cmd_sim(args: argparse.Namespace) -> int:
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
        result = run_seed(seed, config)
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
    import signal
    from pathlib import Path

    from services.ledger.core.replica import Commit
    from services.ledger.node.localnet import DataDir, EmbeddedNetwork

    network = EmbeddedNetwork(DataDir(Path(args.data)))
    print("ecosphere: embedded network: validators ledger, trace, customs and credit in one "
          "process over the in-memory transport, stores under " + str(Path(args.data)),
          flush=True)
    stats = {"height": 0, "txs": 0}

    def committed(service: str, commit: Commit) -> None:
        if service == "ledger":
            stats["height"] = commit.block.height
            stats["txs"] += len(commit.block.txs)

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        network.on_commit.append(committed)
        genesis = await network.start()
        print(f"ecosphere: chain {genesis.chain_id}, genesis {genesis.hash.hex()[:16]}, "
              f"{len(genesis.validators.validators)} validators; Ctrl-C stops", flush=True)
        load = asyncio.create_task(network.drive_load(args.load, stop)) if args.load else None
        if args.duration:
            loop.call_later(args.duration, stop.set)
        last = (0, 0)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=args.report_s)
            height, txs = stats["height"], stats["txs"]
            print(f"ecosphere: height={height} txs={txs} "
                  f"(+{height - last[0]} blocks, +{txs - last[1]} txs)", flush=True)
            last = (height, txs)
        if load is not None:
            await load
        failed = [name for name, r in network.runners.items() if r.failed is not None]
        network.stop()
        print("ecosphere: stopped cleanly" if not failed else f"ecosphere: {failed} failed",
              flush=True)
        return 1 if failed else 0

    return asyncio.run(main())


def _cmd_bench(args: argparse.Namespace) -> int:
    from services.ledger.bench import bench_core

    if args.target != "core":
        print(f"bench: unknown target {args.target!r}", file=sys.stderr)
        return 2
    figures = bench_core(txs=args.txs, replicas=4)
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
    sim.add_argument("--seed", type=int, help="replay one seed and print its trace")
    sim.add_argument("--replicas", type=int, default=4)
    sim.add_argument("--byzantine", type=int, default=1)
    sim.add_argument("--chaos-ms", type=int, default=20_000,
                     help="simulated time with faults before the network heals")
    sim.add_argument("--txs", type=int, default=40, help="client transactions per seed")
    sim.add_argument("--no-faults", action="store_true")
    sim.add_argument("-v", "--verbose", action="store_true")
    sim.set_defaults(func=_cmd_sim)

    up = sub.add_parser("up", help="run the network locally (embedded default)")
    up.add_argument("--data", default="data", help="data directory (created when absent)")
    up.add_argument("--duration", type=float, default=0, help="stop after S seconds")
    up.add_argument("--load", type=int, default=0,
                    help="a demo merchant anchors documents at this rate (tx/s)")
    up.add_argument("--report-s", type=float, default=2.0)
    up.set_defaults(func=_cmd_up)

    bench = sub.add_parser("bench", help="benchmarks (figures with the machine's limits)")
    bench.add_argument("target", choices=["core"])
    bench.add_argument("--json", action="store_true")
    bench.add_argument("--txs", type=int, default=20_000)
    bench.set_defaults(func=_cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
