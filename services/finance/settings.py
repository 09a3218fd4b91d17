from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class FinanceSettings(ServiceSettings):
    """Environment variables: FINANCE_* plus the common KAFKA_* and LOG_* ones."""

    model_config = SettingsConfigDict(env_prefix="FINANCE_", extra="ignore")

    service_name: str = "finance"
    http_port: int = 8003
    store_url: str = "sqlite:///var/finance.db"
