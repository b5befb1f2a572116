"""`ledgerlm factory train`: the schedule and optimizer flags reach the training config, and the help states its defaults."""

import re

import pytest
from typer.testing import CliRunner

from ledgerlm.cli import app


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.setenv("LEDGERLM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LEDGERLM_PASSPHRASE", "pw")
    monkeypatch.delenv("LEDGERLM_NODE", raising=False)
    runner = CliRunner()
    assert runner.invoke(app, ["init"], catch_exceptions=False).exit_code == 0
    assert runner.invoke(app, ["keys", "new", "dev"], catch_exceptions=False).exit_code == 0
    return lambda *args: runner.invoke(app, list(args), catch_exceptions=False)


def train(cli, *flags):
    return cli("--json", "factory", "train", "--datanet", "nowhere", "--version", "1", "--as", "dev", *flags)


def test_valid_schedule_flags_pass_validation_and_bad_ones_name_the_setting(cli):
    # Settings are checked before the base model is looked up, so a missing model means they passed.
    ok = train(cli, "--scheduler", "cosine", "--warmup", "0.1", "--max-grad-norm", "0.5", "--weight-decay", "0.01")
    assert ok.exit_code == 1 and "no base model" in ok.output, ok.output
    for flag, value, named in (("--scheduler", "sawtooth", "scheduler"), ("--warmup", "1.5", "warmup"),
                               ("--max-grad-norm", "-1", "max_grad_norm"), ("--weight-decay", "-0.1", "weight_decay")):
        bad = train(cli, flag, value)
        assert bad.exit_code == 1 and named in bad.output, (flag, bad.output)


def test_help_states_the_training_config_defaults(cli):
    from ledgerlm.factory import TrainConfig

    text = " ".join(cli("factory", "train", "--help").output.split())
    text = re.sub(r"[│╭╮╰╯─]", " ", text)
    text = " ".join(text.split())
    defaults = TrainConfig()
    for name in ("rank", "epochs", "batch_size", "max_len", "scheduler"):
        assert f"[default: {getattr(defaults, name)}]" in text, name
    assert f"[default: {defaults.lr:g}]" in text
    assert defaults.max_grad_norm is None and "[default: no clipping]" in text
    assert "Examples per optimizer step" in text
