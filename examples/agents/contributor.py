"""Contributor agent: turns a folder of text documents into schema-valid records and submits them, signed.

    LEDGERLM_PASSPHRASE=... python examples/agents/contributor.py --agent scribe --datanet colours --folder notes/

Each blank-line-separated paragraph is one record. Lines `field: value` fill the fields the Datanet's
schema names; a schema with a single required text field takes the whole paragraph. Paragraphs that do
not make a valid record are reported, not sent, so the agent's bond is never risked on them.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import emit, open_wallet, parser  # noqa: E402
from jsonschema import Draft202012Validator  # noqa: E402

from ledgerlm.agents import AgentWallet  # noqa: E402


def to_record(paragraph: str, schema: dict) -> dict:
    properties = schema.get("properties", {})
    required = schema.get("required", list(properties))
    if len(required) == 1:
        return {required[0]: paragraph.strip()}
    record = {}
    for line in paragraph.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in properties:
            record[key.strip().lower()] = value.strip()
    return record


def records_from_folder(folder: Path, schema: dict) -> tuple[list[dict], list[dict]]:
    """(valid records, rejected paragraphs with the reason) from every .txt and .md file in the folder."""
    validator = Draft202012Validator(schema)
    good, bad = [], []
    for path in sorted([*folder.glob("*.txt"), *folder.glob("*.md")]):
        for i, paragraph in enumerate(p for p in path.read_text().split("\n\n") if p.strip()):
            record = to_record(paragraph, schema)
            errors = [e.message for e in validator.iter_errors(record)]
            (bad if errors else good).append({"file": path.name, "paragraph": i, "errors": errors} if errors
                                             else record)
    return good, bad


def contribute_folder(wallet: AgentWallet, datanet: str, folder: Path) -> dict:
    schema = wallet.node.datanet(datanet).schema_
    if not isinstance(schema, dict):
        raise SystemExit(f"Datanet {datanet!r} takes documents, not records: upload the files themselves")
    good, bad = records_from_folder(Path(folder), schema)
    if not good:
        return {"submitted": 0, "rejected": bad}
    with tempfile.TemporaryDirectory() as tmp:
        upload = Path(tmp) / f"{Path(folder).name}.jsonl"
        upload.write_text("".join(json.dumps(r) + "\n" for r in good))
        receipt = wallet.contribute(datanet, [upload])
    return {"submitted": len(good), "rejected": bad, "receipt": receipt}


def main() -> None:
    p = parser("Turn a folder of text documents into records and contribute them to a Datanet.")
    p.add_argument("--datanet", required=True)
    p.add_argument("--folder", required=True, type=Path)
    args = p.parse_args()
    emit(contribute_folder(open_wallet(args), args.datanet, args.folder))


if __name__ == "__main__":
    main()
