"""``python -m services.scheduling``: run the scheduling service (configuration from the environment)."""

from shared.auth import refuse_to_start_without_tokens
from shared.runtime import serve

from .bootstrap import build
from .settings import SchedulingSettings

if __name__ == "__main__":
    settings = SchedulingSettings()
    refuse_to_start_without_tokens(settings)
    serve(build(settings), settings)
