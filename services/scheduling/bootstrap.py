"""Wiring of the scheduling service: the one place where store, Kafka and HTTP come together."""

from __future__ import annotations

from fastapi import FastAPI

from shared.runtime import ServiceRuntime, create_app

from .entrypoints.http import router
from .settings import SchedulingSettings


def build(settings: SchedulingSettings | None = None) -> FastAPI:
    settings = settings or SchedulingSettings()
    runtime = ServiceRuntime(settings, publishes=True)
    return create_app(
        runtime,
        [router(runtime.store)],
        title="ILT scheduling",
        description="Schedules sessions and books instructors, venues, rooms and equipment without double-booking.",
    )
