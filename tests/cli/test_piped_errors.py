"""Every command's error path through real pipes, with a home path longer than any terminal line.

Scripts and people grep the one-line errors and copy the paths, hashes and addresses in them; a fold
at 80 columns (or at whatever COLUMNS says) would break both. The CLI runs in a child process whose
stdout and stderr are files, once with COLUMNS set and once without.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ledgerlm.config import Home
from ledgerlm.datanets import DatanetSpec
from ledgerlm.identity import Keyring, sign_action
from ledgerlm.node import Node

SRC = Path(__file__).resolve().parents[2] / "src"
DRIVER = Path(__file__).resolve().parent / "pipe_driver.py"
NOT_CHECKSUMMED = "0x" + "ab" * 20
# Commands with nothing to refuse: listing the keys or agents of a home that has none prints an empty table.
NO_ERROR_PATH = {"keys list", "agent list", "shares list", "node known"}


def _long_dir(base: Path) -> Path:
    path = base / ("d" * 70) / ("e" * 70)
    assert len(str(path)) > 150
    return path


def _cases(home: Path, never: Path) -> list[tuple[list[str], str, dict]]:
    """(arguments, a fragment the one-line error must hold, extra environment) for every command."""
    missing_file = str(home.parent / "missing.jsonl")
    on_home = [
        (["keys", "new", "alice"], f"already exists at {home}/keys/alice.json", {}),
        (["keys", "show", "nobody"], f"no key named 'nobody' in {home}/keys", {}),
        (["keys", "import", "imp"], "the private key must be 32 bytes of hex", {"LEDGERLM_PRIVATE_KEY": "zz"}),
        (["datanet", "create", "Bad_Name", "--as", "alice"], "must be 2-64 characters", {}),
        (["datanet", "show", "missing"], "no Datanet named 'missing'", {}),
        (["datanet", "contribute", "missing", missing_file, "--as", "alice"], f"{missing_file} is not a readable file",
         {}),
        (["datanet", "contributions", "missing"], "no Datanet named 'missing'", {}),
        (["datanet", "contribution", "999"], "no contribution with id 999", {}),
        (["datanet", "contribute", "docs", str(home.parent / "broken.pdf"), "--as", "alice"],
         "broken.pdf: unreadable PDF", {}),
        (["datanet", "accept", "999", "--as", "alice"], "no contribution with id 999", {}),
        (["datanet", "accept", "998-1000", "--as", "alice"], "no contribution with id 998", {}),
        (["datanet", "accept", "--all-pending", "docs", "--as", "alice"], "Datanet 'docs' has no pending contributions",
         {}),
        (["datanet", "reject", "999", "--as", "alice"], "no contribution with id 999", {}),
        (["datanet", "withdraw", "999", "--as", "alice"], "no contribution with id 999", {}),
        (["datanet", "publish", "missing", "--as", "alice"], "no Datanet named 'missing'", {}),
        (["datanet", "manifest", "missing", "--version", "1"], "no Datanet named 'missing'", {}),
        (["datanet", "export", "missing", "--version", "1"], "no Datanet named 'missing'", {}),
        (["datanet", "members", "missing"], "no Datanet named 'missing'", {}),
        (["datanet", "add-member", "docs", "0x" + "11" * 20, "--as", "alice"], "Datanet 'docs' is public", {}),
        (["datanet", "remove-member", "docs", "0x" + "11" * 20, "--as", "alice"], "Datanet 'docs' is public", {}),
        (["chain", "deploy", "--chain-url", "http://127.0.0.1:9", "--key", "alice"],
         "cannot reach an EVM node at http://127.0.0.1:9", {}),
        (["chain", "faucet", "nobody"], f"no key named 'nobody' in {home}/keys", {}),
        (["balance", "nobody"], f"no key named 'nobody' in {home}/keys", {}),
        (["balance", "0x123"], "'0x123' is not an Ethereum address", {}),
        (["stake", "1", "--as", "alice"], "ledgerlm chain faucet 0x", {}),
        (["unstake", "5", "--as", "alice"], "InsufficientStake(available=0, requested=5000000000000000000)", {}),
        (["withdraw", "--as", "alice"], "NothingToWithdraw()", {}),
        (["chain", "revoke-slash", "99", "--as", "alice"], "neededRole=DEFAULT_ADMIN_ROLE", {}),
        (["chain", "release-limit", "5", "--as", "alice"], "neededRole=DEFAULT_ADMIN_ROLE", {}),
        (["transfer", NOT_CHECKSUMMED, "1", "--as", "alice"], "ERC20InsufficientBalance(sender=0x", {}),
        (["validate", "policy", "missing"], "no Datanet named 'missing'", {}),
        (["validate", "open", "missing", "--as", "alice"], "no Datanet named 'missing'", {}),
        (["validate", "queue", "--as", "nobody"], f"no key named 'nobody' in {home}/keys", {}),
        (["validate", "commit", "99", "--votes", "1=50", "--as", "alice"], "no validator round 99", {}),
        (["validate", "reveal", "99", "--as", "alice"], f"no committed votes for round 99 in {home}/validator", {}),
        (["validate", "tally", "99", "--as", "alice"], "no validator round 99", {}),
        (["validate", "round", "show", "99"], "no validator round 99", {}),
        (["validate", "reputation", "nobody"], f"no key named 'nobody' in {home}/keys", {}),
        (["models", "pull", "unknown-model"], "only smollm2-135m can be pulled", {}),
        (["models", "register", "x", missing_file], f"{missing_file} is not a Hugging Face model directory", {}),
        (["models", "show", "missing"], "no fine-tuned model 'missing'", {}),
        (["factory", "train", "--datanet", "missing", "--version", "1", "--as", "alice"],
         "no base model named 'smollm2-135m'", {}),
        (["factory", "job", "99"], "no training job 99", {}),
        (["factory", "cancel", "99", "--as", "alice"], "no training job 99", {}),
        (["factory", "resume", "99", "--as", "alice"], "no training job 99", {}),
        (["factory", "merge", "missing"], "no fine-tuned model 'missing'", {}),
        (["factory", "publish", "missing", "--as", "alice"], "no fine-tuned model 'missing'", {}),
        (["factory", "fee-policy", "missing", "500,4000,4500,1000", "--as", "alice"],
         "no fine-tuned model 'missing'", {}),
        (["attribute", "--model", "missing", "--prompt", "hi"], "no fine-tuned model 'missing'", {}),
        (["attribute", "--verify", missing_file], f"cannot read receipt {missing_file}", {}),
        (["attribute", "--verify", "nope", "--as", "alice"], "no receipt 'nope'", {}),
        (["deposit", "5", "--as", "alice"], "ledgerlm chain faucet 0x", {}),
        (["claim", "--as", "alice"], "give exactly one of --epoch N or --all", {}),
        (["earnings", "nobody"], f"no key named 'nobody' in {home}/keys", {}),
        (["epoch", "verify", "9"], "epoch 9 has no payout tree yet", {}),
        (["epoch", "verify", "1", "--payouts", missing_file], f"cannot read {missing_file}", {}),
        (["epoch", "sweep", "9", "--key", "alice"], "there is no epoch 9", {}),
        (["epoch", "show", "9"], "there is no epoch 9", {}),
        (["apikey", "create", "--as", "alice", "--cap", "abc"], "cap 'abc' is not a number", {}),
        (["apikey", "list", "--consumer", "nobody"], f"no key named 'nobody' in {home}/keys", {}),
        (["apikey", "revoke", "7", "--as", "alice"], "no API key 7", {}),
        (["apikey", "budget", "--key", "sk-lgr-nope"], "unknown API key", {}),
        (["receipts", "list", "--state", "lost"], "unknown state 'lost'", {}),
        (["receipts", "show", "nope"], "no receipt 'nope'", {}),
        (["demo", "--dir", missing_file], "only the quick demo runs here", {}),
        (["eval", "attribution", "--model", "nope"], "unknown model 'nope'", {}),
        (["agent", "create", "bot", "--owner", "nobody", "--budget", "5"], f"no key named 'nobody' in {home}/keys",
         {}),
        *((["agent", verb, "nobot", *extra], "no agent named 'nobot'", {})
          for verb, extra in (("run", ["--task", "x"]), ("audit", []), ("pause", []), ("resume", []), ("show", []),
                              ("policy", ["--budget", "1"]))),
        (["mcp", "--agent", "nobot"], "no agent named 'nobot'", {}),
        (["eval", "attribution", "--out", missing_file + "/x.json"], f"{missing_file} is not a directory", {}),
        (["datanet", "price", "docs", "5", "--as", "alice"], "Datanet 'docs' is public", {}),
        (["datanet", "owner-share", "docs", "20000", "--as", "alice"], "ownerBps must be in [0, 10000]", {}),
        (["shares", "issue", "--datanet", "docs", "--as", "alice"], "Datanet docs has no version", {}),
        (["shares", "preview", "--datanet", "docs"], "Datanet docs has no version", {}),
        *((["shares", verb, "nothing", *extra], "no shares issued for 'nothing'", {})
          for verb, extra in (("show", []), ("holders", []), ("claim", ["--as", "alice"]),
                              ("transfer", ["alice", "1", "--as", "alice"]))),
        (["gateway", "--node", "notaurl"], "--node 'notaurl' is not an http(s) URL", {}),
        (["serve", "--port", "99999"], "port must be between 1 and 65535, not 99999", {}),
        (["node", "forget", "http://nowhere.test:1"], "this home has no pin for http://nowhere.test:1", {}),
        (["node", "trust", "http://127.0.0.1:9"], "cannot reach the node at http://127.0.0.1:9", {}),
        (["gateway", "--node", "http://127.0.0.1:9", "--down-after", "0"], "--down-after must be at least 1", {}),
        (["provider", "offer", "--kind", "bogus", "--price", "1", "--base-model", "tiny", "--hardware", "cpu",
          "--as", "alice"], "kind must be one of train, serve, not 'bogus'", {}),
        (["provider", "list", "--kind", "bogus"], "kind must be one of train, serve, not 'bogus'", {}),
        (["provider", "jobs", "--as", "nobody"], f"no key named 'nobody' in {home}/keys", {}),
        (["provider", "run", "99", "--as", "alice"], "no compute job 99", {}),
        (["provider", "withdraw", "99", "--as", "alice"], "no compute offer 99", {}),
        (["apikey", "cap", "--as", "nobody", "--cap", "1"], f"no key named 'nobody' in {home}/keys", {}),
        (["provider", "submit", str(home / "config.toml"), "--kind", "train", "--pay", "1", "--base-model", "tiny",
          "--as", "alice"],
         "config.toml: not JSON", {}),
    ]
    before_init = f"run `ledgerlm init --home {never}` first"
    no_home = [(cmd, before_init, {}) for cmd in (
        ["info"], ["serve"], ["datanet", "list"], ["chain", "status"], ["models", "list"],
        ["factory", "jobs"], ["epoch", "close"], ["epoch", "list"], ["chain", "index"])]
    no_home.append((["init", "--chain-url", "http://127.0.0.1:9"], "cannot reach an EVM node at http://127.0.0.1:9", {}))
    return ([(["--home", str(home), *args], fragment, env) for args, fragment, env in on_home]
            + [(["--home", str(never), *args], fragment, env) for args, fragment, env in no_home])


@pytest.fixture(scope="module")
def long_home(tmp_path_factory) -> tuple[Path, Path]:
    base = _long_dir(tmp_path_factory.mktemp("piped"))
    home = Home(base / "home")
    node = Node.init(home)
    try:
        Keyring(home.keys).new("alice", "pw")
        owner = Keyring(home.keys).unlock("alice", "pw")
        spec = DatanetSpec(name="docs", schema="documents")
        node.datanets.create(spec, sign_action(owner, "CreateDatanet", {"name": "docs", "specHash": spec.spec_hash()},
                                               domain=node.domain))
    finally:
        node.close()
    (base / "broken.pdf").write_bytes(b"%PDF-1.4\n" + b"garbage " * 50)  # pypdf logs repairs it tries on this
    return home.root, base / "never"


def _run_piped(runs: list[dict], tmp_path: Path, columns: str | None) -> list[tuple[int, str, str]]:
    (tmp_path / "runs.json").write_text(json.dumps(runs))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LEDGERLM_NODE", "LEDGERLM_HOME")}
    env.update(LEDGERLM_PASSPHRASE="pw", PYTHONPATH=os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]))
    if columns is not None:
        env["COLUMNS"] = columns
    with open(tmp_path / "out", "w") as out, open(tmp_path / "err", "w") as err:
        done = subprocess.run([sys.executable, str(DRIVER), str(tmp_path / "runs.json")], stdout=out, stderr=err,
                              stdin=subprocess.DEVNULL, env=env, timeout=600)
    err_text = (tmp_path / "err").read_text()
    assert done.returncode == 0, err_text[-3000:]

    def split(text: str) -> list[tuple[int, str]]:
        parts, current = [], []
        for line in text.splitlines():
            if line.startswith("@@@ "):
                parts.append((int(line.split()[2]), "\n".join(current).strip("\n")))
                current = []
            else:
                current.append(line)
        return parts

    outs, errs = split((tmp_path / "out").read_text()), split(err_text)
    assert len(outs) == len(errs) == len(runs)
    return [(code, out, err) for (code, out), (_, err) in zip(outs, errs)]


def _command_paths(group, prefix=()) -> set[tuple[str, ...]]:
    subcommands = getattr(group, "commands", None)
    if not subcommands:
        return {prefix}
    return set().union(*(_command_paths(sub, (*prefix, name)) for name, sub in subcommands.items()))


def test_every_command_has_an_error_case(tmp_path):
    """A new command joins the list below, or this fails: its error must be checked through a pipe too."""
    import typer.main

    from ledgerlm.cli import app

    home, never = tmp_path / "home", tmp_path / "never"
    covered = set()
    for args, _, _ in _cases(home, never):
        words = [a for a in args[2:] if not a.startswith("-")]
        covered |= {tuple(words[:n]) for n in range(1, len(words) + 1)}
    missing = {" ".join(c) for c in _command_paths(typer.main.get_command(app)) if c not in covered} - NO_ERROR_PATH
    assert not missing, f"commands without an error case: {sorted(missing)}"


@pytest.mark.parametrize("columns", [None, "60"], ids=["no-COLUMNS", "COLUMNS=60"])
def test_every_error_is_one_unbroken_line_through_a_pipe(long_home, tmp_path, columns):
    home, never = long_home
    cases = _cases(home, never)
    # --json output is one orjson line whatever the terminal; checking it once is enough.
    variants = [[]] if columns else [[], ["--json"]]
    runs = [{"args": [*flag, *args], "env": env} for args, _, env in cases for flag in variants]
    results = iter(_run_piped(runs, tmp_path, columns))
    for args, fragment, _ in cases:
        command = " ".join(args[2:])
        code, out, err = next(results)
        assert code == 1 and out == "", f"{command}: exit {code}, stdout {out!r}"
        assert "\n" not in err and err.startswith("error"), f"{command}: stderr is not one error line:\n{err}"
        assert fragment in err, f"{command}: {fragment!r} not in {err!r}"
        if columns:
            continue
        json_code, json_out, json_err = next(results)
        assert json_code == 1 and json_err == "", f"--json {command}: exit {json_code}, stderr {json_err!r}"
        assert "\n" not in json_out, f"--json {command}: not one line:\n{json_out}"
        assert fragment in json.loads(json_out)["error"]["message"]


def test_usage_errors_keep_the_error_on_one_line(long_home, tmp_path):
    home, _ = long_home
    runs = [{"args": ["--home", str(home), "apikey", "revoke", "not-a-number", "--as", "alice"]},
            {"args": ["--home", str(home), "datanet", "accept", "1", "--as"]}]
    results = _run_piped(runs, tmp_path, "60")
    for (code, out, err), fragment in zip(results, ["Invalid value for 'key_id'", "Option '--as' requires an argument"]):
        assert code == 2 and out == ""
        error_lines = [line for line in err.splitlines() if line.startswith("Error:")]
        assert len(error_lines) == 1 and fragment in error_lines[0], err
