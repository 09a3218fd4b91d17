"""The demo's report: figures read from the reporting service's HTTP API (its projections), printed as tables
and written to demo-report.json. The loader's own counts only serve a cross-check, never as figures."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Any

import httpx

from .mapping import ImportPlan
from .policy import Policy
from .replay import ReplayOutcome, attendees

RULES = [
    "all_workshops_2018.csv: one session per row, session_id = slug; course = first tag of "
    "workshops.course_tag_priority (else default_course); capacity, days, cost centre from [courses]",
    "online (country in online_countries or a tag in online_tags): virtual, time zone online_time_zone, "
    "room 'online-<slug>'; else classroom at venue_id = host_name in time_zones[country]",
    "slots: courses.<code>.days consecutive days, times.day_start..times.day_end local time",
    "learners who try = usable Registered (attendance_registered_vs_daily.csv) else attendance; enrolled and "
    "waitlisted as enrollment decides; the first min(attendance, enrolled) enrolled learners attended",
    "rejected: no_learner_count (no attendance, no usable Registered), no_time_zone (classroom, country empty or "
    "not in time_zones), booking_conflict (scheduling 409: venue booked by an earlier row)",
    "instructor_training_events.csv: rows already in the workshops file skipped; the others TTT sessions, "
    "venue 'site-of-<slug>'",
    "CarpentryCon 2022: one virtual session per metadata row at its UTC start for Minutes, room "
    "'carpentrycon2022-<Room>'; learners = num_attendees of the same start whose name begins the session name, "
    "all attended; no count: scheduled without learners",
    "as_of: scheduling start-60 days, enrollment start-1 day, attendance at the end, invoices end+14 days; "
    "backdated=true; rates at history.setup_as_of, budgets on history.budget_allocated_on of the year before "
    "(allocation_id demo-<cost centre>-<year>: a rerun allocates nothing more)",
    "money: illustrative amounts from the policy, USD; invoices = the planned costs when invoice_planned_costs",
]
FIGURES = ("sessions", "virtual_sessions", "capacity", "enrolled", "waitlisted", "attended", "fill_rate")
BUDGET_FIGURES = ("allocated", "committed", "actual", "remaining")


def read_reporting(reporting_url: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    with httpx.Client(timeout=30, headers=headers) as client:
        def get(path: str) -> Any:
            response = client.get(f"{reporting_url}{path}")
            response.raise_for_status()
            return response.json()

        return {"totals": get("/occupancy/totals"), "by_year": get("/occupancy/by-year"),
                "by_course": get("/occupancy/by-course"), "budgets": get("/budgets")}


def _figures(group: dict[str, Any]) -> dict[str, Any]:
    return {k: group.get(k) for k in (*FIGURES[:6], "cancelled_sessions", "no_show", "fill_rate") if k in group}


def budget_section(lines: list[dict[str, Any]]) -> dict[str, Any]:
    """Per cost centre (one currency each here): the sums over its periods, and the lines per period.
    A cost centre's remaining is the sum of its periods' remaining (each period's budget stands alone)."""
    out: dict[str, Any] = {}
    for line in lines:
        cc = out.setdefault(line["cost_centre"], {"currency": line["currency"], "by_period": []})
        if cc["currency"] != line["currency"]:
            cc["currency"] = "mixed"
        cc["by_period"].append({"period": line["period"], "currency": line["currency"],
                                **{k: line[k] for k in BUDGET_FIGURES}})
    for cc in out.values():
        for k in BUDGET_FIGURES:
            cc[k] = str(sum((Decimal(p[k]) for p in cc["by_period"]), Decimal("0.00")))
    return out


def expected_from_answers(outcome: ReplayOutcome) -> dict[str, Any]:
    """What the services answered during the replay, summed by the loader: only to cross-check the report."""
    results = outcome.results
    return {
        "sessions": len(results),
        "virtual_sessions": sum(1 for r in results if r.session.delivery == "virtual"),
        "capacity": sum(r.session.capacity for r in results),
        "enrolled": sum(len(r.enrolled_ids) for r in results),
        "waitlisted": sum(r.waitlisted for r in results),
        "attended": sum(r.attended for r in results),
    }


def build_report(policy: Policy, plan: ImportPlan, outcome: ReplayOutcome, reporting: dict[str, Any],
                 seconds: dict[str, float]) -> dict[str, Any]:
    rejected = [r.as_dict() for r in plan.rejected] + [r.as_dict() for r in outcome.rejected]
    rejected.sort(key=lambda r: (_FILE_ORDER.get(r["file"], 9), r["line"]))
    totals = _figures(reporting["totals"])
    totals["awaiting_schedule"] = reporting["totals"].get("awaiting_schedule")
    by_year = {str(g["year"]): _figures(g) for g in reporting["by_year"]["by_year"]}
    expected = expected_from_answers(outcome)
    mismatches = {k: {"answers": v, "reporting": totals.get(k)} for k, v in expected.items() if totals.get(k) != v}
    return {
        "policy": {"source": "demo/policy.toml", "rules": RULES, **policy.raw},
        "input": {
            "rows_read": plan.rows_read,
            "sessions_to_import": len(plan.sessions),
            "rows_rejected": len(rejected),
            "rejected_by_reason": dict(Counter(r["reason"] for r in rejected)),
            "rejected": rejected,
            "skipped": {"count": len(plan.skipped), "rows": plan.skipped},
            "notes": plan.notes,
            "learners_from": dict(Counter(s.learners_from for s in plan.sessions)),
        },
        "replay": {
            "sessions_scheduled": len(outcome.results),
            "learners_tried": sum(r.session.learners for r in outcome.results),
            "attendance_records": sum(len(attendees(r)) for r in outcome.results),
            "failures": outcome.failures,
            "requests": outcome.requests,
            "cross_check": {"what": "figures the services answered during the replay vs the reporting projections",
                            "consistent": not mismatches, "mismatches": mismatches},
        },
        "totals": totals,
        "by_year": by_year,
        "by_course": {str(g["course_code"]): _figures(g) for g in reporting["by_course"]["by_course"]},
        "budget": budget_section(reporting["budgets"]["budgets"]),
        "seconds": seconds,
    }


_FILE_ORDER = {"all_workshops_2018.csv": 0, "instructor_training_events.csv": 1,
               "carpentrycon2022_zoom_session_metadata.csv": 2}


# ----- printing -------------------------------------------------------------------------------------------------
def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]

    def line(values: list[str]) -> str:
        return "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths, strict=True)))

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def _pct(rate: Any) -> str:
    return "" if rate is None else f"{float(rate) * 100:.1f}%"


