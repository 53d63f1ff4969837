"""Signatures made by fedids.deploy.signing, checked by Flower's OWN device-side code.

The SuperNode's check (``_verify_fab``) and the SuperLink's formatting of registry answers
(``_format_verification``) are imported from flwr 1.42 itself, so these tests fail if our
signatures stop being what a real device accepts.
"""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest
import yaml
from deploy_helpers import REPO
from flwr.supercore.fab import Fab
from flwr.superlink.servicer.control.control_handlers import _format_verification
from flwr.supernode.cli.flower_supernode import (
    _try_obtain_trusted_entities,
    _validate_public_keys_ed25519,
)
from flwr.supernode.start_client_internal import _verify_fab

from fedids.deploy.certs import make_supernode_key
from fedids.deploy.signing import (
    SigningError,
    build_fab,
    fab_info,
    generate_signing_key,
    key_id,
    load_private_key,
    load_public_key,
    sign_fab,
    verify_fab,
    write_trusted_entities,
)

CANARY = Path(__file__).parent / "canary_app"
# flwr 1.42 builds bundles with a pathspec API that warns on every pattern
pytestmark = pytest.mark.filterwarnings("ignore:GitWildMatchPattern:DeprecationWarning")


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    out = tmp_path_factory.mktemp("signing")
    trusted = generate_signing_key(out, "publisher")
    stranger = generate_signing_key(out, "stranger")
    entities = write_trusted_entities(out / "trusted.yaml", [trusted[1]])
    return trusted, stranger, entities


def device_accepts(fab: bytes, signatures, entities: Path) -> bool:
    """What a SuperNode started with ``--trusted-entities entities`` decides (Flower's code)."""
    trusted = _try_obtain_trusted_entities(entities)
    _validate_public_keys_ed25519(trusted)  # the SuperNode refuses to start otherwise
    verifications = _format_verification([s.to_dict() for s in signatures])
    return _verify_fab(Fab(hashlib.sha256(fab).hexdigest(), fab, verifications), trusted)


def test_keygen_writes_private_0600_and_an_ed25519_public_line(keys):
    (private, public), _, _ = keys
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert public.read_text().startswith("ssh-ed25519 ")
    assert key_id(load_public_key(public)) == key_id(load_private_key(private).public_key())
    assert key_id(load_public_key(public)).startswith("fpk_")


def test_trusted_entities_file_is_what_flower_supernode_reads(keys):
    (_, public), _, entities = keys
    doc = yaml.safe_load(entities.read_text())
    assert doc == {key_id(load_public_key(public)): public.read_text().split(" fedids-")[0]}


def test_signed_by_trusted_key_is_accepted_by_the_device_check(keys):
    (private, _), _, entities = keys
    fab = build_fab(CANARY)
    sig = sign_fab(fab, load_private_key(private))
    assert device_accepts(fab, [sig], entities)
    assert verify_fab(fab, sig, load_private_key(private).public_key())


def test_unknown_key_forged_id_tampered_bundle_and_no_signature_are_refused(keys):
    (private, _), (stranger, _), entities = keys
    fab = build_fab(CANARY)
    trusted_id = key_id(load_private_key(private).public_key())
    foreign = sign_fab(fab, load_private_key(stranger))
    forged = sign_fab(fab, load_private_key(stranger), claim_key_id=trusted_id)
    genuine = sign_fab(fab, load_private_key(private))
    assert not device_accepts(fab, [foreign], entities)
    assert not device_accepts(fab, [forged], entities)
    assert not device_accepts(fab + b"\0", [genuine], entities)  # other bytes, same signature
    assert not device_accepts(fab, [], entities)
    # a genuine signature among bad ones is enough (Flower: at least one trusted signer)
    assert device_accepts(fab, [forged, genuine], entities)


def test_signed_at_is_part_of_the_signed_message(keys):
    (private, _), _, entities = keys
    fab = build_fab(CANARY)
    sig = sign_fab(fab, load_private_key(private), signed_at=1_700_000_000)
    moved = type(sig)(sig.public_key_id, sig.signature, sig.signed_at + 1)
    assert device_accepts(fab, [sig], entities)
    assert not device_accepts(fab, [moved], entities)


def test_non_ed25519_keys_are_refused_with_the_file_named(tmp_path):
    private, public = make_supernode_key(tmp_path, "ecdsa")  # a SuperNode auth key (P-384)
    with pytest.raises(SigningError, match=str(private)):
        load_private_key(private)
    with pytest.raises(SigningError, match="ssh-ed25519"):
        load_public_key(public)
    with pytest.raises(SigningError, match="at least one"):
        write_trusted_entities(tmp_path / "t.yaml", [])


def test_bundle_metadata_gives_the_app_spec():
    info = fab_info(build_fab(REPO))
    assert info.app_id == "@fedids/fedids" and info.spec.startswith("@fedids/fedids==")
    assert fab_info(build_fab(CANARY)).spec == "@fedids-tests/canary==1.0.0"
    with pytest.raises(SigningError, match="not a Flower app bundle"):
        fab_info(b"not a zip", "junk.fab")
