"""Reading receipts for `ledgerlm attribute --verify` and comparing a recomputed split field by field."""

from __future__ import annotations

import json

import pytest

from ledgerlm.attribution import AttributionError
from ledgerlm.attribution.verify import differences, read_receipt, verify_receipt

RESULT = {"evidence_bps": 7000, "pool_bps": 3000, "index_adapter_sha256": "ab", "gradient_bar": 0.4,
          "span_min_tokens": 4,
          "contributions": [{"contribution_id": 3, "contributor": "0xaa", "bps": 5000},
                            {"contribution_id": 9, "contributor": "0xbb", "bps": 2000}],
          "contributors": [{"contributor": "0xaa", "bps": 5000}, {"contributor": "0xbb", "bps": 2000}]}


def test_reads_the_attribute_json_and_a_serving_receipt(tmp_path):
    cli = tmp_path / "cli.json"
    cli.write_text(json.dumps({"model": "m", "prompt": "q?", "answer": "a.", **RESULT}))
    assert read_receipt(cli).attribution["evidence_bps"] == 7000
    served = tmp_path / "served.json"
    served.write_text(json.dumps({"receipt": {
        "model_id": "m", "attribution": RESULT,
        "request": {"messages": [{"role": "user", "content": "q?"}], "completion": "a."}}}))
    receipt = read_receipt(served)
    assert receipt.model == "m" and receipt.answer == "a." and receipt.prompt[0]["content"] == "q?"


def test_a_public_receipt_without_its_text_cannot_be_verified(tmp_path):
    public = tmp_path / "public.json"
    public.write_text(json.dumps({"model_id": "m", "attribution": RESULT,
                                  "request": {"split": {}}}))
    with pytest.raises(AttributionError) as err:
        read_receipt(public)
    assert err.value.field == "receipt.prompt"


def test_every_changed_share_and_total_is_reported(tmp_path):
    assert differences(RESULT, RESULT) == []
    changed = {**RESULT, "evidence_bps": 6999,
               "contributors": [{"contributor": "0xaa", "bps": 4999}, RESULT["contributors"][1]]}
    found = differences(RESULT, changed)
    assert any(line.startswith("evidence_bps") for line in found)
    assert any("contributors 0xaa" in line for line in found)
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"model": "m", "prompt": "q?", "answer": "a.", **RESULT}))
    check = verify_receipt(read_receipt(path), lambda m, p, a: changed)
    assert not check.verified and check.differences == found
