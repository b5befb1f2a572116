"""The node keeps a bounded number of attributors loaded (each holds a float64 copy of its base model), the least
recently used leaving first, and loads one model once however many first requests arrive together."""

from __future__ import annotations

import threading
import time

from sqlalchemy import insert

from ledgerlm.node import Node
from ledgerlm.store.schema import models


def test_at_most_the_configured_attributors_stay_loaded_and_each_loads_once(home, monkeypatch):
    import ledgerlm.attribution as attribution
    import ledgerlm.factory.basemodels as basemodels
    import ledgerlm.factory.jobs  # noqa: F401 - imported now, it binds the real get_model, not the stand-in below

    config = home.load_config()
    config.attributors_warm = 2
    home.save_config(config)
    loads = []

    def load(path, base):
        time.sleep(0.2)  # long enough for requests arriving together to overlap
        loads.append(path.name)
        return object()

    monkeypatch.setattr(attribution, "load_attributor", load)
    monkeypatch.setattr(basemodels, "get_model", lambda models_dir, name: None)
    node = Node.open(home)
    try:
        with node.db.begin() as conn:
            for name in ("m1", "m2", "m3"):
                conn.execute(insert(models).values(
                    id=name, developer="0x" + "11" * 20, base_model="tiny", datanet="d", version=1,
                    version_root="0x" + "11" * 32, card={}, metrics={}, path=f"/nonexistent/{name}", created_at=0))
        together = [threading.Thread(target=node.attributor, args=("m1",)) for _ in range(4)]
        for t in together:
            t.start()
        for t in together:
            t.join()
        assert loads == ["m1"]
        node.attributor("m2")
        node.attributor("m1")  # used again: m2 is now the least recently used
        node.attributor("m3")
        assert list(node._attributors) == ["m1", "m3"] and loads == ["m1", "m2", "m3"]
        node.attributor("m2")
        assert loads[-1] == "m2" and list(node._attributors) == ["m3", "m2"]
    finally:
        node.close()
