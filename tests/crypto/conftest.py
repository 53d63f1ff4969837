"""Key pairs generated once per session; worker pools stopped at the end."""

from __future__ import annotations

import pytest

from fedids.crypto import vector
from fedids.crypto.codec import CodecParams
from fedids.crypto.keys import generate_keypair


@pytest.fixture(scope="session", autouse=True)
def _stop_pools():
    yield
    vector.shutdown_shared_pools()


@pytest.fixture(scope="session")
def keys2048():
    """Production size, for properties that depend on it (slots, widths, compat)."""
    return generate_keypair(2048)


@pytest.fixture(scope="session")
def keys1024():
    """Faster keys where the property does not depend on the size."""
    return generate_keypair(1024)


@pytest.fixture(scope="session")
def other_keys1024():
    return generate_keypair(1024)


@pytest.fixture(scope="session")
def keys512():
    return generate_keypair(512)


@pytest.fixture
def params1024():
    return CodecParams(key_bits=1024).validate()


@pytest.fixture
def params512():
    return CodecParams(key_bits=512).validate()