def render(report: dict[str, Any]) -> str:
    inp = report["input"]
    parts = ["", "INPUT"]
    parts.append(table(["file", "rows read"], [[k, v] for k, v in inp["rows_read"].items()]))
    parts.append(f"sessions to import: {inp['sessions_to_import']}   rejected rows: {inp['rows_rejected']} "
                 f"{inp['rejected_by_reason']}   instructor-training rows already in the workshops file: "
                 f"{inp['skipped']['count']}   notes: {len(inp['notes'])}")
    occupancy_headers = ["", "sessions", "virtual", "capacity", "enrolled", "waitlisted", "attended", "fill rate"]

    def occupancy_row(label: str, f: dict[str, Any]) -> list[Any]:
        return [label, f.get("sessions"), f.get("virtual_sessions"), f.get("capacity"), f.get("enrolled"),
                f.get("waitlisted"), f.get("attended"), _pct(f.get("fill_rate"))]

    parts += ["", "OCCUPANCY (from the reporting service)"]
    rows = [occupancy_row(y, f) for y, f in report["by_year"].items()]
    rows.append(occupancy_row("total", report["totals"]))
    parts.append(table(["year", *occupancy_headers[1:]], rows))
    parts += ["", table(["course", *occupancy_headers[1:]],
                        [occupancy_row(c, f) for c, f in report["by_course"].items()])]
    parts += ["", "BUDGET (from the reporting service)"]
    brows = []
    for cc, b in report["budget"].items():
        for p in b["by_period"]:
            brows.append([cc, p["period"], p["currency"], *(p[k] for k in BUDGET_FIGURES)])
        brows.append([cc, "all", b["currency"], *(b[k] for k in BUDGET_FIGURES)])
    parts.append(table(["cost centre", "period", "cur", "allocated", "committed", "actual", "remaining"], brows))
    check = report["replay"]["cross_check"]
    parts += ["", "cross-check with the services' answers: " + ("consistent" if check["consistent"]
                                                               else f"MISMATCH {check['mismatches']}")]
    if report["replay"]["failures"]:
        parts.append(f"failed requests: {len(report['replay']['failures'])} (see demo-report.json replay.failures)")
    return "\n".join(parts)
