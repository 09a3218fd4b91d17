"""``python -m demo``: replay The Carpentries' public workshop records (2012-2019, and CarpentryCon 2022) through
the four services, then print the occupancy and budget reports and write demo-report.json.

Starts the embedded broker and the services (devstack.stack.Stack; Kafka from KAFKA_BOOTSTRAP_SERVERS when set)
unless --url-scheduling/--url-enrollment/--url-finance/--url-reporting name running services. Stops everything
it started when done, unless --keep-running (then it waits for Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

from devstack.stack import SERVICES, WRITER_ROLE, Stack, role_tokens, wait_quiescent

from .mapping import DATA_DIR, build_plan
from .policy import DEFAULT_POLICY, load_policy
from .replay import Urls, replay
from .report import build_report, read_reporting, render

STORE_SUFFIXES = (".db", ".db-wal", ".db-shm")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="var/demo", type=Path,
                        help="SQLite files, logs and demo-report.json (default var/demo)")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="read at most N rows of each input file (a quick run)")
    parser.add_argument("--keep-running", action="store_true", help="keep the stack up after the report, until Ctrl-C")
    parser.add_argument("--keep-stores", action="store_true",
                        help="keep the services' SQLite files of an earlier run in --workdir (default: start empty; "
                             "the replay is idempotent, so a rerun on kept stores reports the same figures)")
    parser.add_argument("--policy", type=Path, default=DEFAULT_POLICY, help="policy file (default demo/policy.toml)")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help="the Carpentries files")
    parser.add_argument("--report", type=Path, default=None, help="where to write the report "
                                                                 "(default <workdir>/demo-report.json)")
    parser.add_argument("--concurrency", type=int, default=4,
                        help="requests in flight (default 4: more only adds contention on a small machine)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    for name in SERVICES:
        parser.add_argument(f"--url-{name}", default=None, help=f"use the {name} service running at this URL")
    args = parser.parse_args(argv)
    given = [getattr(args, f"url_{n}") for n in SERVICES]
    if any(given) and not all(given):
        parser.error("give all four --url-* options or none")
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    policy = load_policy(args.policy)
    plan = build_plan(policy, args.data_dir, args.limit)
    print(f"input: {sum(plan.rows_read.values())} rows in {len(plan.rows_read)} files -> {len(plan.sessions)} "
          f"sessions to import, {len(plan.rejected)} rows rejected before scheduling", flush=True)
    report_path = args.report or args.workdir / "demo-report.json"
    stack: Stack | None = None
    try:
        if args.url_scheduling:
            urls = Urls(*(getattr(args, f"url_{n}").rstrip("/") for n in SERVICES))
            # running services: the tokens of the roles from ILT_API_TOKENS (the services' own format), if set
            tokens = role_tokens(os.environ.get("ILT_API_TOKENS", ""))
            headers = {n: {"Authorization": f"Bearer {tokens[WRITER_ROLE[n]]}"} for n in SERVICES
                       if WRITER_ROLE[n] in tokens}
        else:
            args.workdir.mkdir(parents=True, exist_ok=True)
            if not args.keep_stores:
                for name in SERVICES:
                    for suffix in STORE_SUFFIXES:
                        (args.workdir / f"{name}{suffix}").unlink(missing_ok=True)
            kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
            print(f"starting {'the services (Kafka at ' + kafka + ')' if kafka else 'the embedded broker and the services'}"
                  f" in {args.workdir}", flush=True)
            stack = Stack(args.workdir).__enter__()
            urls = Urls(*(stack.url(n) for n in SERVICES))
            headers = {n: stack.headers_for(n) for n in SERVICES}
        booted = time.monotonic()
        outcome = asyncio.run(replay(urls, policy, plan.sessions, concurrency=args.concurrency,
                                     progress=not args.no_progress, headers=headers))
        replayed = time.monotonic()
        print("waiting until every service has processed every event...", flush=True)
        wait_quiescent(urls.as_dict(), timeout=900)
        settled = time.monotonic()
        reporting = read_reporting(urls.reporting, headers.get("reporting"))
        seconds = {"start": round(booted - started, 2), **outcome.seconds,
                   "replay": round(replayed - booted, 2), "quiescence": round(settled - replayed, 2),
                   "total": round(time.monotonic() - started, 2)}
        report = build_report(policy, plan, outcome, reporting, seconds)
        report_path.parent.mkdir(parents=True, exist_ok=True)
        report_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(render(report))
        print(f"\nreport: {report_path}   ({seconds['total']:.0f} s)", flush=True)
        if args.keep_running and stack is not None:
            for name, proc in stack.processes.items():
                print(f"{name:<12} {proc.url}   docs: {proc.url}/docs")
            print("the stack keeps running: press Ctrl-C to stop", flush=True)
            try:
                signal.pause()
            except KeyboardInterrupt:
                pass
        ok = report["replay"]["cross_check"]["consistent"] and not report["replay"]["failures"]
        return 0 if ok else 1
    finally:
        if stack is not None:
            print("stopping the stack...", flush=True)
            stack.stop()


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)  # also when started in the background with SIGINT ignored
    sys.exit(main())
