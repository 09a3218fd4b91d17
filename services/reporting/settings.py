from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class ReportingSettings(ServiceSettings):
    """Environment variables: REPORTING_* plus the common KAFKA_* and LOG_* ones."""

    model_config = SettingsConfigDict(env_prefix="REPORTING_", extra="ignore")

    service_name: str = "reporting"
    http_port: int = 8004
    store_url: str = "sqlite:///var/reporting.db"
