"""``python -m services.scheduling``: run the scheduling service (configuration from the environment)."""

from shared.runtime import serve

from .bootstrap import build
from .settings import SchedulingSettings

if __name__ == "__main__":
    settings = SchedulingSettings()
    serve(build(settings), settings)
