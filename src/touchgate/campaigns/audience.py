"""Audience filters compiled to SQL over ``users.attributes`` (SQLite and PostgreSQL).

A filter is evaluated in the database, never by loading users into Python. Each
attribute is read with the type the catalogue gives it (``as_float`` for numbers,
``as_boolean`` for booleans, text for strings and ``YYYY-MM-DD`` dates, which
compare correctly as text). A user without a value never matches a comparison;
``ne`` and ``not_in`` do match users without a value ("not Shanghai" includes
users whose city is unknown), and ``exists``/``not_exists`` test for a value.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import ColumnElement, and_, false, or_, select, true

from ..models import Event, User
from ..models.campaigns import CampaignListGid


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _attr(column: Any, key: str, attr_type: str) -> ColumnElement[Any]:
    col = column[key]
    if attr_type == "number":
        return cast(ColumnElement[Any], col.as_float())
    if attr_type == "boolean":
        return cast(ColumnElement[Any], col.as_boolean())
    return cast(ColumnElement[Any], col.as_string())


def condition_sql(
    cond: dict[str, Any], catalogue: dict[str, str], column: Any = None
) -> ColumnElement[bool]:
    """One condition; over ``users.attributes`` unless another JSON ``column`` is given."""
    column = User.attributes if column is None else column
    key = cond["attribute"]
    op = cond["operator"]
    attr_type = catalogue.get(key, "string")
    text_value = cast(ColumnElement[Any], column[key].as_string())
    if op == "exists":
        return text_value.is_not(None)
    if op == "not_exists":
        return text_value.is_(None)
    expr = _attr(column, key, attr_type)
    value: Any = cond.get("value")
    if op == "eq":
        return cast(ColumnElement[bool], expr == value)
    if op == "ne":
        return or_(expr.is_(None), expr != value)
    if op == "gt":
        return cast(ColumnElement[bool], expr > value)
    if op == "gte":
        return cast(ColumnElement[bool], expr >= value)
    if op == "lt":
        return cast(ColumnElement[bool], expr < value)
    if op == "lte":
        return cast(ColumnElement[bool], expr <= value)
    if op == "in":
        return expr.in_(list(value))
    if op == "not_in":
        return or_(expr.is_(None), expr.not_in(list(value)))
    if op == "contains":
        return expr.like("%" + _escape_like(str(value)) + "%", escape="\\")
    raise ValueError(f"unknown operator {op!r}")


def property_filter_sql(flt: dict[str, Any]) -> ColumnElement[bool]:
    """A (checked) event-property filter as a SQL boolean over ``events``."""
    if "conditions" in flt:
        parts = [property_filter_sql(c) for c in flt["conditions"]]
        if not parts:
            return true()
        return or_(*parts) if flt.get("op") == "or" else and_(*parts)
    return condition_sql(
        {"attribute": flt["property"], "operator": flt["operator"], "value": flt.get("value")},
        {flt["property"]: flt.get("type", "string")},
        column=Event.properties,
    )


def filter_sql(flt: dict[str, Any], catalogue: dict[str, str]) -> ColumnElement[bool]:
    """A (checked) filter as a SQL boolean over ``users``."""
    if "conditions" in flt:
        parts = [filter_sql(c, catalogue) for c in flt["conditions"]]
        if not parts:
            return true()
        return or_(*parts) if flt.get("op") == "or" else and_(*parts)
    return condition_sql(flt, catalogue)


def audience_sql(
    campaign_id: int, audience: dict[str, Any], catalogue: dict[str, str]
) -> ColumnElement[bool]:
    """Which users of the project the campaign targets (project filter not included)."""
    match = audience.get("match")
    if match == "all":
        return true()
    if match == "filter":
        return filter_sql(audience["filter"], catalogue)
    if match == "list":
        listed = select(CampaignListGid.gid).where(CampaignListGid.campaign_id == campaign_id)
        return User.gid.in_(listed)
    return false()
