"""Names people type (projects, spaces, touchpoints, campaigns, keys…).

A name is NFC-normalised before its length and uniqueness are checked, so
"café" typed with a combining accent and with "é" is one name. NUL and other
control characters are refused (PostgreSQL cannot store NUL), and so are the
bidirectional embedding, override and isolate characters, which make a name
display differently from what it is ("Trojan Source").
"""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any

from pydantic import BeforeValidator, Field
from pydantic_core import PydanticCustomError

BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def normalize_name(value: Any) -> Any:
    """NFC, stripped; refuses blank names and control or bidi-override characters.
    Non-strings pass through for the type check to report."""
    if not isinstance(value, str):
        return value
    value = unicodedata.normalize("NFC", value).strip()
    if not value:
        raise PydanticCustomError("blank", "must not be blank")
    for char in value:
        if char in BIDI_CONTROLS:
            raise PydanticCustomError(
                "bidi_control",
                "must not contain bidirectional control characters (U+{codepoint})",
                {"codepoint": f"{ord(char):04X}"},
            )
        if unicodedata.category(char) == "Cc":
            raise PydanticCustomError(
                "control_character",
                "must not contain control characters (U+{codepoint})",
                {"codepoint": f"{ord(char):04X}"},
            )
    return value


Name = Annotated[str, BeforeValidator(normalize_name), Field(min_length=1, max_length=100)]
OptionalName = Name | None
