"""Model loads in one process take turns: transformers patches process-wide functions while it loads and puts them
back after, so two loads at once put back each other's patches (`tie_weights` emptied for good, and every later
load of a model with tied embeddings left its head on the meta device)."""

from __future__ import annotations

import threading

import pytest
from tests.loops import at_once

pytest.importorskip("torch")


def test_loads_at_once_take_turns_and_a_load_after_them_is_whole(tiny_base):
    from ledgerlm.factory.loading import load_base_model, pick_device

    loaded = []
    errors = at_once(lambda: loaded.append(load_base_model(tiny_base, pick_device("cpu"))), [()] * 3)
    after = load_base_model(tiny_base, pick_device("cpu"))
    assert errors == [] and len(loaded) == 3
    for model in [*loaded, after]:
        assert all(p.device.type == "cpu" for p in model.parameters())  # none left on the meta device


def test_from_pretrained_callers_never_overlap():
    import time

    from ledgerlm.factory.loading import from_pretrained

    class Probe:
        inside = most = 0

        @classmethod
        def from_pretrained(cls, *_args, **_kwargs):
            cls.inside += 1
            cls.most = max(cls.most, cls.inside)
            time.sleep(0.02)
            cls.inside -= 1

    assert at_once(from_pretrained, [(Probe,)] * 6) == []
    assert Probe.most == 1


def test_submits_ending_together_start_one_training_worker(tmp_path):
    from ledgerlm.factory.jobs import ModelFactory

    factory = ModelFactory.__new__(ModelFactory)  # only the worker's bookkeeping is exercised
    factory._wake, factory._worker, factory._worker_lock = threading.Event(), None, threading.Lock()
    started, release = [], threading.Event()

    def run():
        started.append(threading.current_thread())
        release.wait(5)

    factory._run = run
    assert at_once(factory._start_worker, [()] * 8) == []
    release.set()
    factory._worker.join(5)
    assert len(started) == 1
