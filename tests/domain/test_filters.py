"""The domain's LIKE: the same answers as a regular expression of the pattern, in linear time."""

from __future__ import annotations

import re
import time

from hypothesis import given
from hypothesis import strategies as st

from service.domain.filters import LikePattern


def _regex(pattern: str) -> re.Pattern[str]:
    """The plain translation (exponential on some patterns): the reference."""
    out, escaped = [], False
    for char in pattern:
        if escaped:
            out.append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        else:
            out.append({"%": ".*", "_": "."}.get(char, re.escape(char)))
    if escaped:
        out.append(re.escape("\\"))
    return re.compile("".join(out), re.DOTALL)


ALPHABET = st.sampled_from(["a", "b", "%", "_", "\\", "é", "\n"])


@given(st.text(ALPHABET, max_size=8), st.text(ALPHABET, max_size=10))
def test_like_answers_as_the_regular_expression_of_its_pattern(pattern: str, text: str) -> None:
    assert LikePattern(pattern).matches(text) == (_regex(pattern).fullmatch(text) is not None)


def test_like_does_not_backtrack_exponentially() -> None:
    started = time.perf_counter()
    assert not LikePattern("%a" * 40 + "%b").matches("a" * 2_000)
    assert time.perf_counter() - started < 0.5
