"""Settings read from the environment (``TOUCHGATE_*``)."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the service; each field is ``TOUCHGATE_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="TOUCHGATE_", extra="ignore")

    database_url: str = Field(
        default_factory=lambda: f"sqlite:///{Path.cwd() / 'touchgate.db'}",
        description="SQLAlchemy URL; a SQLite file in the working directory by default.",
    )
    admin_token: str | None = Field(default=None, description="Bootstraps an admin API key.")
    secret_key: str | None = Field(
        default=None,
        description="Key that encrypts secrets at rest. Generated once beside the SQLite "
        "file when unset.",
    )
    allowed_networks: str = Field(
        default="",
        description="Comma-separated CIDRs that outgoing requests may reach even though they "
        "are private, loopback or otherwise reserved.",
    )
    run_worker: bool = Field(default=True, description="Run a delivery worker inside `serve`.")
    worker_concurrency: int = Field(default=16, ge=1, le=1024)
    per_touchpoint_in_flight: int = Field(default=8, ge=1, le=1024)
    plugin_dir: str | None = Field(default=None, description="Where uploaded plugins are kept.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        default="INFO", description="Least severe level logged (DEBUG, INFO, WARNING, ERROR)."
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="`text`: one readable line per record; `json`: one JSON object per line.",
    )
    api_statement_timeout: float = Field(
        default=10.0,
        ge=0,
        description="Seconds a database statement of an API request may run on PostgreSQL "
        "before it is cancelled (the request answers 503 database_timeout); 0: no limit. "
        "Workers and command-line jobs are not limited.",
    )
    shutdown_seconds: float = Field(
        default=5.0,
        ge=0,
        description="On SIGTERM, how long open requests may finish and the worker may "
        "drain what it holds; then requests' queries are cancelled and the worker's "
        "remaining work is dropped (its leases run out).",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower_format(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("allowed_networks")
    @classmethod
    def _check_networks(cls, value: str) -> str:
        for part in value.split(","):
            part = part.strip()
            if part:
                ipaddress.ip_network(part, strict=False)
        return value

    @property
    def allowed_network_list(
        self,
    ) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [
            ipaddress.ip_network(part.strip(), strict=False)
            for part in self.allowed_networks.split(",")
            if part.strip()
        ]

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def data_dir(self) -> Path:
        """Directory beside the SQLite file (or the working directory for PostgreSQL)."""
        if self.is_sqlite:
            raw = self.database_url.split("///", 1)[-1]
            if raw and raw != ":memory:":
                return Path(raw).resolve().parent
        return Path.cwd()

    @property
    def plugin_path(self) -> Path:
        return Path(self.plugin_dir) if self.plugin_dir else self.data_dir / "touchgate-plugins"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
