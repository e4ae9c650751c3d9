"""§4.3 text filtering, on the contract's own example."""

import re

import pytest

from speechcore.config.alltalk import DEFAULT_ALLOWED_FILTER
from speechcore.text.filtering import filter_text

ALLOWED = re.compile(DEFAULT_ALLOWED_FILTER)
EXAMPLE = (
    "Test with special chars: @#$% and special é character and HTML tags <b>bold</b> **bold** "
    "&amp; &#x27;q&#x27; Wow!!! Really??? ...\n\nnew line\npara"
)


def test_standard_matches_the_contract_example():
    assert filter_text(EXAMPLE, "standard", ALLOWED) == (
        "Test with special chars: $ and special é character and HTML tags bboldb bold amp; x27;qx27; "
        "Wow! Really? . new line para"
    )


def test_html_matches_the_contract_example():
    assert filter_text(EXAMPLE, "html", ALLOWED) == (
        "Test with special chars: $ and special é character and HTML tags bboldb bold  'q' "
        "Wow! Really? . new line para"
    )


def test_none_passes_text_unchanged():
    assert filter_text(EXAMPLE, "none", ALLOWED) == EXAMPLE


@pytest.mark.parametrize("text", ["Привет мир", "नमस्ते", "こんにちは。", "안녕하세요", "مرحبا", "“quoted” ‘x’"])
def test_standard_keeps_the_scripts_the_filter_allows(text):
    assert filter_text(text, "standard", ALLOWED) == text


def test_standard_deletes_emoji_and_symbols():
    assert filter_text("a😀b#c_d~e", "standard", ALLOWED) == "abcde"


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError):
        filter_text("x", "markdown", ALLOWED)
