"""Fields built to reach a server fault or slip past a check: a credential past ASCII, integers past 64 bits,
a name with a trailing line break, NaN, a fractional cap, an unknown filter. Each is refused with a 4xx naming
the field, and nothing is stored."""

from __future__ import annotations

import hashlib
import math

import pytest
from pydantic import ValidationError

from ledgerlm.factory.jobs import TrainRequest
from ledgerlm.validation.errors import GatePolicyError
from ledgerlm.validation.policy import GatePolicy

QA_SCHEMA = {"type": "object", "properties": {"question": {"type": "string"}, "answer": {"type": "string"}},
             "required": ["question", "answer"]}


def error_of(response) -> dict:
    assert 400 <= response.status_code < 500, response.text
    return response.json()["error"]


def test_a_bearer_token_past_ascii_is_refused_not_a_server_fault(http):
    token = {"Authorization": "Bearer \u00e9".encode("latin-1")}
    # not the operator: what anyone is told, and an operator's route refused
    assert http.get("/node/info", headers=token).json() == http.get("/node/info").json()
    assert http.post("/economy/epochs/close", headers=token).status_code in (401, 403)


def test_an_integer_past_64_bits_in_a_datanet_schema_is_named_and_nothing_is_created(http, client, alice):
    schema = {"type": "object", "properties": {"q": {"type": "string", "maxLength": 10**30}}}
    action = client._sign(alice, "CreateDatanet", {"name": "big1", "specHash": "0x" + "00" * 32})
    error = error_of(http.post("/datanets", json={"spec": {"name": "big1", "schema": schema}, "action": action}))
    assert "64-bit" in error["message"] and "schema" in (error["field"] or ""), error
    assert all(d.name != "big1" for d in client.datanets())


def test_a_datanet_name_with_a_trailing_line_break_is_refused(http, client, alice):
    action = client._sign(alice, "CreateDatanet", {"name": "pub1\n", "specHash": "0x" + "00" * 32})
    error = error_of(http.post("/datanets", json={"spec": {"name": "pub1\n", "schema": QA_SCHEMA},
                                                  "action": action}))
    assert error["field"] == "name", error
    assert client.datanets() == []


def test_typed_data_refuses_a_fractional_cap_and_a_file_size_past_64_bits(http, alice):
    for cap in (5.5, True, "5.5"):
        error = error_of(http.post("/web/typed-data", json={"action": "CreateApiKey", "signer": alice.address,
                                                            "fields": {"cap": cap}}))
        assert error["field"] == "cap", error
    digest = hashlib.sha256(b"x").hexdigest()
    error = error_of(http.post("/web/typed-data", json={"action": "Contribute", "signer": alice.address,
                                                        "fields": {"datanet": "qa"},
                                                        "manifest": [["a.jsonl", digest, 2**64]]}))
    assert "size" in (error["field"] or ""), error


def test_an_unknown_receipt_state_is_named(http):
    error = error_of(http.get("/receipts", params={"state": "zzz"}))
    assert "state" in (error["field"] or "") or "state" in error["message"], error


def test_a_training_config_with_an_integer_past_64_bits_is_refused_before_it_is_hashed():
    with pytest.raises(ValidationError, match="64-bit"):
        TrainRequest(model_id="m1", datanet="qa", version=1, config={"x": 10**30})


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_gate_threshold_that_is_no_finite_number_is_refused(value):
    with pytest.raises(GatePolicyError) as refused:
        GatePolicy.from_dict({"gates": {"near_duplicate": {"threshold": value}}})
    assert refused.value.field == "gates.near_duplicate.threshold"


@pytest.mark.parametrize("path", ["/datanets", "/datanets/qa/contributions"])
def test_a_declared_length_of_thousands_of_digits_is_too_large_not_a_server_fault(http, path):
    headers = {"content-length": "9" * 5000, "content-type": "application/json"}
    if path.endswith("contributions"):
        headers["content-type"] = "multipart/form-data; boundary=x"
    assert http.post(path, content=b"{}", headers=headers).status_code == 413
