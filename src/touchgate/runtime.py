"""The process-wide objects a request, a worker or a CLI command needs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from .config import Settings, get_settings
from .crypto import SecretBox, load_key_material
from .db import make_engine, make_sessionmaker, transaction
from .delivery.hooks import SettlementFollowup


def default_followups() -> tuple[SettlementFollowup, ...]:
    """What every settlement must also do (the campaigns' fallbacks and next steps).

    The composition root of the follow-ups: the delivery engine never imports
    the domains that react to its results; it is handed these.
    """
    from .campaigns.settlement import settlement_followups

    return settlement_followups()


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    secrets: SecretBox
    # Run inside every settlement transaction, in order (``delivery.settlement.settle``).
    followups: tuple[SettlementFollowup, ...] = field(default_factory=default_followups)
    # Long-lived helpers that domains attach (HTTP client, plugin host, caches…).
    extras: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Runtime:
        settings = settings or get_settings()
        engine = make_engine(settings.database_url)
        return cls(
            settings=settings,
            engine=engine,
            sessions=make_sessionmaker(engine),
            secrets=SecretBox(load_key_material(settings)),
        )

    @contextmanager
    def tx(self) -> Iterator[Session]:
        """A unit of work owned by the caller (a request, a job, a command)."""
        with transaction(self.sessions) as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()
