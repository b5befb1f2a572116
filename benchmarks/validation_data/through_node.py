"""The gates measured end to end through a real node: signed uploads, the Datanet's schema naming the label field, accepted and pending records.

A fresh home and node (embedded chain, SQLite) get a records Datanet whose JSON Schema names its
label field with `x-label-field`. A first upload is accepted by the owner, a second passes the
gates and stays pending, and a third brings clean records plus flipped labels, answers swapped
between questions and defaced copies of accepted and of pending records. The node's own gate run
(`ValidationRounds.run_gates`, what `validate open` calls) decides the third upload; its stored
gate reports are scored per class.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from pathlib import Path

SCHEMA = {
    "type": "object",
    "x-label-field": "label",
    "properties": {"text": {"type": "string"}, "label": {"type": "string"},
                   "question": {"type": "string"}, "answer": {"type": "string"}},
}
CLASSES = ("label_noise", "qa_consistency", "near_duplicate")


def _write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return path


def _deface(record: dict) -> dict:
    field = "answer" if "answer" in record else "text"
    return dict(record, **{field: record[field].upper()})


def gates_through_node(records: list[dict], seed: int, n_accepted: int = 150, n_pending: int = 100,
                       n_clean: int = 300, per_defect: int = 20) -> dict:
    """Per-class precision/recall and clean records flagged or rejected, read from the node's gate reports."""
    for var, value in (("LEDGERLM_KDF_ITERATIONS", "1024"), ("LEDGERLM_NODE_PASSPHRASE", "benchmark-node"),
                       ("LEDGERLM_ADMIN_PASSPHRASE", "benchmark-admin"), ("HF_HUB_OFFLINE", "1")):
        os.environ.setdefault(var, value)
    from eth_account import Account
    from fastapi.testclient import TestClient
    from sqlalchemy import select

    from ledgerlm.api import create_app
    from ledgerlm.client import NodeClient
    from ledgerlm.config import Home
    from ledgerlm.datanets import DatanetSpec
    from ledgerlm.node import Node
    from ledgerlm.store.schema import gate_reports

    rng = random.Random(seed)
    records = list(records)
    rng.shuffle(records)
    accepted = records[:n_accepted]
    pending = records[n_accepted : n_accepted + n_pending]
    clean = records[n_accepted + n_pending : n_accepted + n_pending + n_clean]
    labels = sorted({r["label"] for r in records if "label" in r})
    labelled = [i for i, r in enumerate(clean) if "label" in r]
    qa = [i for i, r in enumerate(clean) if "answer" in r]
    flipped = set(rng.sample(labelled, min(per_defect, len(labelled) // 4)))
    swapped = set(rng.sample(qa, min(per_defect, len(qa) // 4)))
    batch: list[tuple[str, dict]] = []
    for i, r in enumerate(clean):
        if i in flipped:
            batch.append(("label_noise", dict(r, label=rng.choice([x for x in labels if x != r["label"]]))))
        elif i in swapped:
            donor = clean[rng.choice([j for j in qa if j not in swapped])]
            batch.append(("qa_consistency", dict(r, answer=donor["answer"])))
        else:
            batch.append(("clean", r))
    copies = rng.sample(accepted, per_defect // 2) + rng.sample(pending, per_defect // 2)
    batch += [("near_duplicate", _deface(r)) for r in copies]
    rng.shuffle(batch)

    with tempfile.TemporaryDirectory() as tmp:
        home = Home(Path(tmp) / "home")
        Node.init(home).close()
        owner, contributor = Account.from_key(b"\x01" * 32), Account.from_key(b"\x02" * 32)
        with TestClient(create_app(lambda: Node.open(home)), base_url="http://ledgerlm.local",
                        client=("127.0.0.1", 50000)) as http:
            client = NodeClient(http, operator_token=home.operator_token_path.read_text().strip())
            node = http.app.state.node
            client.create_datanet(DatanetSpec(name="measured", schema=SCHEMA), owner)
            client.contribute("measured", [_write(Path(tmp) / "accepted.jsonl", accepted)], contributor)
            first = [c.id for c in client.contributions("measured", limit=10_000)]
            client.review_many("measured", first, owner, accept=True)
            client.contribute("measured", [_write(Path(tmp) / "pending.jsonl", pending)], contributor)
            node.validation.run_gates("measured")
            before = {c.id for c in client.contributions("measured", limit=10_000)}
            client.contribute("measured", [_write(Path(tmp) / "batch.jsonl", [r for _, r in batch])], contributor)
            node.validation.run_gates("measured")
            new = sorted({c.id for c in client.contributions("measured", limit=10_000)} - before)
            with node.db.connect() as conn:
                rows = {r.contribution_id: r for r in conn.execute(
                    select(gate_reports.c.contribution_id, gate_reports.c.decision, gate_reports.c.findings)
                    .where(gate_reports.c.contribution_id.in_(new)))}
    truth = dict(zip(new, (cls for cls, _ in batch)))
    out: dict = {"records": len(new), "accepted": len(accepted), "pending": len(pending), "per_class": {}}
    for cls in CLASSES:
        hit = {cid for cid, r in rows.items() if any(f["gate"] == cls for f in r.findings)}
        support = sum(1 for t in truth.values() if t == cls)
        tp = sum(1 for cid in hit if truth[cid] == cls)
        out["per_class"][cls] = {"support": support, "tp": tp, "fp": len(hit) - tp,
                                 "precision": tp / len(hit) if hit else 0.0, "recall": tp / support if support else 0.0}
    n_clean = sum(1 for t in truth.values() if t == "clean")
    out["clean"] = n_clean
    out["clean_rejected_rate"] = sum(1 for cid, r in rows.items() if truth[cid] == "clean" and r.decision == "reject") / n_clean
    out["clean_flagged_rate"] = sum(1 for cid, r in rows.items() if truth[cid] == "clean" and r.decision == "flag") / n_clean
    return out
