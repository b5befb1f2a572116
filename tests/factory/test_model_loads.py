"""Model loads in one process take turns: transformers patches process-wide functions while it loads and puts them
back after, so two loads at once put back each other's patches (`tie_weights` emptied for good, and every later
load of a model with tied embeddings left its head on the meta device)."""

from __future__ import annotations

import threading

import pytest

pytest.importorskip("torch")


def test_loads_at_once_take_turns_and_a_load_after_them_is_whole(tiny_base):
    from ledgerlm.factory.loading import load_base_model, pick_device

    loaded, errors = [], []

    def load():
        try:
            loaded.append(load_base_model(tiny_base, pick_device("cpu")))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
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

    threads = [threading.Thread(target=from_pretrained, args=(Probe,)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
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
    callers = [threading.Thread(target=factory._start_worker) for _ in range(8)]
    for t in callers:
        t.start()
    for t in callers:
        t.join()
    release.set()
    factory._worker.join(5)
    assert len(started) == 1
