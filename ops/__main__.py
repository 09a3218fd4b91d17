"""``python -m ops``: operator tools for the ILT services (one entry point for all four).

  replay --service S [--since POSITION|TIME]    republish S's stored events to the broker (after a broker loss)
  rebuild-projections [--service reporting]     reporting from zero: reset its store and rewind its consumer group
  dead-letters list --service S                 the records S's consumer dead-lettered, with the reason
  dead-letters show --service S ID              one of them with its original headers and value
  dead-letters redrive --service S (ID...|--all)  republish them to their original topics (after a fix)

Configuration as the services read it (the service's own environment: <SERVICE>_STORE_URL, KAFKA_BOOTSTRAP_SERVERS,
KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, KAFKA_SSL_*); --store-url and --bootstrap-servers override.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
from pathlib import Path
from typing import Any

from aiokafka.errors import KafkaError
from tqdm import tqdm

from shared.contracts.topics import EVENT_TOPICS, dead_letter_topic
from shared.messaging.kafka import Producer
from shared.settings import ServiceSettings
from shared.store import open_store

from . import tools

SERVICES = ("scheduling", "enrollment", "finance", "reporting")
PRODUCERS = ("scheduling", "enrollment", "finance")


def settings_of(service: str) -> ServiceSettings:
    module = importlib.import_module(f"services.{service}.settings")
    cls = next(v for k, v in vars(module).items()
               if k.endswith("Settings") and k != "ServiceSettings" and isinstance(v, type))
    return cls()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ops", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--store-url", help="the service's store (default: <SERVICE>_STORE_URL)")
    common.add_argument("--bootstrap-servers", help="Kafka (default: KAFKA_BOOTSTRAP_SERVERS)")
    common.add_argument("--no-progress", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True)

    replay = sub.add_parser("replay", parents=[common], help="republish a producer's stored events")
    replay.add_argument("--service", required=True, choices=PRODUCERS)
    replay.add_argument("--since", help="a store position (from it on) or an ISO 8601 time (recorded at or after)")

    rebuild = sub.add_parser("rebuild-projections", parents=[common],
                             help="reset reporting's projections and consume the topics again from the start")
    rebuild.add_argument("--service", default="reporting", choices=("reporting",))
    rebuild.add_argument("--yes", action="store_true", help="do not ask (reporting must be stopped)")

    dl = sub.add_parser("dead-letters", help="list, show and redrive dead-lettered records")
    dl_sub = dl.add_subparsers(dest="action", required=True)
    for name, text in (("list", "the dead-lettered records"), ("show", "one record with headers and value"),
                       ("redrive", "republish records to their original topics")):
        p = dl_sub.add_parser(name, parents=[common], help=text)
        p.add_argument("--service", required=True, choices=SERVICES)
        if name == "show":
            p.add_argument("id", help="topic:partition:offset as listed")
        if name == "redrive":
            p.add_argument("ids", nargs="*", help="topic:partition:offset as listed")
            p.add_argument("--all", action="store_true", help="every record not redriven yet")
        if name in ("list", "show"):
            p.add_argument("--json", action="store_true", help="JSON instead of a table")
    args = parser.parse_args(argv)
    if args.command == "dead-letters" and args.action == "redrive" and bool(args.ids) == bool(args.all):
        parser.error("dead-letters redrive: name the records or say --all (not both)")
    return args


def _bar(total: int | None, what: str, disabled: bool) -> Any:
    return tqdm(total=total, unit=" events" if what == "replay" else " records", desc=what, disable=disabled,
                file=sys.stderr)


def _existing(url: str, service: str) -> str:
    """An operator tool never creates a store: a SQLite file that is not there is a wrong path, not an empty
    store (it would report 0 records and leave an empty file behind)."""
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        raise ValueError(f"no {service} store at {url} (the file does not exist); give the service's store with"
                         f" --store-url or {service.upper()}_STORE_URL (`make run` keeps it in"
                         f" sqlite:///var/run/{service}.db)")
    return url


async def run(args: argparse.Namespace) -> int:
    settings = settings_of(args.service)
    store = open_store(_existing(args.store_url or settings.store_url, args.service))
    servers = args.bootstrap_servers or settings.kafka_bootstrap_servers
    security = settings.kafka_security()
    await store.open()
    producer = Producer(servers, security)
    try:
        if args.command == "replay":
            total = await tools.count_events(store, args.since)
            with _bar(total, "replay", args.no_progress) as bar:
                out = await tools.replay(store, producer, since=args.since, progress=bar.update)
            print(f"{args.service}: {out['published']} events republished (store positions "
                  f"{out['first_position']}..{out['last_position']}) to {servers}")
            return 0
        if args.command == "rebuild-projections":
            if not args.yes:
                answer = input("reporting must be stopped; its projections are deleted and rebuilt. Go on? [y/N] ")
                if answer.strip().lower() not in ("y", "yes"):
                    print("nothing done")
                    return 1
            out = await tools.rebuild_projections(store, settings.service_name, EVENT_TOPICS, servers, security)
            print(f"reporting reset: {out['documents']} projection documents, {out['inbox']} inbox entries and "
                  f"{out['checkpoints']} checkpoints deleted; {out['partitions_rewound']} partitions rewound. Start "
                  "reporting: it projects the topics from the start (replay the producers if the topics lost events).")
            return 0
        consumer, dl_topic = settings.service_name, dead_letter_topic(settings.service_name)
        if args.action == "list":
            docs = await tools.dead_letters(store)
            if args.json:
                print(json.dumps(docs, indent=2))
            else:
                print(f"{len(docs)} dead-lettered records of {consumer} (topic {dl_topic})")
                for d in docs:
                    state = f"redriven {d['redriven_at']}" if d.get("redriven_at") else "waiting"
                    print(f"{d['id']:<40} {d.get('reason', ''):<18} {d.get('failed_at', '')[:19]}  {state}  "
                          f"{(d.get('error') or '')[:80]}")
            return 0
        if args.action == "show":
            docs = {d["id"]: d for d in await tools.dead_letters(store)}
            if args.id not in docs:
                print(f"no dead letter {args.id} in {consumer}'s store", file=sys.stderr)
                return 2
            records = await tools.dead_letter_records(servers, dl_topic, {args.id}, security)
            out = {**docs[args.id], "record": tools.describe(records[args.id]) if args.id in records else None}
            print(json.dumps(out, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in out.items()))
            return 0
        ids = None if args.all else args.ids
        with _bar(len(ids) if ids else None, "redrive", args.no_progress) as bar:
            out = await tools.redrive(store, consumer, producer, servers, dl_topic, ids, security,
                                      progress=bar.update)
        print(f"redriven: {len(out['redriven'])}; not on the dead-letter topic any more: {len(out['not_found'])}; "
              f"skipped (applied before): {len(out['already_applied'])}")
        for key in ("not_found", "already_applied"):
            for dl_id in out[key]:
                print(f"  {key}: {dl_id}")
        return 0 if not out["not_found"] else 1
    finally:
        await producer.stop()
        await store.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(run(args))
    except (KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KafkaError as exc:
        servers = args.bootstrap_servers or settings_of(args.service).kafka_bootstrap_servers
        print(f"error: the Kafka brokers at {servers} cannot be reached or refused the records ({exc!r}); what was"
              " not acknowledged can be sent again by repeating the command; the brokers are given with"
              " --bootstrap-servers or KAFKA_BOOTSTRAP_SERVERS (`make run` prints the embedded broker's address)",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
