"""Bearer-token authentication with roles, for the services' HTTP APIs.

Tokens are issued per client and carry roles: ``scheduler`` (scheduling's commands), ``enroller`` (enrollment's
commands), ``finance`` (finance's commands) and ``reader`` (reads only). Every valid token may read; a command
needs its service's role. Configuration (``shared.settings.ServiceSettings``):

- ``ILT_API_TOKENS``: ``client:token:role,role;client2:token2:role`` (``token:role,role`` without a client name
  works too), or the same as JSON: ``[{"client": "hr-portal", "token": "...", "roles": ["enroller"]}]``.
  Tokens must not contain ``:``, ``;``, ``,`` or whitespace (``secrets.token_urlsafe(32)`` makes good ones).
- ``ILT_API_TOKENS_FILE``: a file in either format (a mounted Kubernetes Secret), read at start and added.
- ``ILT_AUTH=disabled``: no authentication at all (development only). With authentication enabled and no token
  configured, every protected endpoint answers 401 and ``python -m services.<name>`` refuses to start.

Tokens are kept as ``SecretStr`` (never printed, never logged); a presented token is compared with every
configured one in constant time (``hmac.compare_digest`` of SHA-256 digests, no early exit). Missing or unknown
token: 401 with ``WWW-Authenticate: Bearer`` (answered by ``AuthenticationGate`` before the body is read);
valid token without the role: 403. ``/healthz``, ``/readyz``, ``/status``, ``/metrics`` and the API description
(``/openapi.json``, ``/docs``, ``/asyncapi.yaml``, ``/asyncapi.json``) stay open (probes, scrapers, clients; no personal data in any of them).

In a router: ``APIRouter(dependencies=[Depends(require(READER))])`` and ``@api.post(..., dependencies=[
Depends(require(SCHEDULER))])``; the app gets its ``Authenticator`` from ``install(app, settings)`` (bootstrap).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

log = structlog.get_logger()

SCHEDULER = "scheduler"
ENROLLER = "enroller"
FINANCE = "finance"
READER = "reader"
ROLES = (SCHEDULER, ENROLLER, FINANCE, READER)
_TOKEN = re.compile(r"^[^\s:;,]{16,512}$")
_CLIENT = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")

# documented in every protected route of the OpenAPI
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "no bearer token, or not a valid one (`WWW-Authenticate: Bearer`)"},
    403: {"description": "the token lacks the role this endpoint needs"},
}


class TokenConfigError(ValueError):
    """The token configuration cannot be read (the message never contains a token)."""


@dataclass(frozen=True)
class ApiClient:
    name: str
    token: SecretStr
    roles: frozenset[str]

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(self.token.get_secret_value().encode()).digest()


def parse_tokens(text: str, *, where: str = "ILT_API_TOKENS") -> list[ApiClient]:
    """Read ``client:token:role,role;...`` (or ``token:role,...``) or the JSON form. Raises TokenConfigError."""
    text = text.strip()
    if not text:
        return []
    entries: list[tuple[str | None, str, list[str]]] = []
    if text[0] in "[{":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise TokenConfigError(f"{where}: not valid JSON (line {getattr(exc, 'lineno', '?')})") from None
        if isinstance(data, dict):  # {"token": ["role", ...]}
            data = [{"token": t, "roles": r} for t, r in data.items()]
        if not isinstance(data, list):
            raise TokenConfigError(f"{where}: JSON must be a list of {{client, token, roles}} or an object")
        for n, item in enumerate(data, 1):
            if not isinstance(item, dict) or not isinstance(item.get("token"), str):
                raise TokenConfigError(f"{where}: entry {n} has no token string")
            roles = item.get("roles", [])
            if isinstance(roles, str):
                roles = roles.split(",")
            if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
                raise TokenConfigError(f"{where}: entry {n}: roles must be a list of role names")
            entries.append((item.get("client"), item["token"], roles))
    else:
        for n, part in enumerate((p.strip() for p in re.split(r"[;\n]", text)), 1):
            if not part or part.startswith("#"):
                continue
            fields = part.split(":")
            if len(fields) == 2:
                entries.append((None, fields[0].strip(), fields[1].split(",")))
            elif len(fields) == 3:
                entries.append((fields[0].strip(), fields[1].strip(), fields[2].split(",")))
            else:
                raise TokenConfigError(f"{where}: entry {n} is not client:token:role,role")
    clients: list[ApiClient] = []
    for n, (name, token, roles) in enumerate(entries, 1):
        name = name or f"client-{n}"
        if not _CLIENT.match(name):
            raise TokenConfigError(f"{where}: entry {n}: client name must be 1-64 of A-Z a-z 0-9 . _ @ -")
        if not _TOKEN.match(token):
            raise TokenConfigError(f"{where}: entry {n} ({name}): a token needs 16-512 characters without "
                                   "whitespace, ':', ';' or ','")
        wanted = {r.strip() for r in roles if r.strip()}
        unknown = wanted - set(ROLES)
        if unknown or not wanted:
            raise TokenConfigError(f"{where}: entry {n} ({name}): roles must be some of {', '.join(ROLES)}"
                                   + (f" (unknown: {', '.join(sorted(unknown))})" if unknown else ""))
        clients.append(ApiClient(name, SecretStr(token), frozenset(wanted)))
    digests = [c.digest for c in clients]
    if len(set(digests)) != len(digests):
        raise TokenConfigError(f"{where}: the same token is configured twice")
    return clients


def format_tokens(clients: Iterable[tuple[str, str, Iterable[str]]]) -> str:
    """(client, token, roles) -> the ``ILT_API_TOKENS`` text (for tools that issue tokens, e.g. devstack)."""
    return ";".join(f"{name}:{token}:{','.join(sorted(roles))}" for name, token, roles in clients)


class AuthError(Exception):
    def __init__(self, status_code: int, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.details = details

    def response(self) -> JSONResponse:
        headers = None
        if self.status_code == 401:
            challenge = 'Bearer realm="ilt"'
            if self.code == "invalid_token":
                challenge += ', error="invalid_token"'
            headers = {"WWW-Authenticate": challenge}
        return JSONResponse({"error": self.code, "message": self.message, **self.details},
                            status_code=self.status_code, headers=headers)


class Authenticator:
    """Who a bearer token belongs to. ``enabled=False`` lets everyone in (development only)."""

    def __init__(self, clients: Iterable[ApiClient], *, enabled: bool = True) -> None:
        self.clients = list(clients)
        self.enabled = enabled
        self._digests = [(c.digest, c) for c in self.clients]

    @classmethod
    def from_settings(cls, settings: Any) -> Authenticator:
        """From ``ILT_AUTH``, ``ILT_API_TOKENS`` and ``ILT_API_TOKENS_FILE``. Raises TokenConfigError."""
        if getattr(settings, "auth", "enabled") == "disabled":
            return cls([], enabled=False)
        clients: list[ApiClient] = []
        tokens: SecretStr | None = getattr(settings, "api_tokens", None)
        if tokens is not None:
            clients += parse_tokens(tokens.get_secret_value())
        path = getattr(settings, "api_tokens_file", None)
        if path:
            try:
                text = Path(path).read_text(encoding="utf-8")
            except OSError as exc:
                raise TokenConfigError(f"ILT_API_TOKENS_FILE: cannot read {path}: {exc.strerror}") from None
            clients += parse_tokens(text, where=f"ILT_API_TOKENS_FILE ({path})")
        digests = [c.digest for c in clients]
        if len(set(digests)) != len(digests):
            raise TokenConfigError("the same token is configured in ILT_API_TOKENS and ILT_API_TOKENS_FILE")
        return cls(clients)

    @property
    def configured(self) -> bool:
        return not self.enabled or bool(self.clients)

    def identify(self, token: str) -> ApiClient | None:
        """The client holding ``token``, compared with every configured token in constant time."""
        presented = hashlib.sha256(token.encode("utf-8", errors="replace")).digest()
        found: ApiClient | None = None
        for digest, client in self._digests:  # no early exit: the time does not tell which token matched
            if hmac.compare_digest(digest, presented):
                found = client
        return found

    def check(self, credentials: HTTPAuthorizationCredentials | None, role: str) -> ApiClient | None:
        if not self.enabled:
            return None
        if not self.clients:
            raise AuthError(401, "unauthenticated", "no API tokens are configured on this service "
                            "(ILT_API_TOKENS or ILT_API_TOKENS_FILE): nobody can be let in")
        if credentials is None or not credentials.credentials:
            raise AuthError(401, "unauthenticated", "this endpoint needs a bearer token: "
                            "'Authorization: Bearer <token>'")
        client = self.identify(credentials.credentials)
        if client is None:
            raise AuthError(401, "invalid_token", "the bearer token is not valid")
        if role != READER and role not in client.roles:
            raise AuthError(403, "forbidden", f"this endpoint needs the role '{role}'",
                            required_role=role, roles=sorted(client.roles))
        return client


_bearer = HTTPBearer(auto_error=False, description="A token issued per client (ILT_API_TOKENS), with roles "
                     "scheduler, enroller, finance, reader.")


def require(role: str) -> Callable[..., Awaitable[ApiClient | None]]:
    """A FastAPI dependency: the request needs a valid bearer token holding ``role`` (``reader``: any valid
    token). Returns the client (None when authentication is disabled)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")

    async def authenticated(request: Request,
                            credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> ApiClient | None:
        authenticator: Authenticator | None = getattr(request.app.state, "auth", None)
        if authenticator is None:  # fail closed: the app was built without install()
            raise AuthError(401, "unauthenticated", "authentication is not set up on this service")
        client = authenticator.check(credentials, role)
        if client is not None:
            request.state.client = client.name
        return client

    authenticated.__name__ = f"require_{role}"
    return authenticated


# open without a token: probes, scrapers and the API description (no learner data in any of them)
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/status", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect",
                        "/redoc", "/asyncapi.yaml", "/asyncapi.json"})


