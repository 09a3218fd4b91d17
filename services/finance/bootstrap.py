"""Wiring of the finance service: the one place where store, Kafka and HTTP come together."""

from __future__ import annotations

from fastapi import FastAPI

from shared import asyncapi, auth, limits
from shared.contracts.topics import ENROLLMENT_EVENTS, FINANCE_REQUESTS, SCHEDULING_EVENTS
from shared.runtime import ServiceRuntime, create_app

from .application import requests
from .application.policies import HANDLERS
from .entrypoints.http import router
from .settings import FinanceSettings


def build(settings: FinanceSettings | None = None) -> FastAPI:
    settings = settings or FinanceSettings()
    runtime = ServiceRuntime(settings, publishes=True,
                             subscribes_to=(SCHEDULING_EVENTS, ENROLLMENT_EVENTS, FINANCE_REQUESTS),
                             handlers={**HANDLERS, **requests.HANDLERS})
    app = create_app(
        runtime,
        [router(runtime.store), asyncapi.router()],
        title="ILT finance",
        description="Budgets per cost centre and year; committed (planned) and actual (invoiced) costs of sessions.",
    )
    auth.install(app, settings)  # bearer tokens and roles (the routers say which role each route needs)
    limits.install(app, settings)  # request body size limit (413)
    return app
