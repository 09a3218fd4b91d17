"""Bearer tokens and roles: the token configuration, and the 401/403/200 matrix of every service's HTTP API in
process (real SQLite store in tmp_path, Kafka parts not started)."""

from __future__ import annotations

import importlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from shared.auth import Authenticator, TokenConfigError, parse_tokens
from shared.settings import ServiceSettings

SERVICES = {"scheduling": "scheduler", "enrollment": "enroller", "finance": "finance", "reporting": None}
OPEN = {"/healthz", "/readyz", "/status", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json",
        "/asyncapi.yaml", "/asyncapi.json"}  # the API descriptions (HTTP and Kafka) are public
ROLES = ("scheduler", "enroller", "finance", "reader")
TOKEN_A = "a" * 20
TOKEN_B = "b" * 20


# ---- configuration ----------------------------------------------------------------------------------------------

def test_compact_and_json_formats_give_the_same_clients() -> None:
    compact = parse_tokens(f"hr-portal:{TOKEN_A}:enroller,reader; {TOKEN_B}:finance")
    as_json = parse_tokens(json.dumps([{"client": "hr-portal", "token": TOKEN_A, "roles": ["enroller", "reader"]},
                                       {"token": TOKEN_B, "roles": ["finance"]}]))
    for clients in (compact, as_json):
        assert [(c.name, c.roles) for c in clients] == [("hr-portal", {"enroller", "reader"}),
                                                        ("client-2", {"finance"})]
        assert TOKEN_A not in repr(clients) and TOKEN_A not in str(clients[0].token)  # SecretStr
    assert [c.roles for c in parse_tokens(json.dumps({TOKEN_A: ["reader"]}))] == [{"reader"}]


@pytest.mark.parametrize("text, says", [
    (f"x:{TOKEN_A}:admin", "unknown: admin"),
    (f"x:{TOKEN_A}:", "roles must be some of"),
    ("x:short:reader", "16-512 characters"),
    (f"{TOKEN_A}", "not client:token:role"),
    (f"a:{TOKEN_A}:reader;b:{TOKEN_A}:finance", "same token"),
    ("[{\"token\": 5}]", "no token string"),
    ("{not json", "not valid JSON"),
])
def test_a_bad_configuration_is_refused_without_showing_the_token(text: str, says: str) -> None:
    with pytest.raises(TokenConfigError) as refused:
        parse_tokens(text)
    assert says in str(refused.value)
    assert TOKEN_A not in str(refused.value)


def test_tokens_from_a_file_are_added_to_the_environment_ones(tmp_path) -> None:
    secret = tmp_path / "tokens"
    secret.write_text(f"# mounted from a Kubernetes Secret\nerp:{TOKEN_B}:finance\n")
    settings = ServiceSettings(ILT_API_TOKENS=f"lms:{TOKEN_A}:enroller", ILT_API_TOKENS_FILE=str(secret))
    auth = Authenticator.from_settings(settings)
    assert auth.identify(TOKEN_A).name == "lms" and auth.identify(TOKEN_B).name == "erp"
    assert auth.identify(TOKEN_A + "x") is None and auth.identify("") is None
    assert TOKEN_A not in repr(settings) and TOKEN_A not in str(settings.model_dump())
    with pytest.raises(TokenConfigError, match="cannot read"):
        Authenticator.from_settings(ServiceSettings(ILT_API_TOKENS_FILE=str(tmp_path / "missing")))


def test_without_tokens_the_process_refuses_to_start_unless_auth_is_disabled(monkeypatch) -> None:
    from shared.auth import refuse_to_start_without_tokens

    monkeypatch.delenv("ILT_API_TOKENS")
    with pytest.raises(SystemExit) as stopped:
        refuse_to_start_without_tokens(ServiceSettings())
    assert "no API tokens configured" in str(stopped.value.code)
    refuse_to_start_without_tokens(ServiceSettings(ILT_AUTH="disabled"))  # development: starts
    with pytest.raises(SystemExit, match="unknown: root"):
        refuse_to_start_without_tokens(ServiceSettings(ILT_API_TOKENS=SecretStr(f"x:{TOKEN_A}:root")))


# ---- the matrix over HTTP ---------------------------------------------------------------------------------------

async def _client(service: str, tmp_path, **env: Any) -> tuple[Any, httpx.AsyncClient]:
    bootstrap = importlib.import_module(f"services.{service}.bootstrap")
    settings_mod = importlib.import_module(f"services.{service}.settings")
    cls = next(v for k, v in vars(settings_mod).items() if k.endswith("Settings") and k != "ServiceSettings")
    extra = {"session_wait_seconds": 0} if service == "enrollment" else {}
    app = bootstrap.build(cls(store_url=f"sqlite:///{tmp_path / (service + '.db')}", **extra, **env))
    await app.state.runtime.store.open()  # the lifespan (Kafka consumer, relay) is not started
    return app, httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{service}")


