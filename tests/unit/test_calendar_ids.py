"""Regression (found by the schemathesis run): a calendar feed whose id holds a control character (a line break)
was a 500, because the id became the calendar's name on an iCalendar content line. It is an empty feed now."""

from __future__ import annotations

import importlib

import httpx
import pytest


@pytest.mark.parametrize("service, path", [("scheduling", "/calendars/instructors/ann%0Abob.ics"),
                                           ("scheduling", "/calendars/venues/room%0D%0A%08a.ics"),
                                           ("enrollment", "/calendars/learners/l1%0A.ics")])
async def test_a_line_break_in_a_calendar_id_is_no_server_error(service: str, path: str, tmp_path, bearer) -> None:
    bootstrap = importlib.import_module(f"services.{service}.bootstrap")
    settings_mod = importlib.import_module(f"services.{service}.settings")
    cls = next(v for k, v in vars(settings_mod).items() if k.endswith("Settings") and k != "ServiceSettings")
    app = bootstrap.build(cls(store_url=f"sqlite:///{tmp_path / 'x.db'}"))
    await app.state.runtime.store.open()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc",
                                 headers=bearer("reader")) as client:
        answer = await client.get(path)
    await app.state.runtime.store.close()
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/calendar")
    assert answer.text.startswith("BEGIN:VCALENDAR") and "BEGIN:VEVENT" not in answer.text
