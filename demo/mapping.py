"""From rows of the Carpentries files to the sessions the demo imports, or to rejected rows with a reason.

Pure: reads nothing but the rows it is given, calls no service. The rules are stated in demo/policy.toml.
A booking conflict cannot be known here (scheduling decides it); the replay adds those rejections.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from .policy import Cost, Policy

DATA_DIR = Path(__file__).parent / "data" / "carpentries"
WORKSHOPS = "all_workshops_2018.csv"
REGISTERED = "attendance_registered_vs_daily.csv"
INSTRUCTOR_TRAINING = "instructor_training_events.csv"
CCON_SESSIONS = "carpentrycon2022_zoom_session_metadata.csv"
CCON_ATTENDEES = "carpentrycon2022_num_attendees_by_session.csv"
FILES = (WORKSHOPS, REGISTERED, INSTRUCTOR_TRAINING, CCON_SESSIONS, CCON_ATTENDEES)

# rejection reasons (demo-report.json input.rejected[].reason)
NO_LEARNER_COUNT = "no_learner_count"
NO_TIME_ZONE = "no_time_zone"
BOOKING_CONFLICT = "booking_conflict"
UNREADABLE = "unreadable_row"
NOT_IMPORTED = "not_imported"  # a service refused the session for another reason (status and body in the message)


@dataclass(frozen=True)
class SourceRow:
    file: str
    line: int  # line number in the file; the header is line 1
    fields: dict[str, str]

    def get(self, name: str) -> str:
        return (self.fields.get(name) or "").strip()


@dataclass(frozen=True)
class Rejected:
    file: str
    line: int
    key: str
    reason: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "key": self.key, "reason": self.reason,
                "message": self.message}


@dataclass
class SessionImport:
    """One session to schedule, the learners who try to enroll and how many of them attend."""

    session_id: str
    file: str
    line: int
    key: str  # slug, or CarpentryCon session name
    course_code: str
    title: str
    delivery: str  # "classroom" | "virtual"
    place: str  # venue_id (classroom) or virtual_room_id (virtual)
    time_zone: str
    slots: list[tuple[datetime, datetime]]  # aware
    capacity: int
    cost_centre: str
    planned_costs: tuple[Cost, ...]
    learners: int  # learners who try to enroll
    learners_from: str  # "registered" | "attendance" | "num_attendees" | "none"
    attendance: int | None  # how many attended (None: not known, nothing is recorded)
    send_local_times: bool = True  # workshops: slots are sent as local wall-clock times in time_zone
    notes: list[str] = field(default_factory=list)

    @property
    def starts_at(self) -> datetime:
        return self.slots[0][0]

    @property
    def ends_at(self) -> datetime:
        return self.slots[-1][1]

    @property
    def year(self) -> int:
        """Year of the start, local to the session's time zone (as the reports group it)."""
        return self.starts_at.astimezone(ZoneInfo(self.time_zone)).year

    def learner_ids(self) -> list[str]:
        """Pseudonymous, generated: nobody's personal data."""
        return [f"{self.session_id}-L{n:04d}" for n in range(1, self.learners + 1)]

    def schedule_as_of(self, policy: Policy) -> datetime:
        return self.starts_at - timedelta(days=policy.schedule_days_before)

    def enroll_as_of(self, policy: Policy) -> datetime:
        return self.starts_at - timedelta(days=policy.enroll_days_before)

    def attendance_as_of(self) -> datetime:
        return self.ends_at

    def invoice_as_of(self, policy: Policy) -> datetime:
        return self.ends_at + timedelta(days=policy.invoice_days_after)

    def schedule_body(self, policy: Policy) -> dict[str, Any]:
        zone = ZoneInfo(self.time_zone)

        def when(t: datetime) -> str:
            return t.astimezone(zone).replace(tzinfo=None).isoformat() if self.send_local_times else t.isoformat()

        body: dict[str, Any] = {
            "session_id": self.session_id,
            "course_code": self.course_code,
            "title": self.title,
            "delivery": self.delivery,
            "time_zone": self.time_zone,
            "slots": [{"starts_at": when(s), "ends_at": when(e)} for s, e in self.slots],
            "instructor_ids": [],
            "equipment_ids": [],
            "capacity": self.capacity,
            "cost_centre": self.cost_centre,
            "planned_costs": [{"category": c.category, "amount": policy.money(c.amount),
                               "cost_centre": self.cost_centre} for c in self.planned_costs],
            "as_of": _iso(self.schedule_as_of(policy)),
            "backdated": True,
        }
        body["venue_id" if self.delivery == "classroom" else "virtual_room_id"] = self.place
        return body


