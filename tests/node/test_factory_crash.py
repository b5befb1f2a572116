"""A training job killed while writing its first checkpoint (no complete one yet) is resumed by starting afresh,
not failed for the half-written checkpoint it left."""

import importlib
import time

from fastapi.testclient import TestClient

from ledgerlm.api import create_app
from ledgerlm.client import NodeClient
from ledgerlm.node import Node

from ..datanets.conftest import publish_qa

train_mod = importlib.import_module("ledgerlm.factory.train")

FACTS = [{"question": f"What colour is the {t}?", "answer": f"The {t} is {c}."}
         for t, c in [("reef", "copper"), ("gull", "grey"), ("tide", "green"), ("moon", "pale")]]


class Died(BaseException):
    pass


def test_a_job_killed_while_writing_its_first_checkpoint_resumes_afresh(home, alice, carol, tmp_path, monkeypatch):
    from ledgerlm.factory import tiny_random_model

    def dies_mid_save(out_dir, *args, **kwargs):
        (out_dir / train_mod.CHECKPOINTS / ".step-00000001.tmp").mkdir(parents=True)  # what the save had written
        raise Died()

    monkeypatch.setattr(train_mod, "_save_checkpoint", dies_mid_save)
    node = Node.open(home)
    node.factory.observe_training = None
    with TestClient(create_app(lambda: node), base_url="http://localhost", client=("127.0.0.1", 5)) as http:
        client = NodeClient(http, operator_token=home.operator_token_path.read_text().strip())
        client.factory.register_base("tiny", str(tiny_random_model(tmp_path / "tiny", [str(r) for r in FACTS])))
        publish_qa(client, tmp_path, alice, [(alice, FACTS)])
        job = client.factory.train(carol, {"model_id": "mod1", "datanet": "colours", "version": 1, "base": "tiny",
                                           "config": {"epochs": 2, "max_len": 64, "eval_split": 0.0}})
        for _ in range(600):
            time.sleep(0.2)
            if node.factory._worker is not None and not node.factory._worker.is_alive():
                break
    monkeypatch.undo()
    node.close()

    node = Node.open(home)
    node.factory.observe_training = None
    try:
        node.factory.stop_orphans(now=int(time.time()) + 60)
        j = node.factory.job(job["id"])
        assert j.state == "stopped"
        with TestClient(create_app(lambda: node), base_url="http://localhost", client=("127.0.0.1", 5)) as http:
            client = NodeClient(http, operator_token=home.operator_token_path.read_text().strip())
            client.factory.control(carol, job["id"], "resume")
            done = node.factory.wait(job["id"], timeout=300)
        assert done.state == "done", done.error
    finally:
        node.close()
