"""Wiring of the enrollment service: the one place where store, Kafka and HTTP come together."""

from __future__ import annotations

from fastapi import FastAPI

from shared import asyncapi, auth, limits
from shared.contracts.topics import ENROLLMENT_REQUESTS, SCHEDULING_EVENTS
from shared.runtime import ServiceRuntime, create_app

from .adapters.arrivals import SessionArrivals
from .application import requests
from .application.policies import HANDLERS
from .entrypoints import calendars
from .entrypoints.http import router
from .settings import EnrollmentSettings


def build(settings: EnrollmentSettings | None = None) -> FastAPI:
    settings = settings or EnrollmentSettings()
    runtime = ServiceRuntime(settings, publishes=True, subscribes_to=(SCHEDULING_EVENTS, ENROLLMENT_REQUESTS),
                             handlers={**HANDLERS, **requests.HANDLERS})
    arrivals = SessionArrivals()
    runtime.on_applied.append(arrivals.notify)  # wakes enrollments waiting for a session scheduling just planned
    app = create_app(
        runtime,
        [router(runtime.store, arrivals, settings.session_wait_seconds), calendars.router(runtime.store),
         asyncapi.router()],
        title="ILT enrollment",
        description="Enrolls learners in sessions within capacity, keeps the waitlist and records attendance.",
    )
    auth.install(app, settings)  # bearer tokens and roles (the routers say which role each route needs)
    limits.install(app, settings)  # request body size limit (413)
    return app
