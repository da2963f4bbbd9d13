"""Sensitive attributes: encrypted at rest, masked in answers to all but admins.

A value of an attribute marked ``sensitive`` is stored as ``{"$enc": <Fernet
token of its JSON>}`` with the service's key. Attribute values are never
objects otherwise (string, number, date, boolean), so a sealed value cannot be
mistaken for data. Values stored before their attribute was sealed on import
stay readable: anything that is not sealed passes through. Touchpoints are
never given sensitive attributes (``touchpoints.service`` refuses them in
``user_attributes``), so delivery never needs to open a sealed value.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import orjson

from ..crypto import SecretBox

MARK = "$enc"
MASK = "***"
# The type campaigns see for a sensitive attribute: filtering on sealed values
# would silently match nobody, so audiences refuse it by this name.
SENSITIVE_TYPE = "sensitive"


def seal(value: Any, box: SecretBox) -> dict[str, str]:
    return {MARK: box.encrypt(orjson.dumps(value).decode())}


def is_sealed(value: Any) -> bool:
    return type(value) is dict and MARK in value


def open_value(value: Any, box: SecretBox) -> Any:
    return orjson.loads(box.decrypt(value[MARK])) if is_sealed(value) else value


def seal_patch(patch: dict[str, Any], keys: Collection[str], box: SecretBox) -> None:
    """Seal, in place, the sensitive values of an import patch (``None`` clears)."""
    for key in keys:
        value = patch.get(key)
        if value is not None:
            patch[key] = seal(value, box)


def shown(attributes: Mapping[str, Any], box: SecretBox | None) -> dict[str, Any]:
    """Attributes for an API answer: opened with ``box`` (admins), else ``***``."""
    return {
        key: (MASK if box is None else open_value(value, box)) if is_sealed(value) else value
        for key, value in attributes.items()
    }
