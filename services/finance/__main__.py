"""``python -m services.finance``: run the finance service (configuration from the environment)."""

from shared.runtime import serve

from .bootstrap import build
from .settings import FinanceSettings

if __name__ == "__main__":
    settings = FinanceSettings()
    serve(build(settings), settings)
