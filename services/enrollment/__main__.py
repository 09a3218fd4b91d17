"""``python -m services.enrollment``: run the enrollment service (configuration from the environment)."""

from shared.runtime import serve

from .bootstrap import build
from .settings import EnrollmentSettings

if __name__ == "__main__":
    settings = EnrollmentSettings()
    serve(build(settings), settings)
