"""The home page counts only what anyone may see: an unpublished model of a private Datanet is not counted."""

from __future__ import annotations

from sqlalchemy import insert, update

from ledgerlm.datanets import DatanetSpec
from ledgerlm.identity import sign_action
from ledgerlm.node import Node
from ledgerlm.store.schema import datanets, models
from ledgerlm.web.overview import overview
from tests.datanets.conftest import QA_SCHEMA
from tests.economy.helpers import key


def test_an_unpublished_model_of_a_private_datanet_is_not_counted_on_the_home_page(home):
    node = Node.open(home)
    try:
        owner = key("owner")
        for name, visibility in (("open", "public"), ("secret", "private")):
            spec = DatanetSpec(name=name, schema=QA_SCHEMA)
            node.datanets.create(spec, sign_action(owner, "CreateDatanet", {"name": name, "specHash": spec.spec_hash()},
                                                   domain=node.domain))
            with node.db.begin() as conn:
                conn.execute(update(datanets).where(datanets.c.name == name).values(visibility=visibility))
                conn.execute(insert(models).values(
                    id=f"{name}-m", developer=owner.address, base_model="tiny", datanet=name, version=1,
                    version_root="0x" + "11" * 32, card={}, metrics={}, path="/nonexistent", created_at=0))
        assert [m.id for m in overview(node)["models"]] == ["open-m"]
    finally:
        node.close()
