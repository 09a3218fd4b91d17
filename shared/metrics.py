"""Prometheus metrics of a service process, exposed on ``GET /metrics``.

One registry per process (``REGISTRY``), created on import; every service gets the same metrics because they are
recorded in the shared plumbing (``shared.runtime``, ``shared.messaging.consumer``, ``shared.messaging.relay``,
``shared.observability``). Counters and histograms are cumulative for the life of the process (Prometheus handles
restarts); the gauges are set when ``/metrics`` is scraped (``ServiceRuntime.refresh_metrics``).

Label values are bounded: event types come from the event catalogue (or ``unknown``), routes are route templates
(``/sessions/{session_id}``, never a raw path), reasons are the dead-letter reasons.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.utils import floatToGoString

disable_created_metrics()  # no *_created series: they double the output and say nothing a restart does not
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

UNKNOWN = "unknown"

SERVICE = Gauge("ilt_service", "Always 1; names the service this process runs.", ["service"], registry=REGISTRY)

# --- consumer -------------------------------------------------------------------------------------------------------
EVENTS_CONSUMED = Counter(
    "ilt_events_consumed",
    "Events taken from Kafka and stored as seen, per CloudEvents type and outcome: applied (a handler ran), "
    "ignored (this service has no handler for the type; only recorded in the inbox), duplicate (seen before, skipped).",
    ["event_type", "outcome"], registry=REGISTRY,
)
class LoopHistogram:
    """A histogram with one label, observed from the event loop's thread only: ``observe`` is a bisection and two
    additions. prometheus_client's ``Histogram`` takes a lock per observation (1.3 us, measured: 8% of the time a
    projection spends per event). Exposed like any histogram (``_bucket`` with ``le``, ``_count``, ``_sum``); a
    scrape copies the counts, so it never sees a bucket without its count."""

    def __init__(self, name: str, documentation: str, label: str, buckets: tuple[float, ...],
                 registry: CollectorRegistry) -> None:
        self.name, self.documentation, self.label = name, documentation, label
        self.bounds = tuple(sorted(buckets))
        self._series: dict[str, LoopHistogram.Series] = {}
        registry.register(self)  # type: ignore[arg-type]

    class Series:
        __slots__ = ("bounds", "counts", "sum")

        def __init__(self, bounds: tuple[float, ...]) -> None:
            self.bounds = bounds
            self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound (+Inf)
            self.sum = 0.0

        def observe(self, amount: float) -> None:
            self.counts[bisect_left(self.bounds, amount)] += 1
            self.sum += amount

    def labels(self, value: str) -> LoopHistogram.Series:
        series = self._series.get(value)
        if series is None:
            series = self._series[value] = LoopHistogram.Series(self.bounds)
        return series

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=[self.label])
        for value, series in list(self._series.items()):
            counts, total = list(series.counts), series.sum
            cumulative, buckets = 0, []
            for bound, n in zip((*self.bounds, float("inf")), counts, strict=True):
                cumulative += n
                buckets.append((floatToGoString(bound), cumulative))
            family.add_metric([value], buckets, total)
        yield family


HANDLER_SECONDS = LoopHistogram(
    "ilt_handler_duration_seconds",
    "Time one event handler took, per event type (measured per event, also inside a batch; the batch's commit "
    "is in ilt_consumer_batch_duration_seconds).",
    "event_type",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    registry=REGISTRY,
)
HANDLER_ERRORS = Counter(
    "ilt_handler_errors",
    "Failed handler runs per event type (every failed try: retries and the batch run that was rolled back count).",
    ["event_type"], registry=REGISTRY,
)
BATCH_SECONDS = Histogram(
    "ilt_consumer_batch_duration_seconds",
    "Time to apply one fetched batch of records and commit its transaction(s).",
    registry=REGISTRY, buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
DEAD_LETTERED = Counter(
    "ilt_dead_lettered",
    "Records sent to the service's dead-letter topic, per reason (handler_failed, invalid_payload, unknown_type, ...).",
    ["reason"], registry=REGISTRY,
)
LAG_EVENTS = Gauge(
    "ilt_projection_lag_events",
    "Records on an assigned partition not yet stored by this service: the high-water mark of the consumer's last "
    "fetch minus the next offset to store. Partitions not fetched yet are left out.",
    ["topic", "partition"], registry=REGISTRY,
)
LAG_SECONDS = Gauge(
    "ilt_projection_lag_seconds",
    "While records are behind: now minus the CloudEvents time of the last applied event (or of the consumer's "
    "start if none was applied yet); 0 when nothing is behind.",
    registry=REGISTRY,
)

# --- producer -------------------------------------------------------------------------------------------------------
EVENTS_STORED = Counter(
    "ilt_events_stored",
    "Events appended to the service's own streams (by commands and by consumed events), per type.",
    ["event_type"], registry=REGISTRY,
)
EVENTS_PUBLISHED = Counter(
    "ilt_events_published",
    "Events the outbox relay published and the broker acknowledged, per type.",
    ["event_type"], registry=REGISTRY,
)
OUTBOX_BACKLOG = Gauge("ilt_outbox_backlog", "Stored events not yet published.", registry=REGISTRY)
OUTBOX_FAILURES = Counter(
    "ilt_outbox_publish_failures", "Failed outbox publish rounds (broker away, timeout); retried.", registry=REGISTRY,
)

# --- HTTP -----------------------------------------------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "ilt_http_requests", "HTTP requests per method, route template and status code.",
    ["method", "route", "status"], registry=REGISTRY,
)
HTTP_SECONDS = Histogram(
    "ilt_http_request_duration_seconds", "HTTP request latency per method and route template.",
    ["method", "route"], registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


def exposition() -> tuple[bytes, str]:
    """The registry in the Prometheus text format, and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
