from datetime import UTC, datetime
from decimal import Decimal

import pytest

from shared.contracts.finance import CostIncurred
from shared.contracts.scheduling import SessionCancelled
from shared.messaging.envelope import Envelope, UndecodableEvent, decode


def cancelled(session_id: str = "s-1") -> Envelope:
    return Envelope(data=SessionCancelled(session_id=session_id, occurred_at=datetime(2027, 1, 5, tzinfo=UTC),
                                          reason="instructor ill"))


def test_binary_mode_headers_carry_cloudevents_attributes() -> None:
    env = cancelled()
    headers = dict(env.headers())
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_type"] == b"ilt.scheduling.session-cancelled.v1"
    assert headers["ce_source"] == b"/ilt/scheduling"
    assert headers["ce_subject"] == b"s-1"
    assert headers["ce_id"] == env.id.encode()
    assert headers["content-type"] == b"application/json"
    assert headers["ce_correlationid"] == env.id.encode()  # a chain starts with itself
    assert "ce_causationid" not in headers
    assert env.key == "s-1"


def test_round_trip_keeps_ids_time_and_data() -> None:
    env = cancelled()
    child = env.caused(SessionCancelled(session_id="s-1", occurred_at=env.data.occurred_at))
    back = decode(child.value(), child.headers())
    assert back.id == child.id and back.data == child.data
    assert back.correlation_id == env.id and back.causation_id == env.id
    assert back.time == child.time


def test_money_travels_as_decimal_string_never_float() -> None:
    cost = CostIncurred(occurred_at=datetime.now(UTC), cost_id="c1", cost_centre="CC", period="2027",
                        kind="committed", reason="planned_cost", category="venue",
                        amount={"amount": "1234.50", "currency": "EUR"}, session_id="s-1")
    env = Envelope(data=cost)
    assert b'"amount":"1234.50"' in env.value()
    assert decode(env.value(), env.headers()).data.amount.amount == Decimal("1234.50")
    assert env.key == "s-1"


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda h, v: ([x for x in h if x[0] != "ce_type"], v), "missing_type"),
        (lambda h, v: ([(k, b"ilt.nope.v9" if k == "ce_type" else x) for k, x in h], v), "unknown_type"),
        (lambda h, v: ([(k, b"ilt.scheduling.session-cancelled.v2" if k == "ce_type" else x) for k, x in h], v),
         "unknown_type"),
        (lambda h, v: (h, b"{not json"), "invalid_payload"),
        (lambda h, v: (h, b'{"reason": "x"}'), "invalid_payload"),
        (lambda h, v: ([x for x in h if x[0] != "ce_specversion"], v), "unsupported_specversion"),
        (lambda h, v: ([x for x in h if x[0] != "ce_id"], v), "missing_id"),
    ],
)
def test_undecodable_records_name_the_reason(mutate, reason) -> None:
    env = cancelled()
    headers, value = mutate(env.headers(), env.value())
    with pytest.raises(UndecodableEvent) as err:
        decode(value, headers)
    assert err.value.reason == reason


def test_validation_reason_never_echoes_the_input() -> None:
    env = cancelled()
    with pytest.raises(UndecodableEvent) as err:
        decode(b'{"session_id": 42, "occurred_at": "jane.doe@example.org"}', env.headers())
    assert "jane.doe" not in str(err.value)
    assert "occurred_at" in err.value.detail


def test_time_zone_must_be_iana() -> None:
    from pydantic import ValidationError

    from shared.contracts.scheduling import SessionPlan

    with pytest.raises(ValidationError, match="unknown IANA time zone"):
        SessionPlan(course_code="SWC", title="t", delivery="virtual", virtual_room_id="r", time_zone="Mars/Olympus",
                    slots=[{"starts_at": "2027-01-01T09:00Z", "ends_at": "2027-01-01T10:00Z"}], capacity=1,
                    cost_centre="CC")


# structured mode (content-type application/cloudevents+json, the whole event in the value) -------------------


def structured(env: Envelope, **changes) -> bytes:
    import orjson

    event = {"specversion": "1.0", "id": env.id, "source": env.source, "type": env.type,
             "time": env.time.isoformat(), "subject": env.subject, "datacontenttype": "application/json",
             "correlationid": env.correlation_id, "data": orjson.loads(env.value())}
    event.update(changes)
    return orjson.dumps({k: v for k, v in event.items() if v is not None})


STRUCTURED = [("content-type", b"application/cloudevents+json; charset=UTF-8")]


def test_structured_mode_reads_the_same_event_as_binary_mode() -> None:
    env = cancelled()
    child = env.caused(SessionCancelled(session_id="s-1", occurred_at=env.data.occurred_at, reason="venue closed"))
    back = decode(structured(child, causationid=child.causation_id), STRUCTURED)
    binary = decode(child.value(), child.headers())
    assert (back.id, back.type, back.data, back.time) == (binary.id, binary.type, binary.data, binary.time)
    assert (back.correlation_id, back.causation_id) == (env.id, env.id)
    assert back.source == "/ilt/scheduling"


def test_structured_mode_accepts_base64_data_and_json_data_given_as_a_string() -> None:
    import base64

    env = cancelled()
    as_base64 = structured(env, data=None, data_base64=base64.b64encode(env.value()).decode())
    as_string = structured(env, data=env.value().decode())
    assert decode(as_base64, STRUCTURED).data == env.data == decode(as_string, STRUCTURED).data


@pytest.mark.parametrize(("value", "reason"), [
    (b"{not json", "invalid_structured_event"),
    (b"[1, 2]", "invalid_structured_event"),
    (None, "empty_value"),
])
def test_broken_structured_events_name_the_reason(value, reason) -> None:
    with pytest.raises(UndecodableEvent) as err:
        decode(value, STRUCTURED)
    assert err.value.reason == reason


@pytest.mark.parametrize(("changes", "reason"), [
    ({"specversion": "0.3"}, "unsupported_specversion"),
    ({"source": None}, "missing_source"),
    ({"type": "ilt.nope.v1"}, "unknown_type"),
    ({"datacontenttype": "application/xml"}, "unsupported_content_type"),
    ({"data": {"reason": "no session id"}}, "invalid_payload"),
    ({"time": "yesterday"}, "invalid_time"),
])
def test_structured_attributes_are_checked_like_binary_headers(changes, reason) -> None:
    with pytest.raises(UndecodableEvent) as err:
        decode(structured(cancelled(), **changes), STRUCTURED)
    assert err.value.reason == reason


def test_binary_mode_with_another_content_type_is_refused() -> None:
    env = cancelled()
    headers = [(k, b"text/plain" if k == "content-type" else v) for k, v in env.headers()]
    with pytest.raises(UndecodableEvent) as err:
        decode(env.value(), headers)
    assert err.value.reason == "unsupported_content_type"
