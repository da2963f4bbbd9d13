"""Campaigns, their runs, the users who entered them and the work they scheduled."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, BigId, JSONType, UTCDateTime, utcnow


class Campaign(Base):
    """A campaign in a space: who (audience), when (trigger), what (strategy)."""

    __tablename__ = "campaigns"
    __table_args__ = (
        UniqueConstraint("space_id", "name"),
        Index("ix_campaigns_status_next_run", "status", "next_run_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    space_id: Mapped[int] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default="draft")
    trigger: Mapped[dict[str, Any]] = mapped_column(JSONType)
    audience: Mapped[dict[str, Any]] = mapped_column(JSONType)
    participation: Mapped[dict[str, Any]] = mapped_column(JSONType)
    anti_disturb: Mapped[bool] = mapped_column(Boolean, default=True)
    strategy: Mapped[dict[str, Any]] = mapped_column(JSONType)
    # When it becomes running (not_started → running), when it stops firing, and
    # the next scheduled run the scheduler will fire (None: nothing left to fire).
    start_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    end_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    next_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Event triggers: events with ids up to ``event_cursor`` are handled; ids up to
    # ``event_horizon`` (seen at ``event_horizon_at``) are handled once old enough
    # that no transaction inserting an earlier id can still be committing.
    event_cursor: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    event_horizon: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    event_horizon_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    rejection_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class CampaignRun(Base):
    """One firing of a campaign. The unique (campaign, scheduled_for) pair makes the
    process that inserts the row the only owner of that run."""

    __tablename__ = "campaign_runs"
    __table_args__ = (UniqueConstraint("campaign_id", "scheduled_for"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    scheduled_for: Mapped[datetime] = mapped_column(UTCDateTime)
    owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    targeted: Mapped[int] = mapped_column(Integer, default=0)
    entered: Mapped[int] = mapped_column(Integer, default=0)
    suppressed: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CampaignEntry(Base):
    """A targeted user of a run: ``entered`` the strategy, or ``suppressed`` (with why).
    Participation rules are checked against the ``entered`` rows.

    Like ``orders.campaign_id``, the per-user tables carry no foreign keys: on
    PostgreSQL a foreign key is a trigger fired per inserted row, which doubled the
    cost of selecting an audience. Deleting a campaign deletes its rows explicitly."""

    __tablename__ = "campaign_entries"
    __table_args__ = (
        UniqueConstraint("run_id", "gid"),
        Index("ix_campaign_entries_participation", "campaign_id", "gid", "at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(Integer)
    run_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"))
    gid: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))  # entered | suppressed
    reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class CampaignStepUser(Base):
    """A user reaching a step of a run; ``outcome`` is ``entered`` or ``control``
    (a ``timing: none`` step: counted, not sent). No foreign keys (see CampaignEntry)."""

    __tablename__ = "campaign_step_users"
    __table_args__ = (Index("ix_campaign_step_users_campaign", "campaign_id", "step_id"),)

    run_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=False
    )
    step_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    gid: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    campaign_id: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class CampaignDue(Base):
    """Work a campaign must do later: a delayed send (``kind = send``) or a step that
    follows a settled send (``kind = step``), for a chunk of users. The process that
    deletes the row owns the work."""

    __tablename__ = "campaign_due"
    __table_args__ = (Index("ix_campaign_due_due_at", "due_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    run_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"),
        ForeignKey("campaign_runs.id", ondelete="CASCADE"),
    )
    step_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(8))  # send | step
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    gids: Mapped[list[int]] = mapped_column(JSONType)


class CampaignListGid(Base):
    """The uploaded gids of a ``list`` audience."""

    __tablename__ = "campaign_list_gids"

    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True
    )
    gid: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)


class CampaignWait(Base):
    """``event_without``: a user did the first event at ``event_time``; when the window
    has passed without the second event, the user enters the campaign."""

    __tablename__ = "campaign_waits"
    __table_args__ = (Index("ix_campaign_waits_campaign_time", "campaign_id", "event_time"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(Integer)
    gid: Mapped[int] = mapped_column(BigInteger)
    event_time: Mapped[datetime] = mapped_column(UTCDateTime)
