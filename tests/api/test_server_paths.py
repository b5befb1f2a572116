"""Where the node keeps model files on its disk is the operator's to know: other readers get the models
without their directories."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")


def anonymous(http, path: str):
    """`path` read without the operator's token the shared client otherwise sends."""
    request = http.build_request("GET", path)
    request.headers.pop("authorization", None)
    return http.send(request)


def test_base_models_show_their_directory_to_the_operator_only(http, client, tmp_path):
    from ledgerlm.factory import tiny_random_model

    tiny = tiny_random_model(tmp_path / "tiny", ["the reef is copper", "the gull is grey"])
    registered = client.factory.register_base("tiny", str(tiny))
    directory = str(tiny.resolve())
    assert registered["path"] == directory and registered["source"] == f"local:{directory}"

    listed = anonymous(http, "/models/base")
    assert listed.status_code == 200
    (base,) = listed.json()
    assert base["name"] == "tiny" and base["sha256"] == registered["sha256"] and base["source"] == "local"
    assert "path" not in base and directory not in listed.text
    wrong = http.get("/models/base", headers={"Authorization": "Bearer lgr-operator-wrong"})
    assert directory not in wrong.text

    (mine,) = client.factory.base_models()  # the operator's client sends its token
    assert mine["path"] == directory and mine["source"] == f"local:{directory}"

    page = anonymous(http, "/web/models")
    assert page.status_code == 200 and "tiny" in page.text and str(tmp_path) not in page.text
