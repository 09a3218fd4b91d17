"""``python -m services.reporting``: run the reporting service (configuration from the environment)."""

from shared.runtime import serve

from .bootstrap import build
from .settings import ReportingSettings

if __name__ == "__main__":
    settings = ReportingSettings()
    serve(build(settings), settings)
