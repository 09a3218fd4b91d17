"""Start the broker and the four services as separate processes, each with its own SQLite file and port.

Used by ``make run`` (``python -m devstack``), the demo and the end-to-end tests.

Authentication: unless ``ILT_API_TOKENS`` is already set (then those tokens are used) or ``auth=False`` (then the
services run with ``ILT_AUTH=disabled``), the stack issues one fresh random token per role (``dev-scheduler``,
``dev-enroller``, ``dev-finance``, ``dev-reader``) and one ``dev-operator`` token holding every role, hands them to
the services through ``ILT_API_TOKENS`` and writes them to ``<workdir>/api-tokens`` (mode 0600).
``stack.headers(role)`` gives the ``Authorization`` header of a role (no role: the operator token);
``stack.headers_for(service)`` the one that may send that service's commands.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from .broker import EmbeddedBroker, free_port, wait_for_port

SERVICES = ("scheduling", "enrollment", "finance", "reporting")
DEFAULT_PORTS = {"scheduling": 8001, "enrollment": 8002, "finance": 8003, "reporting": 8004}
ROLES = ("scheduler", "enroller", "finance", "reader")
WRITER_ROLE = {"scheduling": "scheduler", "enrollment": "enroller", "finance": "finance", "reporting": "reader"}
ALL_ROLES = "operator"  # the dev token that holds every role


def role_tokens(text: str) -> dict[str, str]:
    """role -> a token holding it (the first configured), and ``operator`` -> one holding every role (if any),
    read from ``ILT_API_TOKENS`` text."""
    from shared.auth import parse_tokens

    out: dict[str, str] = {}
    for client in parse_tokens(text):
        token = client.token.get_secret_value()
        for role in client.roles:
            out.setdefault(role, token)
        if client.roles >= set(ROLES):
            out.setdefault(ALL_ROLES, token)
    return out


def issue_dev_tokens() -> tuple[str, dict[str, str]]:
    """Fresh random tokens: (the ILT_API_TOKENS text, role -> token)."""
    from shared.auth import format_tokens

    tokens = {role: secrets.token_urlsafe(24) for role in (*ROLES, ALL_ROLES)}
    text = format_tokens([(f"dev-{role}", token, ROLES if role == ALL_ROLES else (role,))
                          for role, token in tokens.items()])
    return text, tokens


@dataclass
class ServiceProcess:
    name: str
    port: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            [sys.executable, "-m", f"services.{self.name}"], env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self.log_path}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} not ready after {timeout}s; see {self.log_path}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        self.stop(signal.SIGKILL, timeout=5)


@dataclass
class Stack:
    """The whole system on this machine. ``with Stack(workdir) as stack: stack.url("enrollment")``."""

    workdir: Path
    services: Iterable[str] = SERVICES
    fixed_ports: bool = False
    bootstrap_servers: str | None = None  # use this Kafka instead of starting the embedded broker
    extra_env: dict[str, str] = field(default_factory=dict)
    auth: bool = True  # False: the services run with ILT_AUTH=disabled
    broker: EmbeddedBroker | None = None
    processes: dict[str, ServiceProcess] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)  # role -> bearer token ("operator": every role)

    def _auth_env(self) -> dict[str, str]:
        env = {**os.environ, **self.extra_env}
        if not self.auth or env.get("ILT_AUTH") == "disabled":
            self.auth = False
            return {"ILT_AUTH": "disabled"}
        if env.get("ILT_API_TOKENS"):
            self.tokens = role_tokens(env["ILT_API_TOKENS"])
            return {}
        text, self.tokens = issue_dev_tokens()
        path = self.workdir / "api-tokens"
        path.touch(mode=0o600, exist_ok=True)
        path.chmod(0o600)
        path.write_text(text + "\n")
        return {"ILT_API_TOKENS": text}

    def headers(self, role: str | None = None) -> dict[str, str]:
        """The Authorization header of a token holding ``role`` (None: every role); {} without authentication."""
        if not self.auth:
            return {}
        token = self.tokens.get(role or ALL_ROLES)
        if token is None:
            raise KeyError(f"no configured token holds the role {role or 'every role'}")
        return {"Authorization": f"Bearer {token}"}

    def headers_for(self, service: str) -> dict[str, str]:
        """The header of the role that may send ``service``'s commands (reporting: a reader)."""
        return self.headers(WRITER_ROLE[service])

    def start(self) -> Stack:
        self.workdir.mkdir(parents=True, exist_ok=True)
        servers = self.bootstrap_servers or os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if not servers:
            self.broker = EmbeddedBroker(log_file=self.workdir / "broker.log").start()
            servers = self.broker.bootstrap_servers
        else:
            from shared.messaging.kafka import ensure_topics

            asyncio.run(ensure_topics(servers))
        self.bootstrap_servers = servers
        auth_env = self._auth_env()
        for name in self.services:
            port = DEFAULT_PORTS[name] if self.fixed_ports else free_port()
            prefix = name.upper()
            env = {
                **os.environ,
                "KAFKA_BOOTSTRAP_SERVERS": servers,
                # the embedded broker answers a fetch only after fetch.max.wait, even when records arrived (measured:
                # command -> visible p50 330 ms with Kafka's 500 ms default, 50 ms with 20 ms)
                "KAFKA_FETCH_MAX_WAIT_MS": os.environ.get("KAFKA_FETCH_MAX_WAIT_MS", "20"),
                f"{prefix}_HTTP_PORT": str(port),
                f"{prefix}_STORE_URL": f"sqlite:///{self.workdir / (name + '.db')}",
                "LOG_FORMAT": os.environ.get("LOG_FORMAT", "json"),
                **self.extra_env,
                **auth_env,
            }
            proc = ServiceProcess(name, port, env, self.workdir / f"{name}.log")
            proc.start()
            self.processes[name] = proc
        for proc in self.processes.values():
            proc.wait_ready()
        return self

    def url(self, name: str) -> str:
        return self.processes[name].url

    def restart(self, name: str) -> None:
        proc = self.processes[name]
        proc.stop()
        proc.start()
        proc.wait_ready()

    def stop(self) -> None:
        for proc in self.processes.values():
            proc.stop()
        if self.broker is not None:
            self.broker.stop()

    def __enter__(self) -> Stack:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_quiescent(self, timeout: float = 300.0, poll: float = 0.2) -> dict[str, dict]:
        return wait_quiescent({n: p.url for n, p in self.processes.items()}, timeout, poll)


