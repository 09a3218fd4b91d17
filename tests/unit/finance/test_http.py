"""The finance HTTP API in-process (no broker needed for commands): status codes and bodies a client sees."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from services.finance.bootstrap import build
from services.finance.settings import FinanceSettings


@pytest.fixture
async def client(tmp_path, bearer) -> AsyncIterator[httpx.AsyncClient]:
    app = build(FinanceSettings(store_url=f"sqlite:///{tmp_path / 'finance.db'}"))
    store = app.state.runtime.store
    await store.open()  # the lifespan (Kafka consumer, relay) is not started: commands only need the store
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://finance",
                                 headers=bearer("finance")) as c:
        yield c
    await store.close()


def money(amount: str, currency: str = "EUR") -> dict[str, str]:
    return {"amount": amount, "currency": currency}


async def test_budget_currency_and_invoice_rules_over_http(client: httpx.AsyncClient) -> None:
    r = await client.post("/budgets", json={"cost_centre": "CC-1", "period": "2030", "amount": money("1000.00")})
    assert r.status_code == 201 and r.json()["allocated"] == money("1000.00") and r.json()["allocation_id"]
    r = await client.post("/budgets", json={"cost_centre": "CC-1", "period": "2030", "amount": money("5.00", "USD")})
    assert r.status_code == 422
    assert r.json()["detail"][0]["field"] == "amount.currency" and "EUR" in r.json()["detail"][0]["reason"]
    r = await client.post("/budgets", json={"cost_centre": "CC-1", "period": "30", "amount": money("5.00")})
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "period"

    invoice = {"invoice_ref": "INV-1", "cost_centre": "CC-1", "period": "2030", "category": "venue_hire",
               "amount": money("250.00"), "session_id": "s1"}
    r = await client.post("/costs", json=invoice)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["kind"] == "actual" and created["amount"] == money("250.00")
    r = await client.post("/costs", json=invoice)
    assert r.status_code == 200 and r.json() == created
    r = await client.post("/costs", json={**invoice, "category": "catering"})
    assert r.status_code == 409 and r.json()["error"] == "invoice_exists"
    r = await client.post("/costs", json={**invoice, "invoice_ref": "INV-2", "period": "2031"})
    assert r.status_code == 422 and r.json()["error"] == "unknown_cost_centre_period"
    assert "no budget for 2031" in r.json()["detail"][0]["reason"]
    r = await client.post("/costs", json={**invoice, "invoice_ref": "INV-2", "amount": money("3.00", "GBP")})
    assert r.status_code == 422 and "budget's currency" in r.json()["message"]
    r = await client.post("/costs", json={**invoice, "invoice_ref": "INV-2", "amount": money("0.00")})
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "amount.amount"
    r = await client.post("/costs", json={**invoice, "invoice_ref": "INV-2", "amount": money("-50.00")})
    assert r.status_code == 422 and "credit_note" in r.json()["message"]
    r = await client.post("/costs", json={**invoice, "invoice_ref": "CN-1", "amount": money("-50.00"),
                                          "credit_note": True})
    assert r.status_code == 201

    r = await client.get("/cost-centres/CC-1")
    assert r.status_code == 200
    body = r.json()
    assert body["budgets"] == [{"period": "2030", "currency": "EUR", "budget_currency": "EUR",
                                "allocated": "1000.00", "allocations": 1, "committed": "0.00", "actual": "200.00",
                                "remaining": "800.00"}]
    assert [(e["invoice_ref"], e["amount"]["amount"]) for e in body["ledger"]] == [("INV-1", "250.00"),
                                                                                  ("CN-1", "-50.00")]
    r = await client.get("/sessions/s1/costs")
    assert r.status_code == 200 and len(r.json()["entries"]) == 2
    assert (await client.get("/cost-centres/CC-NOPE")).status_code == 404
    assert (await client.get("/sessions/nope/costs")).status_code == 404


async def test_per_learner_rates_over_http(client: httpx.AsyncClient) -> None:
    rates = [{"category": "catering", "amount": money("25.00"), "per": "day"},
             {"category": "workbook", "amount": money("40.00"), "per": "session"}]
    r = await client.put("/cost-centres/CC-1/per-learner-rates", json={"rates": rates})
    assert r.status_code == 200 and r.json()["rates"] == rates
    r = await client.put("/cost-centres/CC-1/per-learner-rates",
                         json={"rates": [{**rates[0], "per": "week"}]})
    assert r.status_code == 422
    r = await client.put("/cost-centres/CC-1/per-learner-rates",
                         json={"rates": [{**rates[0], "amount": money("0.00")}]})
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "rates.0.amount.amount"
    assert (await client.get("/cost-centres/CC-1")).json()["rates"] == rates


async def test_budget_allocation_id_over_http(client: httpx.AsyncClient) -> None:
    body = {"allocation_id": "demo-CC-1-2030", "cost_centre": "CC-1", "period": "2030", "amount": money("700.00")}
    r = await client.post("/budgets", json=body)
    assert r.status_code == 201 and r.json()["allocation_id"] == "demo-CC-1-2030"
    first = r.json()
    r = await client.post("/budgets", json=body)
    assert r.status_code == 200 and r.json() == first
    r = await client.post("/budgets", json={**body, "amount": money("800.00")})
    assert r.status_code == 409
    assert r.json()["error"] == "allocation_exists" and r.json()["differing_fields"] == ["amount"]
    r = await client.post("/budgets", json={**body, "allocation_id": "has spaces"})
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "allocation_id"
    budget = (await client.get("/cost-centres/CC-1")).json()["budgets"][0]
    assert (budget["allocated"], budget["allocations"]) == ("700.00", 1)
