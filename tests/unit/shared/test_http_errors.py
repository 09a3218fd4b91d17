"""Answers the framework gives by itself have the services' JSON error shape (found by the schemathesis run:
404 and 405 came back as {"detail": ...}; fixed in shared.runtime)."""

from __future__ import annotations

import importlib

import httpx
import pytest


@pytest.mark.parametrize("service, route", [("scheduling", "/sessions"), ("enrollment", "/enrollments/e1"),
                                            ("finance", "/costs"), ("reporting", "/budgets")])
async def test_unknown_route_and_wrong_method_answer_in_the_error_shape(service: str, route: str, tmp_path,
                                                                        bearer) -> None:
    bootstrap = importlib.import_module(f"services.{service}.bootstrap")
    settings_mod = importlib.import_module(f"services.{service}.settings")
    cls = next(v for k, v in vars(settings_mod).items() if k.endswith("Settings") and k != "ServiceSettings")
    app = bootstrap.build(cls(store_url=f"sqlite:///{tmp_path / 'x.db'}"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc",
                                 headers=bearer()) as client:
        missing = await client.get("/no/such/thing")
        assert missing.status_code == 404
        assert missing.json()["error"] == "not_found" and missing.json()["message"]
        wrong = await client.request("TRACE", route)
        assert wrong.status_code == 405 and wrong.json()["error"] == "method_not_allowed"
        assert wrong.json()["message"] and wrong.headers["Allow"]
