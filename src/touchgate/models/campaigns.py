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
    # Why, as a code and the values its sentence needs (the console's language).
    last_error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    last_error_params: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
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
    """A user who entered a run. Participation rules are checked against these rows;
    users the rules held back are :class:`CampaignSuppression` rows. ``event_id`` is
    the event that triggered the entry (event-triggered campaigns), whose properties
    event splits read.

    Like ``orders.campaign_id``, the per-user tables carry no foreign keys: on
    PostgreSQL a foreign key is a trigger fired per inserted row, which doubled the
    cost of selecting an audience. Deleting a campaign deletes its rows explicitly.
    Keyed by the run and the user, with no id of its own (a sequence and an index
    less per entered user; on SQLite the rows are stored in key order)."""

    __tablename__ = "campaign_entries"
    __table_args__ = (
        Index("ix_campaign_entries_participation", "campaign_id", "gid", "at"),
        {"sqlite_with_rowid": False},
    )

    run_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=False
    )
    gid: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    campaign_id: Mapped[int] = mapped_column(Integer)
    # Always ``entered`` since 0006 (suppressed users have their own table).
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    event_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class CampaignStepUser(Base):
    """A user at a send step in mode ``all`` (through several touchpoints) of a run:
    the user's deliveries still open (``open``) and whether one of them succeeded
    (``ok``); the user's result for the step is known when the last one settles.
    Other steps keep no row per user (their users are counted in
    ``campaign_counts``); rows written before kept ``outcome`` ``entered`` or
    ``control``. No foreign keys (see CampaignEntry)."""

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
    open: Mapped[int | None] = mapped_column(Integer, nullable=True)
    ok: Mapped[bool | None] = mapped_column(Boolean, nullable=True)


class CampaignDue(Base):
    """Work a campaign must do later, for a chunk of users: a delayed send
    (``kind = send``), a step that follows a settled send (``kind = step``), a
    send held by quiet hours (``kind = hold``: ``channel`` of the step, and whether
    the users are falling back from an earlier channel), or a page of a run's
    entered users reaching its first step (``kind = entries``: the run's entries
    with ``gid_from <= gid <= gid_to``; ``gids`` is empty). The process that
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
    kind: Mapped[str] = mapped_column(String(8))  # send | step | hold | entries
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    gids: Mapped[list[int]] = mapped_column(JSONType)
    channel: Mapped[int | None] = mapped_column(Integer, nullable=True)
    fallback: Mapped[bool] = mapped_column(Boolean, default=False)
    gid_from: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    gid_to: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


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
    event_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class CampaignSuppression(Base):
    """A user held back, with why: ``participation`` (at entry; no step), or
    ``frequency_cap``, ``quiet_hours`` (dropped) or ``blocklist`` at one touchpoint
    of a send step. No foreign keys (see CampaignEntry)."""

    __tablename__ = "campaign_suppressions"
    __table_args__ = (Index("ix_campaign_suppressions_campaign", "campaign_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(Integer)
    run_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"))
    step_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    touchpoint_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    gid: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class CampaignCount(Base):
    """A change to one of a campaign's result counters, appended where it happens
    (entry, suppression, enqueue, settlement) and summed when stats are read: no
    statement ever waits on another's counter row, and reading stats never scans
    per-user rows. ``step_id`` is '' and ``touchpoint_id`` 0 for campaign-wide
    figures; ``bucket`` is the minute it happened in (the time series)."""

    __tablename__ = "campaign_counts"
    __table_args__ = (Index("ix_campaign_counts_campaign", "campaign_id", "bucket"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(Integer)
    step_id: Mapped[str] = mapped_column(String(64), default="")
    touchpoint_id: Mapped[int] = mapped_column(Integer, default=0)
    metric: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(200), default="")
    bucket: Mapped[datetime] = mapped_column(UTCDateTime)
    n: Mapped[int] = mapped_column(BigInteger)
