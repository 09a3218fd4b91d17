from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class SchedulingSettings(ServiceSettings):
    """Environment variables: SCHEDULING_* plus the common KAFKA_* and LOG_* ones."""

    model_config = SettingsConfigDict(env_prefix="SCHEDULING_", extra="ignore")

    service_name: str = "scheduling"
    http_port: int = 8001
    store_url: str = "sqlite:///var/scheduling.db"
