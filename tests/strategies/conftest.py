"""Keys once per session (1024-bit: the strategy's checks do not depend on the size)."""

from __future__ import annotations

import pytest

from fedids.crypto import vector
from fedids.crypto.keys import generate_keypair


@pytest.fixture(scope="session", autouse=True)
def _stop_pools():
    yield
    vector.shutdown_shared_pools()


@pytest.fixture(scope="session")
def keys():
    return generate_keypair(1024)


@pytest.fixture(scope="session")
def other_keys():
    return generate_keypair(1024)
