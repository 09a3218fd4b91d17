"""Wiring of the reporting service: consumes all three event topics, publishes nothing, serves read models."""

from __future__ import annotations

from fastapi import FastAPI

from shared import asyncapi, auth, limits
from shared.contracts.topics import EVENT_TOPICS
from shared.runtime import ServiceRuntime, create_app

from .application.policies import handlers
from .entrypoints.http import router
from .settings import ReportingSettings


def build(settings: ReportingSettings | None = None) -> FastAPI:
    settings = settings or ReportingSettings()
    runtime = ServiceRuntime(settings, publishes=False, subscribes_to=EVENT_TOPICS, handlers=handlers())
    app = create_app(
        runtime,
        [router(runtime.store), asyncapi.router()],
        title="ILT reporting",
        description="Occupancy of sessions (per venue, course, month, year) and budgets per cost centre, "
        "projected from the events of scheduling, enrollment and finance.",
    )
    auth.install(app, settings)  # bearer tokens and roles (the routers say which role each route needs)
    limits.install(app, settings)  # request body size limit (413)
    return app
