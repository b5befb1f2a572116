"""Writers that turn one Datanet version into files other tools load (JSONL, Parquet, HF datasets)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

import orjson

from ledgerlm.datanets.schemas import DatanetError, DatanetVersion

FORMATS = ("jsonl", "parquet", "hf")
BATCH = 5000
# Fields (`a.b` inside objects) a version may have in all to be exported as Parquet: one column each.
MAX_PARQUET_COLUMNS = 4096


def write_export(rows: Iterator[dict], fmt: str, out: Path, *, version: DatanetVersion) -> dict:
    """Write atomically: a failed export never leaves a half-written file at `out`."""
    if fmt not in FORMATS:
        raise DatanetError(f"unknown export format {fmt!r}: use {', '.join(FORMATS)}", field="format")
    out = Path(out)
    check_export_path(out, fmt)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
    try:
        if fmt == "jsonl":
            count = _jsonl(rows, tmp)
        elif fmt == "parquet":
            count = _parquet(rows, tmp)
        else:
            count = _hf(rows, tmp)
    except BaseException:
        if tmp.exists():  # a refused or interrupted export leaves nothing behind, not even the partial file
            shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
        raise
    if out.is_dir() and not out.is_symlink():
        shutil.rmtree(out)  # an earlier export of this format (checked above), never any other folder
    os.replace(tmp, out)
    return {
        "datanet": version.datanet,
        "version": version.number,
        "root": version.root,
        "format": fmt,
        "path": str(out),
        "rows": count,
        "withdrawn_since_publication": version.contribution_count - count,
    }


HF_FILES = {"dataset_info.json", "state.json"}


def check_export_path(out: Path, fmt: str) -> None:
    """Refuse an `out` the export would destroy or cannot take: a folder for a file format, a file or a folder that
    is not an earlier export for `hf` (a folder's files would all be deleted), or a path without a name (`.`)."""
    if not out.name or out.name in (".", ".."):
        raise DatanetError(f"--out {out} names no file or folder to write", field="out")
    if fmt == "hf" and (out.is_symlink() or (out.exists() and not out.is_dir())):
        raise DatanetError(f"--out {out} is a file: an hf export is a folder, so give a new path", field="out")
    if not out.is_dir() or out.is_symlink():
        return
    if fmt != "hf":
        raise DatanetError(f"--out {out} is a folder: give a file path for a {fmt} export", field="out")
    names = {p.name for p in out.iterdir()}
    if not (HF_FILES <= names and all(n in HF_FILES or n.endswith(".arrow") for n in names)):
        raise DatanetError(f"--out {out} is a folder that holds other files: an hf export replaces the whole "
                           "folder, so give a new path", field="out")


def _jsonl(rows: Iterable[dict], path: Path) -> int:
    count = 0
    with open(path, "wb") as fh:
        for row in rows:
            fh.write(orjson.dumps(row) + b"\n")
            count += 1
    return count


def _batches(rows: Iterable[dict]) -> Iterator[list[dict]]:
    batch: list[dict] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _parquet(rows: Iterable[dict], path: Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    # Records may differ in optional fields, so the schema is unified over the whole version. A schema may let a
    # field take several types, which JSONL keeps and a Parquet column cannot: Arrow refuses those records, and
    # the refusal names the field rather than answering 500.
    tables = []
    columns: set[str] = set()
    for batch in _batches(rows):
        for record in batch:
            _count_columns(record, columns)
        try:
            # the columns are every field of the batch: `from_pylist` takes the first record's and drops the rest
            tables.append(pa.Table.from_struct_array(pa.array(batch)))
        except (pa.ArrowException, OverflowError) as exc:
            raise _no_parquet_type(_mixed_field(batch), exc) from None
    if not tables:
        raise DatanetError("the version has no rows left to export", field="version")
    try:
        table = pa.concat_tables(tables, promote_options="default")
    except (pa.ArrowException, OverflowError) as exc:
        raise _no_parquet_type(_field_typed_apart(tables), exc) from None
    empty = _empty_object_field(table.schema)
    if empty is not None:
        raise DatanetError(f"field {empty!r} cannot be exported to Parquet: it holds only empty objects, which have"
                           " no Parquet type; the Parquet export needs one type per field (the JSONL export takes"
                           " every record)", field="format")
    pq.write_table(table, path)
    return table.num_rows


def _count_columns(value: dict, columns: set[str], prefix: str = "") -> None:
    """Add the Parquet columns `value` needs (a field inside objects is `a.b`) to `columns`, refusing a version
    that needs more than MAX_PARQUET_COLUMNS before Arrow builds them (a record of a million fields took 5 GiB)."""
    for key, item in value.items():
        path = prefix + key
        if path not in columns:
            columns.add(path)
            if len(columns) > MAX_PARQUET_COLUMNS:
                raise DatanetError(f"the version's records have more than {MAX_PARQUET_COLUMNS:,} distinct fields, "
                                   "more columns than the Parquet export writes; the JSONL export takes every "
                                   "record", field="format")
        if type(item) is dict:
            _count_columns(item, columns, path + ".")


def _no_parquet_type(field: str | None, exc: Exception) -> DatanetError:
    named = f"field {field!r}" if field else "a field"
    if isinstance(exc, OverflowError):
        reason = "it holds an integer outside the signed 64-bit range, which a Parquet integer column cannot hold"
    else:
        reason = f"its values are not all of one type ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
    return DatanetError(f"{named} cannot be exported to Parquet: {reason}; the Parquet export needs one type per"
                        " field (the JSONL export takes every record)", field="format")


def _mixed_field(records: list, path: str = "") -> str | None:
    """The first field (`a.b` inside objects) whose values in `records` Arrow cannot give one type."""
    import pyarrow as pa

    for key in dict.fromkeys(key for record in records if type(record) is dict for key in record):
        values = [record.get(key) for record in records if type(record) is dict]
        try:
            pa.array(values)
        except (pa.ArrowException, OverflowError):
            objects = [value for value in values if value is not None]
            if objects and all(type(value) is dict for value in objects):
                return _mixed_field(objects, f"{path}{key}.") or f"{path}{key}"
            return f"{path}{key}"
    return None


def _field_typed_apart(tables: list) -> str | None:
    """The first column whose types in `tables` (batches that each had one type per column) do not unify."""
    import pyarrow as pa

    for name in dict.fromkeys(name for table in tables for name in table.schema.names):
        fields = [pa.schema([table.schema.field(name)]) for table in tables if name in table.schema.names]
        try:
            pa.unify_schemas(fields, promote_options="default")
        except (pa.ArrowException, OverflowError):
            return name
    return None


def _empty_object_field(schema) -> str | None:
    """The first field whose type is an object with no fields (only `{}` seen), which Parquet cannot write."""
    import pyarrow as pa

    def walk(kind, path: str) -> str | None:
        if pa.types.is_struct(kind):
            if kind.num_fields == 0:
                return path
            return next((found for i in range(kind.num_fields)
                         if (found := walk(kind.field(i).type, f"{path}.{kind.field(i).name}")) is not None), None)
        if pa.types.is_list(kind) or pa.types.is_large_list(kind):
            return walk(kind.value_type, f"{path}[]")
        return None

    return next((found for field in schema if (found := walk(field.type, field.name)) is not None), None)


def _hf(rows: Iterable[dict], path: Path) -> int:
    try:
        import datasets
    except ImportError as exc:  # the ML extra brings it
        raise DatanetError("format hf needs the `datasets` package: pip install 'ledgerlm[ml]'", field="format") from exc
    datasets.disable_progress_bars()
    data = list(rows)
    if not data:
        raise DatanetError("the version has no rows left to export", field="version")
    dataset = datasets.Dataset.from_list(data)
    dataset.save_to_disk(str(path))
    return len(data)
