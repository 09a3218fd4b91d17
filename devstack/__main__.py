"""``make run``: the broker and the four services on this machine, until Ctrl-C."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from .stack import Stack


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", default="var/run", help="where the SQLite files and logs go")
    parser.add_argument("--random-ports", action="store_true", help="pick free ports instead of 8001-8004")
    args = parser.parse_args()
    stack = Stack(Path(args.workdir), fixed_ports=not args.random_ports)
    print("starting" + (" (Kafka at " + os.environ["KAFKA_BOOTSTRAP_SERVERS"] + ")"
                        if os.environ.get("KAFKA_BOOTSTRAP_SERVERS") else " the embedded broker and the services"))
    with stack:
        where = "embedded Tansu" if stack.broker else "external Kafka"
        print(f"kafka        {stack.bootstrap_servers}  ({where})")
        for name, proc in stack.processes.items():
            print(f"{name:<12} {proc.url}   docs: {proc.url}/docs   store: {args.workdir}/{name}.db")
        if stack.auth:
            print(f"bearer tokens (dev only, new on every start; also in {args.workdir}/api-tokens):")
            for role, token in stack.tokens.items():
                print(f"  {role:<10} Authorization: Bearer {token}")
        else:
            print("authentication disabled (ILT_AUTH=disabled)")
        print(f"logs in {args.workdir}/*.log — press Ctrl-C to stop")
        sys.stdout.flush()
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
        print("stopping...")
    print("stopped")
    return 0


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)
    sys.exit(main())
