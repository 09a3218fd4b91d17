"""The operator tool's refusals: a wrong store path or an unreachable broker is a clear error, and writes nothing."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime

from ops.__main__ import main
from shared.contracts.scheduling import SessionCancelled
from shared.messaging.envelope import Envelope
from shared.store.sqlite import SQLiteStore


def test_a_store_file_that_is_not_there_is_an_error_not_an_empty_store(tmp_path, capsys) -> None:
    missing = tmp_path / "var" / "reporting.db"
    code = main(["dead-letters", "list", "--service", "reporting", "--store-url", f"sqlite:///{missing}"])
    assert code == 2
    err = capsys.readouterr().err
    assert "no reporting store at" in err and "does not exist" in err and "var/run/reporting.db" in err
    assert not missing.exists() and not missing.parent.exists()  # nothing created


def test_an_unreachable_broker_is_one_clear_line_not_a_traceback(tmp_path, capsys) -> None:
    path = tmp_path / "scheduling.db"

    async def one_stored_event() -> None:
        store = SQLiteStore(str(path))
        await store.open()
        async with store.transaction() as uow:
            await uow.append("session-s-1", 0, [Envelope(data=SessionCancelled(
                session_id="s-1", occurred_at=datetime.now(UTC)))])
        await store.close()

    asyncio.run(one_stored_event())
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = main(["replay", "--service", "scheduling", "--store-url", f"sqlite:///{path}",
                 "--bootstrap-servers", f"127.0.0.1:{port}", "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert f"the Kafka brokers at 127.0.0.1:{port} cannot be reached" in err and "Traceback" not in err
