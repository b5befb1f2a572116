"""A training job whose node died reads as interrupted (stopped, with the reason) from `factory job` and
`factory jobs`, through the API and in-process, without waiting for a node restart to sweep it."""

from __future__ import annotations

import time

from sqlalchemy import insert

from ledgerlm.store.schema import signed_actions, training_jobs


def _running_job(node, *, owner: str, lease_until: int) -> int:
    now = int(time.time())
    with node.db.begin() as conn:
        action = conn.execute(insert(signed_actions).values(
            action="TrainModel", signer="0x" + "11" * 20, nonce=f"{owner}-{lease_until}", deadline=now + 60,
            chain_id=1, message={}, signature="0x", created_at=now)).inserted_primary_key[0]
        return conn.execute(insert(training_jobs).values(
            model_id=f"job-of-{owner}", developer="0x" + "11" * 20, datanet="colours", version=1, base_model="tiny",
            config={}, state="running", progress={"step": 3, "total_steps": 10}, error=None, action_id=action,
            created_at=now, updated_at=now, owner=owner, lease_until=lease_until)).inserted_primary_key[0]


def test_a_dead_nodes_job_reads_as_interrupted(cli):
    with cli.node() as node:
        node.factory.jobs()  # the node is up and has swept at start-up: the lease runs out after that
        dead = _running_job(node, owner="a-node-that-died", lease_until=int(time.time()) - 1)
        alive = _running_job(node, owner="a-live-node", lease_until=int(time.time()) + 600)

    job = cli.json("factory", "job", str(dead))
    assert job["state"] == "stopped" and job["error"].startswith("interrupted") and "resume" in job["error"]
    states = {j["id"]: j["state"] for j in cli.json("factory", "jobs")}
    assert states == {dead: "stopped", alive: "running"}  # a job whose node still renews its lease runs on
