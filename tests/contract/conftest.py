"""MongoDB for the store contract suite, when one is reachable.

- ``MONGODB_URI`` set (a replica set, e.g. ``mongodb://localhost:27017/?replicaSet=rs0``): used as it is; every test
  gets a fresh database, dropped afterwards;
- else ``TEST_MONGO=docker``, or ``TEST_MONGO=auto`` (the default) with a reachable Docker daemon: testcontainers
  starts ``mongo:7`` as a single-node replica set;
- else (or ``TEST_MONGO=off``) every MongoDB case is skipped, with the reason in the test summary (``pytest -ra``).

An explicit request that cannot be met (``MONGODB_URI`` unreachable, ``TEST_MONGO=docker`` without Docker) is an
error, not a skip.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

MONGO_IMAGE = "mongo:7"
REPLICA_SET = "rs0"
HOW_TO_RUN = "set MONGODB_URI=mongodb://localhost:27017/?replicaSet=rs0, or TEST_MONGO=docker (mongo:7 via testcontainers)"


def _docker_available() -> bool:
    try:
        import docker

        docker.from_env().ping()
        return True
    except Exception:  # noqa: BLE001
        return False


@contextmanager
def _replica_set_container() -> Iterator[str]:
    """mongo:7 started with --replSet, initiated as a one-member replica set; yields a direct-connection URI."""
    from pymongo import MongoClient
    from pymongo.errors import OperationFailure, PyMongoError
    from testcontainers.core.container import DockerContainer

    container = DockerContainer(MONGO_IMAGE).with_command(f"--replSet {REPLICA_SET} --bind_ip_all")
    container.with_exposed_ports(27017)
    with container:
        uri = f"mongodb://{container.get_container_host_ip()}:{container.get_exposed_port(27017)}/?directConnection=true"
        client: MongoClient = MongoClient(uri, serverSelectionTimeoutMS=2000)
        try:
            deadline = time.monotonic() + 120
            initiated = False
            last_error: Exception | None = None
            while True:
                try:
                    if not initiated:
                        client.admin.command("replSetInitiate", {
                            "_id": REPLICA_SET, "members": [{"_id": 0, "host": "localhost:27017"}],
                        })
                        initiated = True
                    if client.admin.command("hello").get("isWritablePrimary"):
                        break
                except OperationFailure as exc:
                    if exc.code == 23:  # AlreadyInitialized
                        initiated = True
                    last_error = exc
                except PyMongoError as exc:  # not accepting connections yet
                    last_error = exc
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{MONGO_IMAGE} did not become a replica set primary: {last_error!r}")
                time.sleep(0.25)
        finally:
            client.close()
        yield uri


@pytest.fixture(scope="session")
def mongo_uri() -> Iterator[str]:
    uri = os.environ.get("MONGODB_URI")
    if uri:
        yield uri
        return
    mode = os.environ.get("TEST_MONGO", "auto")
    if mode not in ("auto", "docker", "off"):
        pytest.fail(f"TEST_MONGO={mode!r}: expected auto, docker or off")
    if mode == "off":
        pytest.skip(f"MongoDB cases switched off (TEST_MONGO=off); to run them: {HOW_TO_RUN}")
    if mode == "docker" or _docker_available():
        with _replica_set_container() as container_uri:
            yield container_uri
        return
    pytest.skip(f"MongoDB not reachable (no MONGODB_URI, no Docker daemon); to run: {HOW_TO_RUN}")
