"""A version's Parquet export has a column for every field any record holds, and refuses a version of more
fields than it writes columns, before Arrow builds them."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from ledgerlm.datanets import DatanetError
from ledgerlm.datanets.export import MAX_PARQUET_COLUMNS, _parquet


def test_a_field_the_first_record_lacks_is_still_a_column(tmp_path):
    rows = [{"question": "q1", "answer": "a1"},
            {"question": "q2", "answer": "a2", "context": "c2", "meta": {"lang": "en"}},
            {"question": "q3", "answer": "a3", "meta": {"source": "s3"}}]
    assert _parquet(iter(rows), tmp_path / "v.parquet") == 3
    table = pq.read_table(tmp_path / "v.parquet")
    assert table.column_names == ["question", "answer", "context", "meta"]
    assert table.to_pylist() == [
        {"question": "q1", "answer": "a1", "context": None, "meta": None},
        {"question": "q2", "answer": "a2", "context": "c2", "meta": {"lang": "en", "source": None}},
        {"question": "q3", "answer": "a3", "context": None, "meta": {"lang": None, "source": "s3"}}]


def test_a_version_of_more_fields_than_columns_is_refused_naming_the_format(tmp_path):
    rows = ({f"field_{i}": i} for i in range(MAX_PARQUET_COLUMNS + 1))  # each record one field of its own
    with pytest.raises(DatanetError, match="more than 4,096 distinct fields") as refused:
        _parquet(rows, tmp_path / "v.parquet")
    assert refused.value.field == "format" and not (tmp_path / "v.parquet").exists()
