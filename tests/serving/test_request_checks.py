"""Requests refused before they cost anything, and failures that never reach a public receipt: a chat attribution
could not read, a key sent with the scheme in lower case, an attribution that breaks on the node."""

from __future__ import annotations

import logging

import pytest

from ledgerlm.node import Node
from ledgerlm.serving import ApiKeyError
from ledgerlm.serving.catalog import ServedModel
from ledgerlm.serving.receipts import ATTRIBUTION_FAILED, AttributionWorker, Completed, ReceiptLog
from tests.economy.helpers import SHARES, key

DEV = key("developer")


@pytest.mark.parametrize("messages, words", [
    ([{"role": "assistant", "content": "What colour is the gull?"}], "must not open with an assistant message"),
    ([{"role": "assistant", "content": "Hi."}, {"role": "user", "content": "What colour is the gull?"}],
     "must not open with an assistant message"),
    ([{"role": "tool", "content": "gull"}], "tool messages are not supported"),
    ([{"role": "user", "content": "Which?"}, {"role": "tool", "content": "gull"}], "tool messages are not supported"),
])
def test_a_chat_attribution_could_not_read_is_refused_naming_messages(http, messages, words):
    response = http.post("/v1/chat/completions", json={"model": "facts-a", "messages": messages, "max_tokens": 4})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == "messages" and words in response.json()["error"]["message"]


def test_an_attribution_that_breaks_finishes_its_receipt_with_a_fixed_reason(home, caplog):
    node = Node.open(home)
    try:
        log = ReceiptLog(node.db, node.account, domain=node.domain)
        model = ServedModel("m", "tiny", None, None, DEV.address, 10**15, SHARES, "colours", (), 0)
        call = Completed("lgr-breaks", key("consumer").address, model, 20, 10,
                         {"messages": [{"role": "user", "content": "secret words"}], "completion": "an answer"})
        log.write(call, attributing=True)

        def attribute(model_id, prompt, answer):
            raise ValueError(f"Cannot apply chat template to {prompt!r}")

        with caplog.at_level(logging.ERROR, logger="ledgerlm.serving"):
            AttributionWorker(log, attribute)._finish("lgr-breaks")
        receipt = log.get("lgr-breaks")
        assert receipt.state == "final" and receipt.attribution["error"] == ATTRIBUTION_FAILED
        assert "secret words" not in str(receipt.attribution) and "ValueError" not in str(receipt.attribution)
        assert "lgr-breaks" in caplog.text and "Cannot apply chat template" in caplog.text  # the operator sees why
    finally:
        node.close()


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_a_key_is_read_whatever_the_case_of_its_scheme(http, scheme):
    node = http.app.state.node
    with pytest.raises(ApiKeyError, match="unknown API key"):  # read as a key, not as no key at all
        node.serving.keys.authenticate(f"{scheme} sk-lgr-not-registered")
    response = http.get("/apikeys/me", headers={"Authorization": f"{scheme} sk-lgr-not-registered"})
    assert "unknown API key" in response.json()["error"]["message"]
    assert node.serving.keys.authenticate(None) is None and node.serving.keys.authenticate("Basic abc") is None


@pytest.mark.parametrize("extra, field, words", [
    ({"tools": [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]}, "tools", "no tools"),
    ({"functions": [{"name": "lookup", "parameters": {}}]}, "functions", "no tools"),
    ({"tool_choice": "required"}, "tool_choice", "no tools"),
    ({"tool_choice": {"type": "function", "function": {"name": "lookup"}}}, "tool_choice", "no tools"),
    ({"function_call": {"name": "lookup"}}, "function_call", "no tools"),
    ({"logit_bias": {"50256": -100}}, "logit_bias", "not supported"),
    ({"response_format": {"type": "json_object"}}, "response_format", "only \"text\""),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, "response_format", "only"),
])
def test_a_constraint_the_node_cannot_honour_is_refused_not_ignored(http, extra, field, words):
    # once accepted and dropped: the caller paid for a plain-text answer that disregarded its tools or format
    for path, body in (("/v1/chat/completions", {"messages": [{"role": "user", "content": "Which?"}]}),
                       ("/v1/completions", {"prompt": "Which?"})):
        response = http.post(path, json={"model": "facts-a", **body, "max_tokens": 4, **extra})
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["field"] == field and words in error["message"], error


@pytest.mark.parametrize("extra, field", [({"logprobs": True}, "logprobs"), ({"top_logprobs": 2}, "top_logprobs")])
def test_chat_logprobs_are_refused_not_answered_null(http, extra, field):
    response = http.post("/v1/chat/completions", json={
        "model": "facts-a", "messages": [{"role": "user", "content": "Which?"}], "max_tokens": 4, **extra})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["field"] == field and "logprobs are not supported" in error["message"], error


@pytest.mark.parametrize("extra", [{"tools": []}, {"tool_choice": "none"}, {"tool_choice": "auto"}, {"logit_bias": {}},
                                   {"response_format": {"type": "text"}}, {"presence_penalty": 0.5, "user": "u1"},
                                   {"logprobs": False, "top_logprobs": 0}])
def test_what_asks_for_nothing_the_node_lacks_still_passes_validation(http, extra):
    response = http.post("/v1/chat/completions", json={
        "model": "facts-a", "messages": [{"role": "user", "content": "Which?"}], "max_tokens": 4, **extra})
    # this home serves no model: the refusal is about that, not about the request's shape
    assert response.json()["error"]["type"] != "ValidationError", response.text


def test_more_chat_turns_than_any_context_holds_are_refused_naming_messages(http):
    from ledgerlm.serving.schemas import MAX_MESSAGES

    turns = [{"role": "user", "content": ""}] * (MAX_MESSAGES + 1)
    response = http.post("/v1/chat/completions", json={"model": "facts-a", "messages": turns, "max_tokens": 4})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["field"] == "messages" and str(MAX_MESSAGES) in error["message"], error


@pytest.mark.parametrize("path, body, field", [
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Which?"}], "stop": 5}, "stop"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": 5}]}, "content"),
    ("/v1/completions", {"prompt": [1, 2, 3]}, "prompt"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Which?"}], "max_tokens": True}, "max_tokens"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Which?"}], "max_tokens": "5"}, "max_tokens"),
    ("/v1/completions", {"prompt": "Which?", "suffix": " the end."}, "suffix"),
    ("/v1/completions", {"prompt": "Which?", "best_of": 3}, "best_of"),
])
def test_a_bad_field_is_named_itself_not_the_type_it_failed_as(http, path, body, field):
    response = http.post(path, json={"model": "facts-a", **body})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == field, response.json()


@pytest.mark.parametrize("part", [{"type": "text", "text": None}, {"type": "text", "text": {"a": 1}}])
def test_a_text_part_that_is_not_text_is_refused(http, part):
    response = http.post("/v1/chat/completions", json={
        "model": "facts-a", "messages": [{"role": "user", "content": [part]}], "max_tokens": 4})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == "messages" and "must be a string" in response.json()["error"]["message"]


def test_a_body_that_is_not_an_object_names_the_body(http):
    response = http.post("/v1/chat/completions", content=b"[1, 2]", headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["field"] == "body", response.text


def test_stream_options_without_a_stream_are_refused_as_openai_refuses_them(http):
    response = http.post("/v1/chat/completions", json={
        "model": "facts-a", "messages": [{"role": "user", "content": "Which?"}], "max_tokens": 4,
        "stream_options": {"include_usage": True}})
    assert response.status_code == 400 and response.json()["error"]["param"] == "stream_options", response.text