def _routes(app: Any) -> list[tuple[str, str]]:
    """Every documented route but the open ones, with its path parameters filled in (any id will do)."""
    out = []
    for path, item in app.openapi()["paths"].items():
        if path not in OPEN:
            out += [(method.upper(), path.replace("{", "").replace("}", "")) for method in item]
    return out


@pytest.fixture(params=list(SERVICES))
async def service(request, tmp_path) -> AsyncIterator[tuple[str, Any, httpx.AsyncClient]]:
    app, client = await _client(request.param, tmp_path)
    async with client:
        yield request.param, app, client
    await app.state.runtime.store.close()


async def test_every_route_needs_a_token_and_commands_need_the_service_role(service, bearer) -> None:
    name, app, client = service
    routes = _routes(app)
    writes = [(m, p) for m, p in routes if m != "GET"]
    assert routes and (writes or name == "reporting")
    for method, path in routes:
        missing = await client.request(method, path, json={})
        assert missing.status_code == 401, (method, path, missing.text)
        assert missing.headers["WWW-Authenticate"].startswith("Bearer")
        assert missing.json()["error"] == "unauthenticated" and "bearer token" in missing.json()["message"]
        wrong = await client.request(method, path, json={}, headers={"Authorization": "Bearer not-a-real-token-x"})
        assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_token"
        assert 'error="invalid_token"' in wrong.headers["WWW-Authenticate"]
        basic = await client.request(method, path, json={}, headers={"Authorization": "Basic dXNlcjpwYXNz"})
        assert basic.status_code == 401
        for role in (*ROLES, "operator"):
            answer = await client.request(method, path, json={}, headers=bearer(role))
            allowed = method == "GET" or role in (SERVICES[name], "operator")
            if allowed:  # let in: whatever the command says about the empty body or the unknown id
                assert answer.status_code not in (401, 403), (method, path, role, answer.text)
            else:
                assert answer.status_code == 403, (method, path, role, answer.text)
                body = answer.json()
                assert body["error"] == "forbidden" and body["required_role"] == SERVICES[name]
                assert body["roles"] == [role] and f"'{SERVICES[name]}'" in body["message"]


async def test_a_stranger_gets_401_before_the_body_is_parsed(service, bearer) -> None:
    name, app, client = service
    method, path = next(((m, p) for m, p in _routes(app) if m != "GET"), ("GET", "/budgets"))
    broken = await client.request(method, path, content=b"{not json", headers={"content-type": "application/json"})
    assert broken.status_code == 401 and broken.json()["error"] == "unauthenticated"
    assert (await client.get("/no/such/page")).status_code == 401
    if method != "GET":  # a client with a token learns what is wrong with the body
        allowed = await client.request(method, path, content=b"{not json",
                                       headers={"content-type": "application/json", **bearer()})
        assert allowed.status_code == 422 and allowed.json()["detail"][0]["field"] == "body"


async def test_operations_endpoints_stay_open(service) -> None:
    _, _, client = service
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/status")).status_code == 200
    assert (await client.get("/metrics")).status_code == 200
    openapi = (await client.get("/openapi.json")).json()
    assert openapi["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


async def test_a_reader_cannot_write_and_a_writer_can(tmp_path, bearer) -> None:
    app, client = await _client("finance", tmp_path)
    budget = {"cost_centre": "CC-1", "period": "2030", "amount": {"amount": "100.00", "currency": "EUR"}}
    async with client:
        refused = await client.post("/budgets", json=budget, headers=bearer("reader"))
        assert refused.status_code == 403
        assert (await client.get("/cost-centres/CC-1", headers=bearer("reader"))).status_code == 404  # nothing
        assert (await client.post("/budgets", json=budget, headers=bearer("finance"))).status_code == 201
        assert (await client.get("/cost-centres/CC-1", headers=bearer("reader"))).status_code == 200
        assert (await client.get("/cost-centres/CC-1")).status_code == 401
    await app.state.runtime.store.close()


async def test_with_no_token_configured_nobody_gets_in_and_disabled_lets_everyone_in(tmp_path, monkeypatch,
                                                                                     bearer) -> None:
    monkeypatch.delenv("ILT_API_TOKENS")
    app, client = await _client("reporting", tmp_path)
    async with client:
        closed = await client.get("/budgets", headers=bearer("reader"))
        assert closed.status_code == 401 and "no API tokens are configured" in closed.json()["message"]
    await app.state.runtime.store.close()
    app, client = await _client("reporting", tmp_path / "open", ILT_AUTH="disabled")
    async with client:
        assert (await client.get("/budgets")).status_code == 200
    await app.state.runtime.store.close()
