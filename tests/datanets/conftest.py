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


def publish_qa(client, root, owner, parts, *, name="colours", **spec):
    """A question-answer Datanet `name` owned by `owner`, each (contributor, records) of `parts` contributed as
    one file under `root` and accepted, and its first version published; returns that version."""
    from ledgerlm.datanets import DatanetSpec

    client.create_datanet(DatanetSpec(name=name, schema=QA_SCHEMA, **spec), owner)
    for i, (contributor, records) in enumerate(parts):
        client.contribute(name, [write_jsonl(root / f"{name}-{i}.jsonl", records)], contributor)
    for c in client.contributions(name):
        client.review(c.id, owner, accept=True)
    return client.publish(name, owner)
