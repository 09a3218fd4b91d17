"""Request body size limit: 413 with a JSON body, before any of it reaches a handler, in every service."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request

from shared.limits import BodySizeLimit

LIMIT = 2048


def echo_app() -> FastAPI:
    app = FastAPI()
    app.state.seen = []

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        body = await request.body()
        app.state.seen.append(len(body))
        return {"bytes": len(body)}

    app.add_middleware(BodySizeLimit, max_bytes=LIMIT)
    return app


@pytest.fixture
async def echo() -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = echo_app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://echo") as client:
        yield app, client


async def test_a_body_within_the_limit_is_handed_on_unchanged(echo) -> None:
    app, client = echo
    r = await client.post("/echo", content=b"x" * LIMIT)
    assert r.status_code == 200 and r.json() == {"bytes": LIMIT}

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: read as it comes
        for _ in range(4):
            yield b"y" * 500

    r = await client.post("/echo", content=chunks())
    assert r.status_code == 200 and r.json() == {"bytes": 2000}
    assert app.state.seen == [LIMIT, 2000]


async def test_a_larger_body_gets_413_and_never_reaches_the_handler(echo) -> None:
    app, client = echo
    r = await client.post("/echo", content=b"x" * (LIMIT + 1))
    assert r.status_code == 413
    assert r.json() == {"error": "body_too_large", "limit_bytes": LIMIT,
                        "message": f"the request body is larger than the limit of {LIMIT} bytes"}

    async def chunks() -> AsyncIterator[bytes]:  # a chunked upload that lies about nothing but keeps coming
        for _ in range(10):
            yield b"y" * 500

    r = await client.post("/echo", content=chunks())
    assert r.status_code == 413 and r.json()["error"] == "body_too_large"
    assert app.state.seen == []


@pytest.mark.parametrize("service, path", [("scheduling", "/sessions"), ("enrollment", "/sessions/s1/enrollments"),
                                           ("finance", "/costs"), ("reporting", "/budgets")])
async def test_every_service_refuses_a_body_over_its_limit(service: str, path: str, tmp_path, bearer) -> None:
    bootstrap = importlib.import_module(f"services.{service}.bootstrap")
    settings_mod = importlib.import_module(f"services.{service}.settings")
    cls = next(v for k, v in vars(settings_mod).items() if k.endswith("Settings") and k != "ServiceSettings")
    app = bootstrap.build(cls(store_url=f"sqlite:///{tmp_path / 'x.db'}", ILT_MAX_BODY_BYTES=4096))
    await app.state.runtime.store.open()
    big = {"learner_id": "x" * 5000, "padding": "y" * 5000}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as client:
        r = await client.post(path, json=big, headers=bearer())
        assert r.status_code == 413 and r.json()["limit_bytes"] == 4096
        r = await client.post(path, json={"x": "y" * 3000}, headers=bearer())
        assert r.status_code not in (413, 500)  # within the limit: the service decides (422, 405...)
    await app.state.runtime.store.close()
