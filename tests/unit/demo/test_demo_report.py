"""The demo's report: figures taken from reporting's answers, budget sums per cost centre, the cross-check."""

from __future__ import annotations

from demo.mapping import ImportPlan
from demo.policy import load_policy
from demo.replay import ReplayOutcome
from demo.report import build_report, budget_section, render

FIGURES = {"sessions": 2, "virtual_sessions": 1, "cancelled_sessions": 0, "capacity": 80, "enrolled": 50,
           "waitlisted": 3, "attended": 45, "no_show": 0, "fill_rate": 0.625}
LINES = [
    {"cost_centre": "CC-SWC", "period": "2017", "currency": "USD", "allocated": "100.00", "committed": "120.00",
     "actual": "90.00", "remaining": "-20.00"},
    {"cost_centre": "CC-SWC", "period": "2018", "currency": "USD", "allocated": "100.00", "committed": "40.00",
     "actual": "60.00", "remaining": "40.00"},
]


def reporting():
    return {"totals": {**FIGURES, "awaiting_schedule": 0},
            "by_year": {"by_year": [{"year": 2017, **FIGURES}]},
            "by_course": {"by_course": [{"course_code": "SWC", **FIGURES}]},
            "budgets": {"budgets": LINES, "count": 2}}


def test_budget_per_cost_centre_sums_its_periods():
    section = budget_section(LINES)
    assert section["CC-SWC"]["currency"] == "USD"
    assert (section["CC-SWC"]["allocated"], section["CC-SWC"]["committed"], section["CC-SWC"]["actual"],
            section["CC-SWC"]["remaining"]) == ("200.00", "160.00", "150.00", "20.00")
    assert [p["period"] for p in section["CC-SWC"]["by_period"]] == ["2017", "2018"]


def test_report_figures_are_reportings_and_a_disagreement_with_the_answers_is_flagged():
    plan = ImportPlan(sessions=[], rejected=[], rows_read={"all_workshops_2018.csv": 0}, notes=[], skipped=[])
    outcome = ReplayOutcome(results=[], rejected=[], failures=[], requests={}, seconds={})
    report = build_report(load_policy(), plan, outcome, reporting(), {"total": 1.0})
    assert report["totals"]["enrolled"] == 50 and report["by_year"]["2017"]["attended"] == 45
    assert report["budget"]["CC-SWC"]["remaining"] == "20.00"
    # the replay saw no session at all: the cross-check says so instead of hiding it
    assert report["replay"]["cross_check"]["consistent"] is False
    assert report["replay"]["cross_check"]["mismatches"]["sessions"] == {"answers": 0, "reporting": 2}
    assert report["policy"]["courses"]["SWC"]["capacity"] == 40 and report["policy"]["rules"]
    text = render(report)
    assert "62.5%" in text and "MISMATCH" in text and "CC-SWC" in text
