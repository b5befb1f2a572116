"""Fixtures for Datanet tests: a Q&A records Datanet and a documents Datanet."""

import pytest

from ledgerlm.datanets import DatanetSpec

QA_SCHEMA = {
    "type": "object",
    "properties": {
        "question": {"type": "string", "minLength": 1},
        "answer": {"type": "string", "minLength": 1},
    },
    "required": ["question", "answer"],
}


@pytest.fixture
def qa(client, alice):
    return client.create_datanet(DatanetSpec(name="qa", schema=QA_SCHEMA, tags=["test"]), alice)


@pytest.fixture
def docs(client, alice):
    return client.create_datanet(DatanetSpec(name="docs", schema="documents"), alice)


def write_jsonl(path, records):
    import orjson

    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return path
