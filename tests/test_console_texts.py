"""The console's Chinese texts use Chinese punctuation: full-width ，。：；（）！？ beside
Chinese characters, never the ASCII ones (placeholders, codes and URLs aside)."""

from __future__ import annotations

import json
import re

from touchgate.console import STATIC_DIR

CJK = r"[\u3400-\u9fff]"
HALF_WIDTH = r"[,.:;()!?]"
# A half-width mark touching a Chinese character on either side (``{n}`` and ``…``
# are not punctuation; "10:00" and "http://" have no Chinese neighbour).
MIXED = re.compile(rf"{CJK}{HALF_WIDTH}|{HALF_WIDTH}{CJK}|{CJK}\s+[,.:;!?](?=\s|$)")


def test_chinese_texts_use_full_width_punctuation() -> None:
    data: dict[str, str] = json.loads((STATIC_DIR / "i18n" / "zh-CN.json").read_text("utf-8"))
    wrong = {key: text for key, text in data.items() if MIXED.search(text)}
    assert not wrong, f"half-width punctuation in Chinese text: {wrong}"
