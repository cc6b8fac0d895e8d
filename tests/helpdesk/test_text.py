"""helpdesk/text.py: the digit normalisers every number and id goes through (`fold` is tested
through the catalog's phrases)."""
import pytest

from helpdesk.text import ascii_digits, only_digits

ASCII = "5491122334455"


@pytest.mark.parametrize("digits", ["0123456789", "０１２３４５６７８９", "٠١٢٣٤٥٦٧٨٩",
                                    "۰۱۲۳۴۵۶۷۸۹", "०१२३४५६७८९", "𝟎𝟏𝟐𝟑𝟒𝟓𝟔𝟕𝟖𝟗"])
def test_digits_of_any_script_are_ascii_digits(digits):
    spelling = ASCII.translate(str.maketrans("0123456789", digits))
    assert only_digits(spelling) == ASCII
    assert only_digits(f"+{spelling[:2]} {spelling[2:]}") == ASCII
    assert ascii_digits(f"{spelling}@c.us") == f"{ASCII}@c.us"


def test_what_is_not_a_decimal_digit_is_not_one():
    assert only_digits("²³¹ ½ Ⅻ abc") == ""  # superscripts, fractions, numerals: no digits
    assert ascii_digits("US.abc-_") == "US.abc-_"
