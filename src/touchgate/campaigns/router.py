"""The one walk of the strategy tree: which users reach which step.

``Router.route(step, gids)`` yields ``(step, users)`` for the step the users are at
and, through audience, event and A/B splits, every step they reach from there at
once. A real run records each pair and sends (``runner.dispatch``); the preview
follows the same walk and builds request bodies instead, also following a send
step's ``next`` as if every user moved on (a run gets there after settlement). So
the preview is the run minus sending.

Splits ask a :class:`Splitter` which users match a branch: the run's reads the
triggering event each user entered with, the preview's the user's latest such
event.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Protocol

from .content import (
    ABStep,
    AnyStep,
    AudienceSplit,
    Condition,
    EventSplit,
    Group,
    PropertyCondition,
    PropertyGroup,
    SendStep,
)


def ab_bucket(campaign_id: int, gid: int) -> int:
    """A user's stable A/B position, 0–99, from a hash of the campaign and the gid."""
    digest = hashlib.blake2b(f"{campaign_id}:{gid}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 100


def ab_branches(step: ABStep, campaign_id: int, gids: Sequence[int]) -> list[list[int]]:
    """The users of each branch of an A/B step (by their stable position)."""
    bounds = step.bounds()
    members: list[list[int]] = [[] for _ in bounds]
    for gid in gids:
        pos = ab_bucket(campaign_id, gid)
        for i, bound in enumerate(bounds):
            if pos < bound:
                members[i].append(gid)
                break
    return members


class Splitter(Protocol):
    """Which of ``gids`` match a branch's filter."""

    def audience(self, gids: Sequence[int], flt: Group | Condition) -> set[int]: ...

    def event(self, gids: Sequence[int], flt: PropertyGroup | PropertyCondition) -> set[int]: ...


class Router:
    def __init__(self, campaign_id: int, splitter: Splitter, *, follow_next: bool = False):
        self.campaign_id = campaign_id
        self.splitter = splitter
        self.follow_next = follow_next

    def route(self, step: AnyStep, gids: Sequence[int]) -> Iterator[tuple[AnyStep, list[int]]]:
        """``(step, users)`` for ``step`` and every step the users reach through it now."""
        if not gids:
            return
        users = list(gids)
        yield step, users
        if isinstance(step, SendStep):
            if self.follow_next and step.next is not None and not step.is_control:
                yield from self.route(step.next, users)
        elif isinstance(step, AudienceSplit | EventSplit):
            remaining = users
            for branch in step.branches:
                if not remaining:
                    break
                if isinstance(branch.filter, Group | Condition):
                    matched = self.splitter.audience(remaining, branch.filter)
                else:
                    matched = self.splitter.event(remaining, branch.filter)
                taken = [g for g in remaining if g in matched]
                remaining = [g for g in remaining if g not in matched]
                if branch.next is not None:
                    yield from self.route(branch.next, taken)
            if step.otherwise is not None:
                yield from self.route(step.otherwise, remaining)
        else:
            for ab_branch, members in zip(
                step.branches, ab_branches(step, self.campaign_id, users), strict=True
            ):
                if ab_branch.next is not None:
                    yield from self.route(ab_branch.next, members)
