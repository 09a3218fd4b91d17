"""Configuration from the environment (pydantic-settings). Each service subclasses ``ServiceSettings`` with its
own prefix (``SCHEDULING_``, ``ENROLLMENT_``...); Kafka and logging variables are common to all services."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _env(name: str) -> Any:
    return AliasChoices(name)


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", env_prefix="ILT_")

    service_name: str = "service"
    http_host: str = Field("127.0.0.1", description="Interface the HTTP API listens on.")
    http_port: int = Field(8000, description="Port of the HTTP API.")
    store_url: str = Field("sqlite:///var/service.db",
                           description="The service's own database: sqlite:///<relative path>, sqlite:////<absolute path>, "
                           "or mongodb://user:pass@host/<database>?replicaSet=rs0.")

    kafka_bootstrap_servers: str = Field("127.0.0.1:9092", validation_alias=_env("KAFKA_BOOTSTRAP_SERVERS"),
                                         description="Kafka brokers (host:port,...). `make run` starts an embedded "
                                         "broker unless this is set.")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", validation_alias=_env("KAFKA_SECURITY_PROTOCOL"), description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."
    )
    kafka_sasl_mechanism: str | None = Field(None, validation_alias=_env("KAFKA_SASL_MECHANISM"),
                                             description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (with SASL_*).")
    kafka_sasl_username: str | None = Field(None, validation_alias=_env("KAFKA_SASL_USERNAME"), description="SASL user.")
    kafka_sasl_password: SecretStr | None = Field(None, validation_alias=_env("KAFKA_SASL_PASSWORD"),
                                                  description="SASL password (never logged).")
    kafka_ssl_cafile: str | None = Field(None, validation_alias=_env("KAFKA_SSL_CAFILE"), description="CA bundle for TLS.")
    kafka_ssl_certfile: str | None = Field(None, validation_alias=_env("KAFKA_SSL_CERTFILE"),
                                           description="Client certificate for mutual TLS.")
    kafka_ssl_keyfile: str | None = Field(None, validation_alias=_env("KAFKA_SSL_KEYFILE"),
                                          description="Client key for mutual TLS.")

    kafka_fetch_max_wait_ms: int = Field(
        500, ge=1, le=30_000, validation_alias=_env("KAFKA_FETCH_MAX_WAIT_MS"),
        description="Longest a consumer's fetch waits for records (Kafka's `fetch.max.wait.ms`; Apache Kafka answers "
        "as soon as records arrive). The embedded broker answers only after this wait, so the dev stack sets 20.")

    log_format: Literal["json", "console"] = Field("json", validation_alias=_env("LOG_FORMAT"),
                                                   description="json (production) or console (terminal).")
    log_level: str = Field("INFO", validation_alias=_env("LOG_LEVEL"), description="DEBUG, INFO, WARNING, ERROR.")

    handler_max_attempts: int = Field(5, ge=1, le=50, validation_alias=_env("HANDLER_MAX_ATTEMPTS"),
                                      description="Tries of a failing event handler before the dead-letter topic.")
    handler_backoff_seconds: float = Field(0.2, ge=0, le=60, validation_alias=_env("HANDLER_BACKOFF_SECONDS"),
                                           description="First retry delay; doubles on each further try.")
    outbox_batch_size: int = Field(2000, ge=1, le=10000, validation_alias=_env("OUTBOX_BATCH_SIZE"),
                                   description="Outbox entries the relay publishes per round trip.")

    api_tokens: SecretStr | None = Field(None, validation_alias=_env("ILT_API_TOKENS"),
                                         description="Bearer tokens and their roles: `client:token:role,role;...` "
                                         "(roles: scheduler, enroller, finance, reader; see Security). A secret.")
    api_tokens_file: str | None = Field(None, validation_alias=_env("ILT_API_TOKENS_FILE"),
                                        description="A file with tokens in the same format (a mounted Secret); read "
                                        "at start, added to ILT_API_TOKENS.")
    auth: Literal["enabled", "disabled"] = Field("enabled", validation_alias=_env("ILT_AUTH"),
                                                 description="`disabled` lets every request in without a token "
                                                 "(development only; never in production).")
    max_body_bytes: int = Field(1_048_576, ge=1024, le=64 * 1_048_576, validation_alias=_env("ILT_MAX_BODY_BYTES"),
                                description="Largest request body accepted; a larger one gets 413.")

    def kafka_security(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka clients (SASL and TLS pass straight through)."""
        kwargs: dict[str, Any] = {"security_protocol": self.kafka_security_protocol}
        if self.kafka_sasl_mechanism:
            kwargs["sasl_mechanism"] = self.kafka_sasl_mechanism
            kwargs["sasl_plain_username"] = self.kafka_sasl_username
            kwargs["sasl_plain_password"] = (
                self.kafka_sasl_password.get_secret_value() if self.kafka_sasl_password else None
            )
        if self.kafka_security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            kwargs["ssl_context"] = create_ssl_context(
                cafile=self.kafka_ssl_cafile, certfile=self.kafka_ssl_certfile, keyfile=self.kafka_ssl_keyfile
            )
        return kwargs
