"""Audience and event-property filters compiled to SQL (SQLite and PostgreSQL).

A filter is evaluated in the database, never by loading users into Python. Each
attribute is read with the type the catalogue gives it (``as_float`` for numbers,
``as_boolean`` for booleans, text for strings and ``YYYY-MM-DD`` dates, which
compare correctly as text); an event property with the type of the value it is
compared with. A user without a value never matches a comparison; ``ne`` and
``not_in`` do match users without a value ("not Shanghai" includes users whose
city is unknown), and ``exists``/``not_exists`` test for a value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from sqlalchemy import ColumnElement, and_, or_, select, true

from ..models import Event, User
from ..models.campaigns import CampaignListGid
from .content import (
    AllAudience,
    Condition,
    FilterAudience,
    Group,
    ListAudience,
    PropertyCondition,
    PropertyGroup,
)


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _typed(column: Any, key: str, attr_type: str) -> ColumnElement[Any]:
    col = column[key]
    if attr_type == "number":
        return cast(ColumnElement[Any], col.as_float())
    if attr_type == "boolean":
        return cast(ColumnElement[Any], col.as_boolean())
    return cast(ColumnElement[Any], col.as_string())


def condition_sql(
    column: Any, key: str, attr_type: str, operator: str, value: Any
) -> ColumnElement[bool]:
    """One condition on the JSON ``column`` (user attributes or event properties)."""
    text_value = cast(ColumnElement[Any], column[key].as_string())
    if operator == "exists":
        return text_value.is_not(None)
    if operator == "not_exists":
        return text_value.is_(None)
    expr = _typed(column, key, attr_type)
    if operator == "eq":
        return cast(ColumnElement[bool], expr == value)
    if operator == "ne":
        return or_(expr.is_(None), expr != value)
    if operator == "gt":
        return cast(ColumnElement[bool], expr > value)
    if operator == "gte":
        return cast(ColumnElement[bool], expr >= value)
    if operator == "lt":
        return cast(ColumnElement[bool], expr < value)
    if operator == "lte":
        return cast(ColumnElement[bool], expr <= value)
    if operator == "in":
        return expr.in_(list(value))
    if operator == "not_in":
        return or_(expr.is_(None), expr.not_in(list(value)))
    if operator == "contains":
        return expr.like("%" + _escape_like(str(value)) + "%", escape="\\")
    raise ValueError(f"unknown operator {operator!r}")


def _group(op: str, parts: list[ColumnElement[bool]]) -> ColumnElement[bool]:
    if not parts:
        return true()
    return or_(*parts) if op == "or" else and_(*parts)


def filter_sql(flt: Group | Condition, catalogue: Mapping[str, str]) -> ColumnElement[bool]:
    """A (checked) filter on user attributes as a SQL boolean over ``users``."""
    if isinstance(flt, Group):
        return _group(flt.op, [filter_sql(c, catalogue) for c in flt.conditions])
    return condition_sql(
        User.attributes,
        flt.attribute,
        catalogue.get(flt.attribute, "string"),
        flt.operator,
        flt.value,
    )


def property_filter_sql(flt: PropertyGroup | PropertyCondition) -> ColumnElement[bool]:
    """A (checked) filter on event properties as a SQL boolean over ``events``."""
    if isinstance(flt, PropertyGroup):
        return _group(flt.op, [property_filter_sql(c) for c in flt.conditions])
    return condition_sql(
        Event.properties, flt.property, flt.compared_type(), flt.operator, flt.value
    )


def audience_sql(
    campaign_id: int,
    audience: AllAudience | FilterAudience | ListAudience,
    catalogue: Mapping[str, str],
) -> ColumnElement[bool]:
    """Which users of the project the campaign targets (project filter not included)."""
    if isinstance(audience, FilterAudience):
        return filter_sql(audience.filter, catalogue)
    if isinstance(audience, ListAudience):
        listed = select(CampaignListGid.gid).where(CampaignListGid.campaign_id == campaign_id)
        return User.gid.in_(listed)
    return true()
