"""The demo on the real data, checked against a plain recount straight from the CSV files.

The recount uses the csv module and the policy file only: no demo or service code is imported for the numbers.
It re-implements the few rules of demo/policy.toml independently: course and capacity per tag, learners who try
(Registered when usable, else attendance), enrolled = min(tried, capacity), waitlisted = the rest,
attended = min(attendance, enrolled), and venue conflicts in file order. Then it runs ``python -m demo`` as a
subprocess (its own broker and services) and compares demo-report.json: totals, by_year, rejected rows, budgets.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
import tomllib
import warnings
from collections import defaultdict
from datetime import UTC, date, datetime, time as clock, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "demo" / "data" / "carpentries"
SLOW_DEMO_SECONDS = 240


def rows(name: str) -> list[tuple[int, dict[str, str]]]:
    with open(DATA / name, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return [(reader.line_num, {k: (v or "").strip() for k, v in row.items() if k}) for row in reader]


def whole(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def recount() -> dict:
    policy = tomllib.loads((ROOT / "demo" / "policy.toml").read_text(encoding="utf-8"))
    courses, zones, ws_policy = policy["courses"], policy["time_zones"], policy["workshops"]
    day_start = clock.fromisoformat(policy["times"]["day_start"])
    day_end = clock.fromisoformat(policy["times"]["day_end"])
    workshops = rows("all_workshops_2018.csv")
    slugs = {r["slug"] for _, r in workshops}

    seen: dict[str, set] = defaultdict(set)
    for _, r in rows("attendance_registered_vs_daily.csv"):
        if r["Slug"] in slugs and r["Registered"]:
            seen[r["Slug"]].add(whole(r["Registered"]))
    registered = {s: next(iter(v)) for s, v in seen.items() if len(v) == 1 and None not in v}

    sessions, rejected = [], []

    def days(first: date, n: int, zone: str) -> list[tuple[datetime, datetime]]:
        tz = ZoneInfo(zone)
        return [(datetime.combine(first + timedelta(days=i), day_start, tz),
                 datetime.combine(first + timedelta(days=i), day_end, tz)) for i in range(n)]

    def workshop(file, line, slug, tags, course, start, country, attendance, venue, reg):
        att = whole(attendance)
        tried = reg if reg is not None else att
        online = country in ws_policy["online_countries"] or any(t in ws_policy["online_tags"] for t in tags)
        if tried is None:
            rejected.append((file, line, slug, "no_learner_count"))
            return
        if not online and country not in zones:
            rejected.append((file, line, slug, "no_time_zone"))
            return
        zone = ws_policy["online_time_zone"] if online else zones[country]
        sessions.append({"file": file, "line": line, "key": slug, "year": int(start[:4]), "virtual": online,
                         "venue": None if online else venue, "course": course,
                         "slots": days(date.fromisoformat(start), courses[course]["days"], zone),
                         "capacity": courses[course]["capacity"], "tried": tried, "attendance": att or 0})

    for line, r in workshops:
        tags = [t.strip() for t in r["tag_name"].split(",") if t.strip()]
        course = next((c for c in ws_policy["course_tag_priority"] if c in tags), ws_policy["default_course"])
        workshop("all_workshops_2018.csv", line, r["slug"], tags, course, r["start_date"], r["country"],
                 r["attendance"], r["host_name"], registered.get(r["slug"]))
    it = policy["instructor_training"]
    for line, r in rows("instructor_training_events.csv"):
        if r["slug"] not in slugs:
            tags = [it["tag_ids"].get(t.strip(), t.strip()) for t in r["tags"].split(",") if t.strip()]
            workshop("instructor_training_events.csv", line, r["slug"], tags, it["course"], r["start"], r["country"],
                     r["attendance"], None, None)  # a site of its own: never conflicts

    counts = [(datetime.strptime(f"{r['start_day_utc']} {r['start_time_utc']}", "%d %B, %Y %H:%M:%S"),
               r["session_name"], int(r["num_attendees"])) for _, r in rows("carpentrycon2022_num_attendees_by_session.csv")]
    ccon = courses[policy["carpentrycon"]["course"]]
    for line, r in rows("carpentrycon2022_zoom_session_metadata.csv"):
        start = datetime.strptime(f"{r['Start Day UTC']} {r['Start time UTC']}", "%d %B, %Y %I:%M:%S %p")
        found = [n for when, name, n in counts if when == start and r["Session name"].startswith(name)]
        learners = found[0] if len(found) == 1 else 0
        start = start.replace(tzinfo=UTC)
        sessions.append({"file": "carpentrycon2022_zoom_session_metadata.csv", "line": line,
                         "key": r["Session name"], "year": start.year, "virtual": True, "venue": "room " + r["Room"],
                         "course": policy["carpentrycon"]["course"],
                         "slots": [(start, start + timedelta(minutes=int(r["Minutes"])))],
                         "capacity": ccon["capacity"], "tried": learners, "attendance": learners})

    booked: dict[str, list] = defaultdict(list)
    kept = []
    for s in sessions:  # file order: the first session at a venue keeps it
        if s["venue"] is not None:
            clash = any(a < d and c < b for a, b in s["slots"] for c, d in booked[s["venue"]])
            if clash:
                rejected.append((s["file"], s["line"], s["key"], "booking_conflict"))
                continue
            booked[s["venue"]] += s["slots"]
        kept.append(s)

    def figures(group: list[dict]) -> dict:
        enrolled = sum(min(s["tried"], s["capacity"]) for s in group)
        capacity = sum(s["capacity"] for s in group)
        return {
            "sessions": len(group),
            "virtual_sessions": sum(1 for s in group if s["virtual"]),
            "capacity": capacity,
            "enrolled": enrolled,
            "waitlisted": sum(s["tried"] - min(s["tried"], s["capacity"]) for s in group),
            "attended": sum(min(s["attendance"], s["tried"], s["capacity"]) for s in group),
            "fill_rate": float((Decimal(enrolled) / Decimal(capacity)).quantize(Decimal("0.0001"), ROUND_HALF_UP)),
        }

    years: dict[int, list] = defaultdict(list)
    for s in kept:
        years[s["year"]].append(s)

    # budgets: allocated from the policy; committed = planned costs + per-learner rates of the enrolled;
    # actual = the invoiced planned costs
    budget: dict[tuple[str, str], dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for cc, by_year in policy["budgets"].items():
        for year, amount in by_year.items():
            budget[(cc, str(year))]["allocated"] += Decimal(amount)
    for s in kept:
        cc = courses[s["course"]]["cost_centre"]
        kind = "carpentrycon" if s["file"].startswith("carpentrycon") else ("virtual" if s["virtual"] else "classroom")
        fixed = sum(Decimal(c["amount"]) for c in policy["planned_costs"][kind])
        enrolled = min(s["tried"], s["capacity"])
        per_learner = sum(Decimal(r["amount"]) * (len(s["slots"]) if r["per"] == "day" else 1)
                          for r in policy["per_learner_rates"].get(cc, []))
        line = budget[(cc, str(s["year"]))]
        line["committed"] += fixed + per_learner * enrolled
        if policy["planned_costs"]["invoice_planned_costs"]:
            line["actual"] += fixed

    return {
        "totals": figures(kept),
        "by_year": {str(y): figures(g) for y, g in sorted(years.items())},
        "rejected": sorted(rejected),
        "rows_read": {name: len(rows(name)) for name in (
            "all_workshops_2018.csv", "attendance_registered_vs_daily.csv", "instructor_training_events.csv",
            "carpentrycon2022_zoom_session_metadata.csv", "carpentrycon2022_num_attendees_by_session.csv")},
        "budget": {k: {f: str(v[f].quantize(Decimal("0.01"))) for f in ("allocated", "committed", "actual")}
                   for k, v in budget.items()},
    }


def test_recount_is_plausible():
    """The recount on its own (fast): every row is either a session or a rejected row with a reason."""
    expected = recount()
    assert expected["totals"]["sessions"] + len(expected["rejected"]) == 1983 + 2 + 72
    assert {r[3] for r in expected["rejected"]} == {"no_learner_count", "no_time_zone", "booking_conflict"}


def test_demo_report_matches_a_recount_from_the_csv_files(tmp_path: Path, record_property):
    expected = recount()
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}  # its own embedded broker
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "demo", "--workdir", str(tmp_path), "--no-progress"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=1800)
    seconds = time.monotonic() - started
    record_property("demo_seconds", round(seconds, 1))
    print(f"\nthe full demo took {seconds:.0f} s")
    if seconds > SLOW_DEMO_SECONDS:
        warnings.warn(f"the full demo took {seconds:.0f} s (> {SLOW_DEMO_SECONDS} s): the services may need speeding up",
                      stacklevel=1)
    assert done.returncode == 0, f"demo failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    report = json.loads((tmp_path / "demo-report.json").read_text(encoding="utf-8"))

    figures = ("sessions", "virtual_sessions", "capacity", "enrolled", "waitlisted", "attended", "fill_rate")
    assert {k: report["totals"][k] for k in figures} == expected["totals"]
    assert {y: {k: f[k] for k in figures} for y, f in report["by_year"].items()} == expected["by_year"]
    assert report["totals"]["awaiting_schedule"] == 0 and report["totals"]["cancelled_sessions"] == 0
    assert report["input"]["rows_read"] == expected["rows_read"]
    got_rejected = sorted((r["file"], r["line"], r["key"], r["reason"]) for r in report["input"]["rejected"])
    assert got_rejected == expected["rejected"]
    assert report["input"]["rows_rejected"] == len(expected["rejected"])

    got_budget = {(cc, p["period"]): {f: p[f] for f in ("allocated", "committed", "actual")}
                  for cc, b in report["budget"].items() for p in b["by_period"]}
    assert got_budget == expected["budget"]
    assert {b["currency"] for b in report["budget"].values()} == {"USD"}
    assert report["replay"]["failures"] == []
    assert report["policy"]["courses"]["SWC"]["capacity"] == 40
