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


def write_export(rows: Iterator[dict], fmt: str, out: Path, *, version: DatanetVersion) -> dict:
    """Write atomically: a failed export never leaves a half-written file at `out`."""
    if fmt not in FORMATS:
        raise DatanetError(f"unknown export format {fmt!r}: use {', '.join(FORMATS)}", field="format")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
    if fmt == "jsonl":
        count = _jsonl(rows, tmp)
    elif fmt == "parquet":
        count = _parquet(rows, tmp)
    else:
        count = _hf(rows, tmp)
    if out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
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

    # Records may differ in optional fields, so the schema is unified over the whole version.
    tables = [pa.Table.from_pylist(b) for b in _batches(rows)]
    if not tables:
        raise DatanetError("the version has no rows left to export", field="version")
    table = pa.concat_tables(tables, promote_options="default")
    pq.write_table(table, path)
    return table.num_rows


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
