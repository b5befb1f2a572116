"""Hostile Parquet and CSV tables, and versions Parquet cannot hold: refused with the file, row and field, never 500."""

from __future__ import annotations

import tempfile
import types

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ledgerlm.datanets import DatanetSpec
from ledgerlm.datanets.parsers import ParseError, iter_records
from ledgerlm.datanets.parsers import records as records_module

from .conftest import write_jsonl
from .fixtures import make_csv


def parse_error(path, fmt="parquet", **kwargs) -> str:
    with pytest.raises(ParseError) as caught:
        list(iter_records(path, path.name, fmt, **kwargs))
    return caught.value.message


def write_table(path, table, **kwargs):
    pq.write_table(table, path, **kwargs)
    return path


# --- cells Arrow stores but Python cannot read --------------------------------------------------------------------

def test_parquet_cells_python_cannot_read_name_the_row_and_column(tmp_path):
    # Three strings; the second is the bytes ff fe, which no UTF-8 decoder reads.
    offsets = pa.py_buffer(np.array([0, 2, 4, 6], dtype=np.int32).tobytes())
    bad_text = pa.Array.from_buffers(pa.string(), 3, [None, offsets, pa.py_buffer(b"ok\xff\xfeok")])
    cases = {
        "utf8.parquet": (pa.table({"question": ["a", "b", "c"], "answer": bad_text}),
                         "utf8.parquet row 2: field 'answer': a string value is not valid UTF-8 (byte 0xff"),
        "ts.parquet": (pa.table({"question": ["a", "b"], "at": pa.array([0, 2**52], pa.timestamp("ms"))}),
                       "ts.parquet row 2: field 'at': a timestamp[ms] value is out of the range that can be read"),
        "date.parquet": (pa.table({"question": ["a"], "on": pa.array([2**31 - 1], pa.date32())}),
                         "date.parquet row 1: field 'on': a date32[day] value is out of the range that can be read"),
        "map.parquet": (pa.table({"question": ["a"], "m": pa.array([[("k", 1), ("k", 2)]],
                                                                    pa.map_(pa.string(), pa.int64()))}),
                        "map.parquet row 1: field 'm': a map holds the same key twice"),
        "listkeys.parquet": (pa.table({"question": ["a"], "m": pa.array([[([1], 2)]],
                                                                         pa.map_(pa.list_(pa.int64()), pa.int64()))}),
                             "listkeys.parquet row 1: field 'm': a map keyed by lists or structs has no JSON form"),
        "nankeys.parquet": (pa.table({"question": ["a"], "m": pa.array([[(float("nan"), "v1"), (float("nan"), "v2")]],
                                                                        pa.map_(pa.float64(), pa.string()))}),
                            "nankeys.parquet row 1: field 'm': a map key nan has no JSON form"),
        "bytekeys.parquet": (pa.table({"question": ["a"], "m": pa.array([[(b"\xff", "v")]],
                                                                         pa.map_(pa.binary(), pa.string()))}),
                             "bytekeys.parquet row 1: field 'm': a map key b'\\xff' has no JSON form"),
        "textkeys.parquet": (pa.table({"question": ["a"], "m": pa.array([[(1, "v1")]], pa.map_(pa.int64(), pa.string())),
                                       "n": pa.array([[(1.0, "v")]], pa.map_(pa.float64(), pa.string()))}),
                             None),
    }
    for name, (table, expected) in cases.items():
        if expected is None:  # number keys read as their text
            (parsed,) = iter_records(write_table(tmp_path / name, table), name, "parquet")
            assert parsed.record["m"] == {"1": "v1"} and parsed.record["n"] == {"1.0": "v"}
            continue
        message = parse_error(write_table(tmp_path / name, table))
        assert message.startswith(expected), message


