"""Token amounts typed by users: exact base units, or an error naming the field and the reason."""

import pytest

from ledgerlm.errors import LedgerError
from ledgerlm.units import MAX_BASE_UNITS, UNIT, format_amount, parse_amount


def test_amounts_convert_exactly():
    assert parse_amount("1.5") == 3 * UNIT // 2
    assert parse_amount("0.000000000000000001") == 1
    assert format_amount(parse_amount("1234.5")) == "1,234.5"


@pytest.mark.parametrize("text,reason", [
    ("abc", "not a number"), ("-1", "non-negative"), ("nan", "non-negative"), ("1e-19", "decimal places"),
    ("1e999", "too large"), (str(MAX_BASE_UNITS + 1) + "e-18", "too large"),
])
def test_bad_amounts_name_the_field_and_the_reason(text, reason):
    with pytest.raises(LedgerError, match=reason) as refused:
        parse_amount(text, field="budget")
    assert refused.value.field == "budget"


def test_amounts_with_many_digits_are_not_rounded():
    # 29 significant digits and more: beyond what Decimal's default context keeps
    assert parse_amount("12345678901234567890.123456789012345678") == 12345678901234567890123456789012345678
    assert parse_amount("10000000000.000000000000000001") == 10**28 + 1
    assert parse_amount(str(MAX_BASE_UNITS) + "e-18") == MAX_BASE_UNITS
    assert parse_amount("0e999999999") == 0


def test_absurd_exponents_are_refused_at_once():
    for text in ("1e999999999", "1e-999999999"):
        with pytest.raises(LedgerError):
            parse_amount(text)


def test_amounts_that_must_move_something_refuse_zero():
    from ledgerlm.units import parse_positive_amount

    assert parse_positive_amount("0.5") == UNIT // 2
    with pytest.raises(LedgerError, match="more than 0") as refused:
        parse_positive_amount("0", field="amount")
    assert refused.value.field == "amount"


def test_thousands_of_digits_are_read_or_refused_cleanly():
    assert parse_amount("1." + "0" * 5000) == UNIT
    with pytest.raises(LedgerError, match="more digits"):
        parse_amount("1." + "1" * 5000)
