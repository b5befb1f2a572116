"""`ledgerlm models register|list|show`, `factory train|jobs|job|cancel|resume|merge|publish` and `attribute`
on a tiny random Llama trained for a few steps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")

FACTS = [{"question": f"What colour is the {thing}?", "answer": f"The {thing} is {colour}."}
         for thing, colour in [("reef", "copper"), ("gull", "grey"), ("tide", "green"), ("moon", "pale"),
                               ("kelp", "brown"), ("crab", "amber"), ("storm", "black"), ("sand", "gold")]]
TRAIN = ["--datanet", "colours", "--version", "1", "--base", "tiny", "--epochs", "1", "--max-steps", "3",
         "--batch-size", "2", "--max-len", "64", "--rank", "4", "--lr", "5e-3", "--eval-split", "0.25"]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    from ledgerlm.factory import tiny_random_model

    texts = [f"{r['question']} {r['answer']}" for r in FACTS]
    return tiny_random_model(tmp_path_factory.mktemp("tiny") / "tiny", texts)


def publish_colours(cli, tmp_path) -> None:
    """The `colours` Datanet of FACTS: created by alice, contributed by bob, accepted and published as v1."""
    schema = {"type": "object", "properties": {"question": {"type": "string"}, "answer": {"type": "string"}},
              "required": ["question", "answer"]}
    (tmp_path / "schema.json").write_text(json.dumps(schema))
    (tmp_path / "facts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in FACTS))
    cli("datanet", "create", "colours", "--as", "alice", "--schema", tmp_path / "schema.json")
    cli("datanet", "contribute", "colours", tmp_path / "facts.jsonl", "--as", "bob")
    cli("datanet", "accept", "--all-pending", "colours", "--as", "alice")
    cli("datanet", "publish", "colours", "--as", "alice")


def test_register_train_publish_attribute(cli, tiny_dir, tmp_path):
    registered = cli.json("models", "register", "tiny", tiny_dir)
    assert registered["name"] == "tiny" and registered["n_params"] > 0
    cli.fails("models", "register", "tiny2", tmp_path, match="is not a Hugging Face model directory")

    publish_colours(cli, tmp_path)

    cli.fails("factory", "train", *TRAIN[:2], "--version", "9", *TRAIN[4:], "--as", "carol", match="version 9")
    model = cli.json("factory", "train", *TRAIN, "--name", "colours-tiny", "--as", "carol")
    assert model["id"] == "colours-tiny" and model["lineage_ok"] and 1 <= model["metrics"]["train"]["steps"] <= 3
    sample = model["metrics"]["trained_sample"]  # whether it learned, base vs fine-tuned on trained records
    assert sample["after"]["n_generated"] == len(sample["eval_indices"]) >= 1
    assert sample["after"]["loss"] < sample["before"]["loss"]
    summary = " ".join(cli("factory", "train", *TRAIN, "--name", "colours-tiny-2", "--as", "carol").stdout.split())
    assert "did it learn?" in summary and "trained records (sample): exact match" in summary
    assert "held-out records: answer loss" in summary
    assert "2 held-out record(s) were not trained on; `--eval-split 0` trains on every record" in summary

    jobs = cli.json("factory", "jobs")
    assert [(j["model_id"], j["state"]) for j in jobs] == [("colours-tiny-2", "done"), ("colours-tiny", "done")]
    job = cli.json("factory", "job", jobs[1]["id"])
    assert job["progress"]["step"] == job["progress"]["total_steps"] == model["metrics"]["train"]["steps"]
    cli.fails("factory", "job", "99", match="no training job 99")
    cli.fails("factory", "cancel", jobs[1]["id"], "--as", "carol", match="already done")
    cli.fails("factory", "resume", jobs[1]["id"], "--as", "carol", match="only a stopped job can resume")

    listed = cli.json("models", "list")
    assert [m["name"] for m in listed["base"]] == ["tiny"] and [m["id"] for m in listed["fine_tuned"]] == ["colours-tiny", "colours-tiny-2"]
    shown = cli("models", "show", "colours-tiny").stdout
    assert "verified" in shown and model["version_root"] in shown  # the whole root on one line
    cli.fails("models", "show", "nope", match="no fine-tuned model 'nope'")

    merged = cli.json("factory", "merge", "colours-tiny")
    assert (Path(merged["path"]) / "config.json").exists()
    cli.fails("factory", "merge", "nope", match="no fine-tuned model 'nope'")

    cli.fails("factory", "publish", "colours-tiny", "--as", "carol", "--fee-policy", "1,2,3",
              match="four integers")
    cli.fails("factory", "publish", "colours-tiny", "--as", "bob", match="only its developer")
    text = cli("factory", "publish", "colours-tiny", "--as", "carol").stdout
    published = cli.json("models", "show", "colours-tiny")
    assert published["chain_tx"] and published["chain_tx"] in text
    change = cli.json("factory", "fee-policy", "colours-tiny", "2500,2000,4500,1000", "--as", "carol")
    assert change["fee_policy"]["developer_bps"] == 2000 and change["from_epoch"] == 2  # epoch 1 is open
    cli.fails("factory", "fee-policy", "colours-tiny", "2500,2000,4500,1000", "--as", "bob", match="only its developer")

    answer = cli.json("attribute", "--model", "colours-tiny", "--prompt", "What colour is the reef?",
                      "--answer", "The reef is copper.")
    assert answer["answer"] == "The reef is copper." and not answer["generated"]
    bob = cli.address("bob")
    assert {c["contributor"] for c in answer["contributors"]} <= {bob}
    # a training this small leaves the gradient uncalibrated: an unrelated answer is unattributed,
    # and the text says why the gradient paid nothing
    unrelated = cli("attribute", "--model", "colours-tiny", "--prompt", "What is 3 plus 5?",
                    "--answer", "3 plus 5 is 8.").stdout
    assert "unattributed" in unrelated and "too small to calibrate" in " ".join(unrelated.split())
    cli.fails("attribute", "--model", "nope", "--prompt", "hi", match="no fine-tuned model 'nope'")


def test_cancel_and_resume_a_detached_job(cli, tiny_dir, tmp_path):
    """On a served node a detached job is stopped by cancel and continues after resume; without one,
    --detach is refused, since the job would stop when the command exits."""
    cli("models", "register", "tiny", tiny_dir)
    schema = {"type": "object", "properties": {"question": {"type": "string"}, "answer": {"type": "string"}},
              "required": ["question", "answer"]}
    (tmp_path / "schema.json").write_text(json.dumps(schema))
    (tmp_path / "facts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in FACTS))
    cli("datanet", "create", "colours", "--as", "alice", "--schema", tmp_path / "schema.json")
    cli("datanet", "contribute", "colours", tmp_path / "facts.jsonl", "--as", "bob")
    cli("datanet", "accept", "1-8", "--as", "alice")
    cli("datanet", "publish", "colours", "--as", "alice")

    if cli.mode == "in-process":
        cli.fails("factory", "train", *TRAIN, "--as", "carol", "--detach", match="--detach needs a running node")
        return
    long_run = [a for a in TRAIN if a not in ("--max-steps", "3")]
    long_run[long_run.index("--epochs") + 1] = "100"  # the most allowed, one example a step: so cancel always
    long_run[long_run.index("--batch-size") + 1] = "1"  # lands while it runs
    queued = cli.json("factory", "train", *long_run, "--name", "later", "--as", "carol", "--detach")
    cli.fails("factory", "cancel", queued["id"], "--as", "bob", match="only its developer")
    cancelled = cli.json("factory", "cancel", queued["id"], "--as", "carol")
    assert cancelled["state"] in ("stopped", "running")  # a running job stops at its next step
    with cli.node() as node:
        assert node.factory.wait(queued["id"], timeout=300).state == "stopped"
    cli.fails("factory", "cancel", queued["id"], "--as", "carol", match="already stopped")
    before = cli.json("factory", "job", queued["id"])["progress"] or {"step": 0}

    resumed = cli.json("factory", "resume", queued["id"], "--as", "carol", "--detach")
    assert resumed["state"] in ("queued", "running")
    cli("factory", "cancel", queued["id"], "--as", "carol")
    with cli.node() as node:
        assert node.factory.wait(queued["id"], timeout=300).state == "stopped"
    after = cli.json("factory", "job", queued["id"])["progress"] or {"step": 0}
    assert after["step"] >= before["step"]  # resumed from its checkpoint, not from step 0


@pytest.mark.slow
def test_train_on_two_processes_through_the_cli(cli, tiny_dir, tmp_path):
    """`factory train --gpus 2` on a CPU host: two gloo processes under torchrun, then the same evaluation,
    lineage and attribution index as a one-process job; the process count stays out of the lineage."""
    cli.json("models", "register", "tiny", tiny_dir)
    publish_colours(cli, tmp_path)
    cli.fails("factory", "train", *TRAIN, "--gpus", "0", "--as", "carol", match="processes")
    model = cli.json("factory", "train", *TRAIN, "--gpus", "2", "--name", "colours-two", "--as", "carol")
    assert model["lineage_ok"] and model["metrics"]["train"]["steps"] == 3
    assert "processes" not in model["card"]["config"]
    assert model["metrics"]["attribution"].get("indexed_examples", 0) > 0
    job = cli.json("factory", "jobs")[0]
    assert job["config"]["processes"] == 2 and job["state"] == "done"


def test_training_progress_written_to_a_file_is_plain_lines(capsys, monkeypatch):
    """Piped or redirected, `factory train` draws no bar: it writes the step, loss and speed now and then, and
    says when training is over but indexing for attribution still runs."""
    from ledgerlm.cli import factory

    clock = [0.0]
    monkeypatch.setattr(factory.time, "monotonic", lambda: clock[0])
    log = factory._ProgressLog(7, every=30)

    def step(n, stage=None, at=0.0):
        clock[0] = at
        progress = {"step": n, "total_steps": 40, "epoch": n // 10, "loss": 2.0 / n, "tokens_per_s": 812.4,  # 0-based
                    "eta_s": (40 - n) * 3.0, **({"stage": stage} if stage else {})}
        log.show({"state": "running", "progress": progress})

    log.show({"state": "queued", "progress": None})
    for n, at in ((1, 1.0), (2, 5.0), (3, 40.0), (40, 41.0), (40, 45.0)):
        step(n, at=at)
    step(40, "indexing for attribution", at=46.0)
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "job 7 queued",
        "job 7 running: step 1/40, epoch 1, loss 2.0000, 812 tok/s, about 1 min 57 s left",
        "job 7 running: step 3/40, epoch 1, loss 0.6667, 812 tok/s, about 1 min 51 s left",  # 30 s after step 1
        "job 7 running: step 40/40, epoch 5, loss 0.0500, 812 tok/s, about 0 s left",  # the last step, once
        "job 7 running: step 40/40, epoch 5, loss 0.0500, 812 tok/s, about 0 s left (indexing for attribution)",
    ]


def test_training_on_a_private_datanet_is_followed_with_the_developers_own_reads(cli, tiny_dir, tmp_path):
    cli("models", "register", "tiny", tiny_dir)
    schema = {"type": "object", "properties": {"question": {"type": "string"}, "answer": {"type": "string"}},
              "required": ["question", "answer"]}
    (tmp_path / "schema.json").write_text(json.dumps(schema))
    (tmp_path / "facts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in FACTS))
    cli("datanet", "create", "secret", "--as", "alice", "--schema", tmp_path / "schema.json",
        "--visibility", "private")
    cli("datanet", "contribute", "secret", tmp_path / "facts.jsonl", "--as", "alice")
    cli("datanet", "accept", "--all-pending", "secret", "--as", "alice")
    cli("datanet", "publish", "secret", "--as", "alice")
    model = cli.json("factory", "train", "--datanet", "secret", *TRAIN[2:], "--name", "secret-tiny", "--as", "alice")
    assert model["id"] == "secret-tiny" and model["lineage_ok"]
    # its developer reads the private job and model back with --as; without it, they are not shown
    job = cli.json("factory", "jobs", "--as", "alice")[-1]
    assert job["model_id"] == "secret-tiny" and cli.json("factory", "job", job["id"], "--as", "alice")["state"] == "done"
    assert "secret-tiny" in [m["id"] for m in cli.json("models", "list", "--as", "alice")["fine_tuned"]]
    assert cli.json("models", "show", "secret-tiny", "--as", "alice")["lineage_ok"]
    assert "secret-tiny" not in [m["id"] for m in cli.json("models", "list")["fine_tuned"]]