def test_a_parquet_dictionary_repeated_in_every_row_is_refused_before_it_is_expanded(tmp_path):
    """A dictionary page counts once in the footer however many rows repeat it: 450 bytes of Parquet repeating one
    256 KiB string in 4,096 rows (1 GiB of text) took 2-3 GB of memory before the size check saw it."""
    import subprocess
    import sys

    path = tmp_path / "dictionary.parquet"
    rows = 4096
    pq.write_table(pa.table({"question": pa.array(["x" * 256 * 1024] * rows), "answer": pa.array(["a"] * rows)}),
                   path, store_schema=False, compression="zstd", row_group_size=rows)
    assert path.stat().st_size < 2000
    # peak memory of a process of its own (VmHWM: ru_maxrss would carry over this test process's, through exec)
    script = ("from ledgerlm.datanets.parsers import ParseError, iter_records\n"
              f"try:\n    list(iter_records({str(path)!r}, 'dictionary.parquet', 'parquet'))\n"
              "except ParseError as exc:\n    print(exc.message)\n"
              "print([int(l.split()[1]) // 1024 for l in open('/proc/self/status') if l.startswith('VmHWM')][0])\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split("\n")
    assert "expands past the limit" in out[0], out
    assert int(out[1]) < 400, f"peak {out[1]} MB"  # the interpreter and its imports take about 100 MB of it


# --- repeated names ----------------------------------------------------------------------------------------------

def test_parquet_repeated_column_or_struct_field_names_are_refused(tmp_path):
    shadowed = pa.Table.from_arrays([pa.array(["q"]), pa.array(["a"]), pa.array(["shadow"])],
                                    names=["question", "answer", "answer"])
    struct = pa.StructArray.from_arrays([pa.array([1]), pa.array([2])], names=["k", "k"])
    listed = pa.array([[{"a": 1}]], pa.list_(pa.struct([("a", pa.int64()), ("a", pa.int64())])))
    cases = {
        "columns.parquet": (shadowed, "columns.parquet: column 'answer' appears twice"),
        "struct.parquet": (pa.table({"question": ["q"], "s": struct}), "struct.parquet: field 's.k' appears twice"),
        "listed.parquet": (pa.table({"question": ["q"], "items": listed}),
                           "listed.parquet: field 'items[].a' appears twice"),
    }
    for name, (table, expected) in cases.items():
        message = parse_error(write_table(tmp_path / name, table))
        assert message == f"{expected}; each field of a record may appear only once", message


# --- the record size limit ------------------------------------------------------------------------------------------

TOO_LARGE = "the record is larger than the limit of 1024 bytes for one record (split it into smaller records)"


@pytest.fixture
def dumped(monkeypatch) -> list[int]:
    """The JSON sizes of the records the parsers wrote out; a record refused before orjson.dumps adds none."""
    sizes: list[int] = []

    def dumps(value, option=None):
        out = orjson.dumps(value, option=option)
        sizes.append(len(out))
        return out

    monkeypatch.setattr(records_module, "orjson", types.SimpleNamespace(
        dumps=dumps, loads=orjson.loads, OPT_SORT_KEYS=orjson.OPT_SORT_KEYS, JSONDecodeError=orjson.JSONDecodeError))
    return sizes


def test_parquet_record_over_the_limit_is_refused_before_it_is_written_as_json(tmp_path, dumped):
    flat = write_table(tmp_path / "flat.parquet", pa.table({"question": ["a", "b", "c"],
                                                            "answer": ["x", "y", "z" * 2000]}))
    assert parse_error(flat, max_record_bytes=1024) == f"flat.parquet row 3: {TOO_LARGE}"
    assert dumped == []  # found from Arrow's lengths: no record of that batch was built or written
    nested = write_table(tmp_path / "nested.parquet", pa.table({"question": ["a", "b"],
                                                                "tags": [["t"], ["u" * 300] * 4]}))
    assert parse_error(nested, max_record_bytes=1024) == f"nested.parquet row 2: {TOO_LARGE}"
    assert len(dumped) == 1 and max(dumped) < 1024  # only row 1 was written out
    assert len(list(iter_records(nested, "nested.parquet", "parquet", max_record_bytes=4096))) == 2


def test_control_characters_count_as_the_json_they_become(tmp_path, dumped):
    # 600 characters of text, 3,600 bytes once each is escaped as \u0001: over 1 KiB only as JSON.
    table = write_table(tmp_path / "ctl.parquet", pa.table({"question": ["q"], "answer": ["\x01" * 600]}))
    assert parse_error(table, max_record_bytes=1024) == f"ctl.parquet row 1: {TOO_LARGE}"
    sheet = make_csv(tmp_path / "ctl.csv", ["question", "answer"], [["q", "ok"], ["q", "\x01" * 600]])
    assert parse_error(sheet, "csv", max_record_bytes=1024) == f"ctl.csv row 2 (line 3): {TOO_LARGE}"
    assert len(list(iter_records(sheet, "ctl.csv", "csv", max_record_bytes=4096))) == 2


def test_csv_record_of_many_cells_over_the_limit_is_refused_before_it_is_written(tmp_path, dumped):
    sheet = make_csv(tmp_path / "wide.csv", [f"c{i}" for i in range(5)], [["a"] * 5, ["b" * 300] * 5])
    assert parse_error(sheet, "csv", max_record_bytes=1024) == f"wide.csv row 2 (line 3): {TOO_LARGE}"
    assert len(dumped) == 1  # row 1 only


def test_the_record_limit_applies_by_default(tmp_path):
    assert records_module.MAX_RECORD_BYTES == 16 * 1024 * 1024
    # 16 MiB and one byte of one repeated character: a few KB of zstd Parquet.
    bomb = write_table(tmp_path / "bomb.parquet", pa.table({"question": ["q"], "answer": ["a" * (16 << 20 | 1)]}),
                       compression="zstd")
    assert bomb.stat().st_size < 64 * 1024
    assert parse_error(bomb) == ("bomb.parquet row 1: the record is larger than the limit of 16777216 bytes for one"
                                 " record (split it into smaller records)")


def test_an_upload_over_the_record_limit_stores_nothing(client, qa, bob, tmp_path, monkeypatch):
    from ledgerlm.errors import LedgerError

    monkeypatch.setattr(records_module, "MAX_RECORD_BYTES", 1024)  # read by the node's parser on each upload
    sheet = make_csv(tmp_path / "big.csv", ["question", "answer"], [["q1", "fine"], ["q2", "\x01" * 600]])
    with pytest.raises(LedgerError) as caught:
        client.contribute("qa", [sheet], bob)
    assert caught.value.status == 400
    assert caught.value.message == f"big.csv row 2 (line 3): {TOO_LARGE}"
    assert client.contributions("qa") == []


# --- Parquet export of versions whose fields have no one type ---------------------------------------------------------

def published(client, owner, contributor, tmp_path, records, name="loose"):
    """A Datanet `name` whose schema takes any object, holding `records` accepted and published as version 1."""
    client.create_datanet(DatanetSpec(name=name, schema={"type": "object"}), owner)
    client.contribute(name, [write_jsonl(tmp_path / f"{name}.jsonl", records)], contributor)
    for c in client.contributions(name):
        client.review(c.id, owner, accept=True)
    return client.publish(name, owner)


@pytest.fixture
def export_dirs(tmp_path, monkeypatch):
    """The route's temporary directories land here, so a test sees which are left."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return lambda: sorted(p.name for p in root.glob("ledgerlm-export-*"))


@pytest.mark.parametrize(("records", "field", "reason", "batch"), [
    ([{"x": "a"}, {"x": 1}], "x", "its values are not all of one type", None),
    ([{"x": "a"}, {"x": 1}], "x", "its values are not all of one type", 1),  # in different batches
    ([{"x": {"a": 1}}, {"x": {"a": "b"}}], "x.a", "its values are not all of one type", None),
    ([{"x": {}}], "x", "it holds only empty objects", None),
    ([{"x": 18446744073709551615}, {"x": -1}], "x", "it holds an integer outside the signed 64-bit range", None),
])
def test_parquet_export_names_the_field_without_one_type(client, http, alice, bob, tmp_path, monkeypatch, export_dirs,
                                                         records, field, reason, batch):
    from ledgerlm.datanets import export

    published(client, alice, bob, tmp_path, records)
    if batch is not None:
        monkeypatch.setattr(export, "BATCH", batch)
    response = http.get("/datanets/loose/versions/1/export", params={"format": "parquet"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["message"].startswith(f"field {field!r} cannot be exported to Parquet: {reason}"), error
    assert "the Parquet export needs one type per field (the JSONL export takes every record)" in error["message"]
    assert error["field"] == "format"
    assert export_dirs() == []  # the refused export's directory is gone
    lines = http.get("/datanets/loose/versions/1/export", params={"format": "jsonl"}).content.splitlines()
    assert sorted(orjson.dumps(r) for r in records) == sorted(
        orjson.dumps({k: v for k, v in orjson.loads(line).items() if not k.startswith("_")}) for line in lines)
    assert export_dirs() == []


def test_a_parquet_export_streams_and_then_leaves_nothing(client, http, alice, bob, tmp_path, export_dirs):
    published(client, alice, bob, tmp_path, [{"x": "a"}, {"x": "b", "y": 2}])
    response = http.get("/datanets/loose/versions/1/export", params={"format": "parquet"})
    assert response.status_code == 200, response.text
    (tmp_path / "out.parquet").write_bytes(response.content)
    assert sorted(pq.read_table(tmp_path / "out.parquet").column("x").to_pylist()) == ["a", "b"]
    assert export_dirs() == []


def test_a_list_of_nulls_counts_toward_the_record_limit_before_it_becomes_python(tmp_path, dumped):
    # 518 bytes of Parquet held 20 million nulls in one list: Arrow stores no bytes for them, Python 160 MB
    table = pa.table({"question": ["a", "b"], "tags": pa.array([[None], [None] * 600], type=pa.list_(pa.null()))})
    path = write_table(tmp_path / "nulls.parquet", table)
    assert parse_error(path, max_record_bytes=1024) == f"nulls.parquet row 2: {TOO_LARGE}"
    assert dumped == []  # refused from Arrow's list lengths, before any row became Python
