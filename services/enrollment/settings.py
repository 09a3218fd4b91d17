from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class EnrollmentSettings(ServiceSettings):
    """Environment variables: ENROLLMENT_* plus the common KAFKA_* and LOG_* ones."""

    model_config = SettingsConfigDict(env_prefix="ENROLLMENT_", extra="ignore")

    service_name: str = "enrollment"
    http_port: int = 8002
    store_url: str = "sqlite:///var/enrollment.db"
    session_wait_seconds: float = Field(
        5.0, ge=0, le=60,
        description="How long an enrollment for a session not yet heard of waits for scheduling's event "
        "before answering 404 unknown_session (retryable).",
    )
