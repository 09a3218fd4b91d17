"""The demo's row -> command mapping: time zones, online detection, capacity per tag, learners from Registered
vs attendance, rejected rows with their reasons."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from demo.mapping import (
    CCON_ATTENDEES,
    CCON_SESSIONS,
    INSTRUCTOR_TRAINING,
    NO_LEARNER_COUNT,
    NO_TIME_ZONE,
    REGISTERED,
    WORKSHOPS,
    Rejected,
    SessionImport,
    SourceRow,
    build_plan,
    map_carpentrycon,
    map_instructor_training,
    map_workshop,
    registered_counts,
)
from demo.policy import PolicyError, load_policy, parse_policy


@pytest.fixture(scope="module")
def policy():
    return load_policy()


def workshop(slug="2018-01-08-example", tags="SWC", start="2018-01-08", attendance="25", host="Example University",
             country="US", line=2) -> SourceRow:
    return SourceRow(WORKSHOPS, line, {"slug": slug, "tag_name": tags, "start_date": start, "attendance": attendance,
                                       "host_name": host, "country": country, "latitude": "", "longitude": "",
                                       "url": ""})


def mapped(policy, row, registered=None) -> SessionImport:
    result = map_workshop(row, policy, registered or {})
    assert isinstance(result, SessionImport), result
    return result


# ----- time zones and slots -------------------------------------------------------------------------------------
def test_classroom_session_is_held_in_the_time_zone_of_its_country_from_the_policy(policy):
    s = mapped(policy, workshop(country="US", start="2018-01-08"))
    assert s.time_zone == "America/New_York"
    assert s.delivery == "classroom" and s.place == "Example University"
    assert [(a.isoformat(), b.isoformat()) for a, b in s.slots] == [
        ("2018-01-08T09:00:00-05:00", "2018-01-08T16:30:00-05:00"),
        ("2018-01-09T09:00:00-05:00", "2018-01-09T16:30:00-05:00"),
    ]
    body = s.schedule_body(policy)
    assert body["venue_id"] == "Example University" and "virtual_room_id" not in body
    assert body["time_zone"] == "America/New_York"
    assert body["slots"][0] == {"starts_at": "2018-01-08T09:00:00", "ends_at": "2018-01-08T16:30:00"}


def test_summer_time_is_taken_from_the_zone(policy):
    s = mapped(policy, workshop(country="NZ", start="2018-01-08"))
    assert s.time_zone == "Pacific/Auckland"
    assert s.starts_at.astimezone(UTC) == datetime(2018, 1, 7, 20, 0, tzinfo=UTC)  # NZDT = UTC+13


def test_every_command_time_is_stated_and_backdated(policy):
    s = mapped(policy, workshop(country="GB", start="2018-06-04"))
    body = s.schedule_body(policy)
    assert body["backdated"] is True
    assert datetime.fromisoformat(body["as_of"]) == s.starts_at - timedelta(days=60)
    assert s.enroll_as_of(policy) == s.starts_at - timedelta(days=1)
    assert s.attendance_as_of() == datetime(2018, 6, 5, 15, 30, tzinfo=UTC)  # 16:30 BST, end of day two
    assert s.invoice_as_of(policy) == s.ends_at + timedelta(days=14)


# ----- online detection -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("tags", "country"), [("TTT,online", "W3"), ("SWC", "W3"), ("TTT,online", "GB"),
                                               ("online,TTT", "")])
def test_online_rows_become_virtual_sessions_in_a_room_of_their_own(policy, tags, country):
    s = mapped(policy, workshop(slug="2018-10-09-ttt-online", tags=tags, country=country))
    assert s.delivery == "virtual"
    assert s.time_zone == "UTC"
    body = s.schedule_body(policy)
    assert body["virtual_room_id"] == "online-2018-10-09-ttt-online" and "venue_id" not in body


def test_planned_costs_follow_the_delivery(policy):
    classroom = mapped(policy, workshop()).schedule_body(policy)
    virtual = mapped(policy, workshop(country="W3")).schedule_body(policy)
    assert [c["category"] for c in classroom["planned_costs"]] == ["instructor_travel", "coordination"]
    assert [c["category"] for c in virtual["planned_costs"]] == ["coordination"]
    assert classroom["planned_costs"][0] == {"category": "instructor_travel",
                                             "amount": {"amount": "1200.00", "currency": "USD"},
                                             "cost_centre": "CC-SWC"}


# ----- course and capacity per tag ------------------------------------------------------------------------------
@pytest.mark.parametrize(("tags", "course", "capacity", "cost_centre", "days"), [
    ("SWC", "SWC", 40, "CC-SWC", 2),
    ("DC", "DC", 40, "CC-DC", 2),
    ("TTT", "TTT", 30, "CC-INSTRUCTOR-TRAINING", 2),
    ("WiSE,SWC", "WiSE", 40, "CC-SWC", 2),
    ("SWC,WiSE", "WiSE", 40, "CC-SWC", 2),
    ("SWC,DC", "SWC", 40, "CC-SWC", 2),
    ("SWC,unresponsive", "SWC", 40, "CC-SWC", 2),
    ("online", "OTHER", 50, "CC-COMMUNITY", 1),
])
def test_course_capacity_and_cost_centre_come_from_the_tag(policy, tags, course, capacity, cost_centre, days):
    s = mapped(policy, workshop(tags=tags))
    assert (s.course_code, s.capacity, s.cost_centre, len(s.slots)) == (course, capacity, cost_centre, days)


# ----- learners -------------------------------------------------------------------------------------------------
def test_learners_who_try_are_the_registered_count_when_known(policy):
    s = mapped(policy, workshop(slug="2015-08-24-stanford", attendance="27"), {"2015-08-24-stanford": 35})
    assert (s.learners, s.learners_from, s.attendance) == (35, "registered", 27)
    assert s.learner_ids()[:2] == ["2015-08-24-stanford-L0001", "2015-08-24-stanford-L0002"]
    assert len(s.learner_ids()) == 35


def test_learners_who_try_are_the_attendance_without_a_registered_count(policy):
    s = mapped(policy, workshop(attendance="18"))
    assert (s.learners, s.learners_from, s.attendance) == (18, "attendance", 18)


def test_attendance_above_registered_is_stated(policy):
    s = mapped(policy, workshop(slug="2018-01-08-uwmadison-dc", attendance="39"), {"2018-01-08-uwmadison-dc": 38})
    assert (s.learners, s.attendance) == (38, 39)
    assert any("at most the enrolled learners attend" in n for n in s.notes)


def test_registered_without_attendance_enrolls_but_records_no_attendance(policy):
    s = mapped(policy, workshop(attendance=""), {"2018-01-08-example": 45})
    assert (s.learners, s.attendance) == (45, None)
    assert any("no attendance is recorded" in n for n in s.notes)


def test_zero_attendance_is_a_session_without_learners_not_a_rejection(policy):
    s = mapped(policy, workshop(attendance="0"))
    assert (s.learners, s.attendance) == (0, 0)


# ----- rejected rows --------------------------------------------------------------------------------------------
def test_a_row_without_attendance_or_registered_count_is_rejected_with_the_reason(policy):
    result = map_workshop(workshop(attendance="", line=7), policy, {})
    assert result == Rejected(WORKSHOPS, 7, "2018-01-08-example", NO_LEARNER_COUNT,
                              "no attendance and no usable Registered count: nobody to enroll")


@pytest.mark.parametrize(("country", "why"), [("", "no country"), ("XX", "country 'XX' is not in the policy")])
def test_a_classroom_row_without_a_known_country_is_rejected(policy, country, why):
    result = map_workshop(workshop(country=country), policy, {})
    assert isinstance(result, Rejected) and result.reason == NO_TIME_ZONE
    assert why in result.message


def test_the_learner_count_is_checked_before_the_country(policy):
    result = map_workshop(workshop(country="", attendance=""), policy, {})
    assert isinstance(result, Rejected) and result.reason == NO_LEARNER_COUNT


# ----- attendance_registered_vs_daily.csv -----------------------------------------------------------------------
def test_registered_values_are_used_only_when_unambiguous_whole_numbers():
    def row(line, slug, registered):
        return SourceRow(REGISTERED, line, {"Slug": slug, "Registered": registered})

    rows = [row(2, "a", " 45"), row(3, "b", "27-22-20"), row(4, "c", "39"), row(5, "c", "39"),
            row(6, "d", "35"), row(7, "d", "25"), row(8, "e (python)", "20"), row(9, "f", "")]
    counts, notes = registered_counts(rows, {"a", "b", "c", "d", "f"})
    assert counts == {"a": 45, "c": 39}
    text = {n["key"]: n["note"] for n in notes}
    assert "not a whole number" in text["b"]
    assert "ambiguous" in text["d"]
    assert "counted once" in text["c"]
    assert "not in the workshops file" in text["e (python)"]
    assert "f" not in text


# ----- instructor training --------------------------------------------------------------------------------------
def test_instructor_training_rows_are_ttt_sessions_online_by_tag_id(policy):
    def row(slug, country, tags, attendance="16"):
        return SourceRow(INSTRUCTOR_TRAINING, 3, {"slug": slug, "start": "2018-08-18", "country": country,
                                                  "attendance": attendance, "tags": tags, "count_badged": "4"})

    onsite = map_instructor_training(row("2018-08-18-ttt-LatinAmerica", "US", "5"), policy)
    online = map_instructor_training(row("2018-09-10-trainer-training", "W3", "6"), policy)
    assert isinstance(onsite, SessionImport) and isinstance(online, SessionImport)
    assert (onsite.course_code, onsite.delivery, onsite.place, onsite.capacity) == (
        "TTT", "classroom", "site-of-2018-08-18-ttt-LatinAmerica", 30)
    assert (online.course_code, online.delivery, online.learners) == ("TTT", "virtual", 16)


# ----- CarpentryCon 2022 ----------------------------------------------------------------------------------------
def test_carpentrycon_sessions_start_at_their_utc_time_in_their_room_with_the_matching_count(policy):
    meta = [
        SourceRow(CCON_SESSIONS, 2, {"Start Day UTC": "31 July, 2022", "Start time UTC": "11:00:00 PM",
                                     "Minutes": "60 ", "Session name": "Git Good: Using GitHub for Collaboration",
                                     "Session type": "Skill Up", "Room": "Room2"}),
        SourceRow(CCON_SESSIONS, 3, {"Start Day UTC": "2 August, 2022", "Start time UTC": "2:00:00 PM",
                                     "Minutes": "45", "Session name": "Zoom-ing IN, Tips and Tricks",
                                     "Session type": "Skill Up", "Room": "EXTERNAL + Room2"}),
    ]
    counts = [
        SourceRow(CCON_ATTENDEES, 2, {"session_name": "Git Good", "start_day_utc": "31 July, 2022",
                                      "start_time_utc": "23:00:00", "num_attendees": "43"}),
        SourceRow(CCON_ATTENDEES, 3, {"session_name": "Git Good", "start_day_utc": "4 August, 2022",
                                      "start_time_utc": "7:00:00", "num_attendees": "70"}),
    ]
    sessions, notes = map_carpentrycon(meta, counts, policy)
    git, zoom = sessions
    assert isinstance(git, SessionImport) and isinstance(zoom, SessionImport)
    assert git.slots == [(datetime(2022, 7, 31, 23, 0, tzinfo=UTC), datetime(2022, 8, 1, 0, 0, tzinfo=UTC))]
    assert (git.learners, git.attendance, git.delivery, git.place, git.capacity, git.year) == (
        43, 43, "virtual", "carpentrycon2022-Room2", 100, 2022)
    assert git.session_id == "carpentrycon2022-20220731T2300Z-Room2"
    assert git.schedule_body(policy)["slots"] == [{"starts_at": "2022-07-31T23:00:00+00:00",
                                                   "ends_at": "2022-08-01T00:00:00+00:00"}]
    assert (zoom.learners, zoom.learners_from, zoom.place) == (0, "none", "carpentrycon2022-EXTERNAL-Room2")
    assert any("no attendee count" in n["note"] for n in notes)
    assert any(n["line"] == 3 and "matches no session" in n["note"] for n in notes)


# ----- the real files -------------------------------------------------------------------------------------------
def test_the_real_files_map_to_sessions_and_reasoned_rejections(policy):
    plan = build_plan(policy)
    assert plan.rows_read == {WORKSHOPS: 1983, REGISTERED: 298, INSTRUCTOR_TRAINING: 191, CCON_SESSIONS: 72,
                              CCON_ATTENDEES: 70}
    reasons = [r.reason for r in plan.rejected]
    assert (reasons.count(NO_LEARNER_COUNT), reasons.count(NO_TIME_ZONE), len(reasons)) == (224, 3, 227)
    assert len(plan.skipped) == 189  # instructor-training rows already in the workshops file
    by_file = {f: sum(1 for s in plan.sessions if s.file == f) for f in (WORKSHOPS, INSTRUCTOR_TRAINING, CCON_SESSIONS)}
    assert by_file == {WORKSHOPS: 1983 - 227, INSTRUCTOR_TRAINING: 2, CCON_SESSIONS: 72}
    assert len({s.session_id for s in plan.sessions}) == len(plan.sessions)
    assert sum(1 for s in plan.sessions if s.learners_from == "num_attendees") == 70


def test_limit_reads_at_most_n_rows_of_each_file(policy):
    plan = build_plan(policy, limit=5)
    assert set(plan.rows_read.values()) == {5}


# ----- the policy itself ----------------------------------------------------------------------------------------
def test_policy_amounts_must_be_strings_and_zones_real(policy):
    raw = {**policy.raw, "time_zones": {**policy.raw["time_zones"], "US": "America/Nowhere"}}
    with pytest.raises(PolicyError, match="time_zones.US"):
        parse_policy(raw)
    raw = {**policy.raw, "planned_costs": {**policy.raw["planned_costs"],
                                           "virtual": [{"category": "coordination", "amount": 300.0}]}}
    with pytest.raises(PolicyError, match="never floats"):
        parse_policy(raw)
    raw = {k: v for k, v in policy.raw.items() if k != "courses"}
    with pytest.raises(PolicyError, match="courses"):
        parse_policy(raw)