def wait_quiescent(urls: dict[str, str], timeout: float = 300.0, poll: float = 0.2) -> dict[str, dict]:
    """Wait until every event stored by a producer has been seen by every consumer subscribed to it.

    Uses each service's ``/status``: producers report ``stored_events`` and ``outbox_backlog``; consumers report
    ``processed_events`` (applied or skipped, from their inbox) and ``dead_lettered``. Quiet means: no outbox
    backlog, every consumer has seen exactly what its upstream producers stored, and nothing changed over two
    polls. No fixed sleeps."""
    topic_of = {"scheduling": "ilt.scheduling.events", "enrollment": "ilt.enrollment.events",
                "finance": "ilt.finance.events"}
    deadline = time.monotonic() + timeout
    previous = None
    with httpx.Client(timeout=10) as client:
        while True:
            status = {n: client.get(f"{u}/status").json() for n, u in urls.items()}
            stored_by_topic = {topic_of[n]: s["stored_events"] for n, s in status.items() if "stored_events" in s}
            settled = all(s.get("outbox_backlog", 0) == 0 for s in status.values())
            for s in status.values():
                if "processed_events" in s:
                    upstream = sum(stored_by_topic.get(t, 0) for t in s["subscribes_to"])
                    settled &= s["processed_events"] >= upstream
            if settled and status == previous:
                return status
            previous = status if settled else None
            if time.monotonic() > deadline:
                raise TimeoutError(f"services not quiescent after {timeout}s: {status}")
            time.sleep(poll)