@dataclass
class ImportPlan:
    sessions: list[SessionImport]
    rejected: list[Rejected]
    rows_read: dict[str, int]
    notes: list[dict[str, Any]]
    skipped: list[dict[str, Any]]  # rows deliberately not imported (not errors), with the reason


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat()


def read_rows(path: Path, limit: int | None = None) -> list[SourceRow]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = []
        for row in reader:
            if limit is not None and len(rows) >= limit:
                break
            rows.append(SourceRow(path.name, reader.line_num, {k: v or "" for k, v in row.items() if k}))
        return rows


def _whole_number(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.isdigit() else None


# ----- attendance_registered_vs_daily.csv -----------------------------------------------------------------------
def registered_counts(rows: list[SourceRow], workshop_slugs: set[str]) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """slug -> usable Registered count, and notes on every value that was not used."""
    values: dict[str, list[tuple[int, str]]] = {}
    notes: list[dict[str, Any]] = []
    for row in rows:
        slug, text = row.get("Slug"), row.get("Registered")
        if slug not in workshop_slugs:
            notes.append(_note(row, slug, "slug not in the workshops file: not used"))
            continue
        if text == "":
            continue
        values.setdefault(slug, []).append((row.line, text))
    out: dict[str, int] = {}
    for slug, seen in values.items():
        numbers = {_whole_number(t) for _, t in seen}
        lines = [line for line, _ in seen]
        if None in numbers:
            bad = [t for _, t in seen if _whole_number(t) is None]
            notes.append({"file": REGISTERED, "line": lines[0], "key": slug,
                          "note": f"Registered {bad[0]!r} is not a whole number: not used"})
        elif len(numbers) > 1:
            notes.append({"file": REGISTERED, "line": lines[0], "key": slug,
                          "note": f"listed {len(seen)} times with different Registered values "
                                  f"{sorted(n for n in numbers if n is not None)} (lines {lines}): ambiguous, not used"})
        else:
            out[slug] = numbers.pop()  # type: ignore[assignment]
            if len(seen) > 1:
                notes.append({"file": REGISTERED, "line": lines[0], "key": slug,
                              "note": f"listed {len(seen)} times with the same value (lines {lines}): counted once"})
    return out, notes


def _note(row: SourceRow, key: str, text: str) -> dict[str, Any]:
    return {"file": row.file, "line": row.line, "key": key, "note": text}


# ----- workshops and instructor training ------------------------------------------------------------------------
def course_of(tags: list[str], policy: Policy) -> str:
    for code in policy.course_tag_priority:
        if code in tags:
            return code
    return policy.default_course


def is_online(tags: list[str], country: str, policy: Policy) -> bool:
    return country in policy.online_countries or any(t in policy.online_tags for t in tags)


def split_tags(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _workshop(row: SourceRow, *, slug: str, tags: list[str], course_code: str, start: str, country: str,
              attendance_text: str, venue: str, registered: int | None, policy: Policy) -> SessionImport | Rejected:
    attendance = _whole_number(attendance_text)
    notes = []
    if attendance_text and attendance is None:
        notes.append(f"attendance {attendance_text!r} is not a whole number: treated as unknown")
    if registered is not None:
        learners, learners_from = registered, "registered"
    elif attendance is not None:
        learners, learners_from = attendance, "attendance"
    else:
        return Rejected(row.file, row.line, slug, NO_LEARNER_COUNT,
                        "no attendance and no usable Registered count: nobody to enroll")
    online = is_online(tags, country, policy)
    if online:
        time_zone = policy.online_time_zone
    else:
        zone = policy.time_zone_of(country)
        if zone is None:
            what = "no country" if not country else f"country {country!r} is not in the policy's [time_zones]"
            return Rejected(row.file, row.line, slug, NO_TIME_ZONE, f"classroom session with {what}: time zone unknown")
        time_zone = zone
    try:
        first_day = date.fromisoformat(start)
    except ValueError:
        return Rejected(row.file, row.line, slug, UNREADABLE, f"start date {start!r} is not a date YYYY-MM-DD")
    course = policy.courses[course_code]
    tz = ZoneInfo(time_zone)
    slots = []
    for n in range(course.days):
        day = first_day + timedelta(days=n)
        slots.append((datetime.combine(day, policy.day_start, tz), datetime.combine(day, policy.day_end, tz)))
    if attendance is not None and registered is not None and attendance > registered:
        notes.append(f"attendance {attendance} > Registered {registered}: at most the enrolled learners attend")
    if attendance is None:
        notes.append("attendance unknown: learners enroll, no attendance is recorded")
    return SessionImport(
        session_id=slug, file=row.file, line=row.line, key=slug, course_code=course_code,
        title=f"{course.title} ({venue if not online else 'online'}, {first_day.isoformat()})"[:300],
        delivery="virtual" if online else "classroom",
        place=f"online-{slug}" if online else venue,
        time_zone=time_zone, slots=slots, capacity=course.capacity, cost_centre=course.cost_centre,
        planned_costs=policy.planned_costs["virtual" if online else "classroom"],
        learners=learners, learners_from=learners_from, attendance=attendance, notes=notes,
    )


def map_workshop(row: SourceRow, policy: Policy, registered: dict[str, int]) -> SessionImport | Rejected:
    slug = row.get("slug")
    tags = split_tags(row.get("tag_name"))
    return _workshop(row, slug=slug, tags=tags, course_code=course_of(tags, policy), start=row.get("start_date"),
                     country=row.get("country"), attendance_text=row.get("attendance"), venue=row.get("host_name"),
                     registered=registered.get(slug), policy=policy)


def map_instructor_training(row: SourceRow, policy: Policy) -> SessionImport | Rejected:
    slug = row.get("slug")
    tags = [policy.it_tag_ids.get(t, t) for t in split_tags(row.get("tags"))]
    return _workshop(row, slug=slug, tags=tags, course_code=policy.it_course, start=row.get("start"),
                     country=row.get("country"), attendance_text=row.get("attendance"),
                     venue=f"{policy.it_venue_prefix}{slug}", registered=None, policy=policy)


# ----- CarpentryCon 2022 ----------------------------------------------------------------------------------------
def _utc(day: str, clock: str, fmt: str) -> datetime:
    return datetime.strptime(f"{day} {clock}", f"%d %B, %Y {fmt}").replace(tzinfo=UTC)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")


def map_carpentrycon(sessions: list[SourceRow], attendees: list[SourceRow], policy: Policy
                     ) -> tuple[list[SessionImport | Rejected], list[dict[str, Any]]]:
    notes: list[dict[str, Any]] = []
    counts: dict[datetime, list[tuple[SourceRow, str, int]]] = {}
    for row in attendees:
        try:
            start = _utc(row.get("start_day_utc"), row.get("start_time_utc"), "%H:%M:%S")
        except ValueError:
            notes.append(_note(row, row.get("session_name"), "start day/time unreadable: count not used"))
            continue
        n = _whole_number(row.get("num_attendees"))
        if n is None:
            notes.append(_note(row, row.get("session_name"), "num_attendees is not a whole number: not used"))
            continue
        counts.setdefault(start, []).append((row, row.get("session_name"), n))
    used: set[int] = set()
    out: list[SessionImport | Rejected] = []
    course = policy.courses[policy.ccon_course]
    for row in sessions:
        name, room = row.get("Session name"), row.get("Room")
        try:
            start = _utc(row.get("Start Day UTC"), row.get("Start time UTC"), "%I:%M:%S %p")
        except ValueError:
            out.append(Rejected(row.file, row.line, name, UNREADABLE, "start day/time unreadable"))
            continue
        minutes = _whole_number(row.get("Minutes"))
        if not minutes or not room:
            out.append(Rejected(row.file, row.line, name, UNREADABLE, "no duration in minutes or no room"))
            continue
        matches = [(r, n) for r, short, n in counts.get(start, []) if short and name.startswith(short)]
        session_notes = []
        if len(matches) == 1:
            learners, learners_from = matches[0][1], "num_attendees"
            used.add(id(matches[0][0]))
        else:
            learners, learners_from = 0, "none"
            why = "no attendee count" if not matches else f"{len(matches)} attendee counts match: ambiguous"
            session_notes.append(f"{why}: scheduled without learners")
            notes.append(_note(row, name, f"{why} (room {room}, {start.isoformat()}): scheduled without learners"))
        out.append(SessionImport(
            session_id=f"{policy.ccon_session_prefix}{start:%Y%m%dT%H%M}Z-{_slug(room)}",
            file=row.file, line=row.line, key=name, course_code=course.code, title=name[:300] or course.title,
            delivery="virtual", place=f"{policy.ccon_room_prefix}{_slug(room)}", time_zone=policy.ccon_time_zone,
            slots=[(start, start + timedelta(minutes=minutes))], capacity=course.capacity,
            cost_centre=course.cost_centre, planned_costs=policy.planned_costs["carpentrycon"],
            learners=learners, learners_from=learners_from, attendance=learners, send_local_times=False,
            notes=session_notes,
        ))
    for bucket in counts.values():
        for row, short, _ in bucket:
            if id(row) not in used:
                notes.append(_note(row, short, "attendee count matches no session of the metadata file: not used"))
    return out, notes


# ----- everything -----------------------------------------------------------------------------------------------
def build_plan(policy: Policy, data_dir: Path = DATA_DIR, limit: int | None = None) -> ImportPlan:
    """Read the five files (``limit``: at most that many rows of each) and map them, in file order:
    workshops, then the instructor-training events the workshops file lacks, then CarpentryCon 2022."""
    rows = {name: read_rows(data_dir / name, limit) for name in FILES}
    workshop_slugs = {r.get("slug") for r in read_rows(data_dir / WORKSHOPS)}  # all of them, whatever the limit
    registered, notes = registered_counts(rows[REGISTERED], workshop_slugs)
    sessions: list[SessionImport] = []
    rejected: list[Rejected] = []
    skipped: list[dict[str, Any]] = []

    def take(result: SessionImport | Rejected) -> None:
        (sessions if isinstance(result, SessionImport) else rejected).append(result)  # type: ignore[arg-type]

    seen: Counter[str] = Counter()
    for row in rows[WORKSHOPS]:
        seen[row.get("slug")] += 1
        if seen[row.get("slug")] > 1:
            rejected.append(Rejected(row.file, row.line, row.get("slug"), UNREADABLE, "slug listed twice"))
            continue
        take(map_workshop(row, policy, registered))
    for row in rows[INSTRUCTOR_TRAINING]:
        if row.get("slug") in workshop_slugs:
            skipped.append(_note(row, row.get("slug"), "already in the workshops file, which is used for it"))
            continue
        take(map_instructor_training(row, policy))
    ccon, ccon_notes = map_carpentrycon(rows[CCON_SESSIONS], rows[CCON_ATTENDEES], policy)
    for result in ccon:
        take(result)
    for s in sessions:
        notes += [{"file": s.file, "line": s.line, "key": s.key, "note": n} for n in s.notes if s.file != CCON_SESSIONS]
    notes += ccon_notes
    return ImportPlan(sessions=sessions, rejected=rejected, rows_read={k: len(v) for k, v in rows.items()},
                      notes=notes, skipped=skipped)
