"""An opened node on the test's home, closed after the test."""

import pytest

from ledgerlm.node import Node


@pytest.fixture
def node(home):
    n = Node.open(home)
    yield n
    n.close()