class AuthenticationGate:
    """ASGI middleware: a request to anything but ``OPEN_PATHS`` without a valid bearer token is answered 401
    before its body is read or parsed (FastAPI parses a JSON body before it runs the dependencies, so a broken
    body would otherwise say 422 to a stranger). The role is checked by ``require`` on each route."""

    def __init__(self, app: Any, authenticator: Authenticator) -> None:
        self.app = app
        self.authenticator = authenticator

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.authenticator.enabled and scope.get("path") not in OPEN_PATHS:
            header = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"authorization"), "")
            scheme, _, token = header.partition(" ")
            credentials = (HTTPAuthorizationCredentials(scheme=scheme, credentials=token.strip())
                           if scheme.lower() == "bearer" and token.strip() else None)
            try:
                self.authenticator.check(credentials, READER)
            except AuthError as refused:
                await refused.response()(scope, receive, send)
                return
        await self.app(scope, receive, send)


def install(app: FastAPI, settings: Any) -> Authenticator:
    """Give the app its authenticator (from the settings), the gate that turns strangers away before their body
    is read, and the JSON answer of AuthError. Raises TokenConfigError on a malformed configuration (the process
    does not start)."""
    authenticator = Authenticator.from_settings(settings)
    app.state.auth = authenticator
    app.add_middleware(AuthenticationGate, authenticator=authenticator)

    async def refused(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AuthError)
        return exc.response()

    app.add_exception_handler(AuthError, refused)
    if not authenticator.enabled:
        log.warning("authentication disabled (ILT_AUTH=disabled): every request is let in; development only")
    elif not authenticator.clients:
        log.error("no API tokens configured (ILT_API_TOKENS / ILT_API_TOKENS_FILE): protected endpoints answer 401")
    return authenticator


def refuse_to_start_without_tokens(settings: Any) -> None:
    """For ``python -m services.<name>``: stop with a clear message when no token is configured and
    authentication is not explicitly disabled, or when the configuration cannot be read."""
    import sys

    try:
        authenticator = Authenticator.from_settings(settings)
    except TokenConfigError as exc:
        sys.exit(f"cannot start: {exc}")
    if not authenticator.configured:
        sys.exit("cannot start: no API tokens configured. Set ILT_API_TOKENS or ILT_API_TOKENS_FILE "
                 "(see README, Security), or ILT_AUTH=disabled for development only.")
