"""``python -m services.enrollment``: run the enrollment service (configuration from the environment)."""

from shared.auth import refuse_to_start_without_tokens
from shared.runtime import serve

from .bootstrap import build
from .settings import EnrollmentSettings

if __name__ == "__main__":
    settings = EnrollmentSettings()
    refuse_to_start_without_tokens(settings)
    serve(build(settings), settings)
