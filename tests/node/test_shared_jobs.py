"""Training jobs with two nodes on one database: a node starting up leaves the other's running job alone, a
cancel sent to either node stops the job where it runs, and only jobs whose node died are stopped."""

import time

import pytest
from sqlalchemy import update

from ledgerlm.identity import sign_action
from ledgerlm.node import Node
from ledgerlm.store.schema import training_jobs

from ..datanets.conftest import publish_qa
from .test_factory_jobs import FACTS

pytest.importorskip("torch")


def test_two_nodes_share_running_jobs(client, home, alice, bob, carol, tmp_path):
    from ledgerlm.factory import tiny_random_model

    tiny = tiny_random_model(tmp_path / "tiny", [f"{r['question']} {r['answer']}" for r in FACTS])
    client.factory.register_base("tiny", str(tiny))
    publish_qa(client, tmp_path, alice, [(bob, FACTS)])
    job = client.factory.train(carol, {"model_id": "long-run", "datanet": "colours", "version": 1, "base": "tiny",
                                       "config": {"epochs": 100, "batch_size": 1, "max_len": 32, "rank": 2}})
    first = client.http.app.state.node
    deadline = time.time() + 120
    while first.factory.job(job["id"]).state != "running" or not first.factory.job(job["id"]).progress:
        assert time.time() < deadline, first.factory.job(job["id"])
        time.sleep(0.2)

    second = Node.open(home)  # another node process starting on the same database
    try:
        assert second.factory.job(job["id"]).state == "running"  # its start-up left the other node's job running
        cancel = sign_action(carol, "ControlJob", {"jobId": job["id"], "command": "cancel"}, domain=second.domain)
        second.factory.control(job["id"], cancel)  # sent to the node that is not running it
        stopped = first.factory.wait(job["id"], timeout=60)
        assert stopped.state == "stopped" and "cancelled" in stopped.error
        assert stopped.progress["step"] < stopped.progress["total_steps"]

        # A node that died mid-job leaves a lease nobody renews: the next start-up stops that job, resumably,
        # but not a job whose node is alive and renewing its lease.
        now = int(time.time())
        with second.db.begin() as conn:
            conn.execute(update(training_jobs).where(training_jobs.c.id == job["id"]).values(
                state="running", owner="a-node-that-died", lease_until=now - 1))
        assert second.factory.stop_orphans(now) == 1
        orphan = second.factory.job(job["id"])
        assert orphan.state == "stopped" and "resume" in orphan.error
        with second.db.begin() as conn:
            conn.execute(update(training_jobs).where(training_jobs.c.id == job["id"]).values(
                state="running", owner="a-live-node", lease_until=now + 30))
        assert second.factory.stop_orphans(now) == 0
        assert second.factory.job(job["id"]).state == "running"
    finally:
        second.close()
