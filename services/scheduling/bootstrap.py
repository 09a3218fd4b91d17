"""Wiring of the scheduling service: the one place where store, Kafka and HTTP come together."""

from __future__ import annotations

from fastapi import FastAPI

from shared import asyncapi, auth, limits
from shared.contracts.topics import SCHEDULING_REQUESTS
from shared.runtime import ServiceRuntime, create_app

from .application.requests import HANDLERS
from .entrypoints import calendars
from .entrypoints.http import router
from .settings import SchedulingSettings


def build(settings: SchedulingSettings | None = None) -> FastAPI:
    settings = settings or SchedulingSettings()
    # consumes only the requests other systems send it on Kafka (the same commands as its HTTP API)
    runtime = ServiceRuntime(settings, publishes=True, subscribes_to=(SCHEDULING_REQUESTS,), handlers=dict(HANDLERS))
    app = create_app(
        runtime,
        [router(runtime.store), calendars.router(runtime.store), asyncapi.router()],
        title="ILT scheduling",
        description="Schedules sessions and books instructors, venues, rooms and equipment without double-booking.",
    )
    auth.install(app, settings)  # bearer tokens and roles (the routers say which role each route needs)
    limits.install(app, settings)  # request body size limit (413)
    return app
