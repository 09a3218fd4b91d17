"""``python -m services.finance``: run the finance service (configuration from the environment)."""

from shared.auth import refuse_to_start_without_tokens
from shared.runtime import serve

from .bootstrap import build
from .settings import FinanceSettings

if __name__ == "__main__":
    settings = FinanceSettings()
    refuse_to_start_without_tokens(settings)
    serve(build(settings), settings)
