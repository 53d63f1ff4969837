"""The app registry, queried through Flower's OWN client function (what the SuperLink calls)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import requests
from flwr.supercore.utils import request_download_link

from fedids.cli import main as fedids_main
from fedids.deploy.registry import AppStore, RegistryServer
from fedids.deploy.signing import build_fab, generate_signing_key, load_private_key, sign_fab

CANARY = Path(__file__).parent / "canary_app"
# flwr 1.42 builds bundles with a pathspec API that warns on every pattern
pytestmark = pytest.mark.filterwarnings("ignore:GitWildMatchPattern:DeprecationWarning")


def _canary_version(tmp_path: Path, version: str, tag: str = "") -> Path:
    app = tmp_path / f"canary-{version}{tag}"
    shutil.copytree(CANARY, app)
    toml = app / "pyproject.toml"
    toml.write_text(toml.read_text().replace('version = "1.0.0"', f'version = "{version}"'))
    return app


@pytest.fixture
def registry(tmp_path):
    server = RegistryServer(AppStore(tmp_path / "store")).serve_in_thread()
    yield server
    server.close()


def test_superlink_client_gets_url_and_signatures(registry, tmp_path):
    private, _ = generate_signing_key(tmp_path, "publisher")
    fab = build_fab(CANARY)
    info = registry.store.add_fab(fab)
    sig = sign_fab(fab, load_private_key(private))
    registry.store.add_signature(info, sig)

    url, verifications, note = request_download_link(
        "@fedids-tests/canary", "1.0.0", f"{registry.url}/hub/fetch-fab", "fab_url"
    )
    assert verifications == [sig.to_dict()] and note is None
    assert requests.get(url, timeout=10).content == fab
    assert registry.served == {"fetch": 1, "download": 1}


def test_latest_version_unknown_app_and_replaced_bytes(registry, tmp_path):
    private, _ = generate_signing_key(tmp_path, "publisher")
    key = load_private_key(private)
    store = registry.store
    for version in ("1.0.0", "1.2.0", "1.10.0"):
        fab = build_fab(_canary_version(tmp_path, version))
        store.add_signature(store.add_fab(fab), sign_fab(fab, key))
    url, _, _ = request_download_link(
        "@fedids-tests/canary", None, f"{registry.url}/hub/fetch-fab", "fab_url"
    )
    assert url.endswith(f"{store.find('@fedids-tests/canary', '1.10.0').info.sha256}.fab")
    with pytest.raises(ValueError, match="not found"):
        request_download_link("@nobody/nothing", "1.0.0", f"{registry.url}/hub/fetch-fab", "x")
    # new bytes under an old version: the old signatures no longer apply and are dropped
    app = _canary_version(tmp_path, "1.2.0", "-changed")
    (app / "canary" / "extra.py").write_text("X = 1\n")
    store.add_fab(build_fab(app))
    assert store.find("@fedids-tests/canary", "1.2.0").signatures == []
    assert requests.get(f"{registry.url}/fabs/{'0' * 64}.fab", timeout=10).status_code == 404


def test_bundle_command_keygen_sign_trust_list(tmp_path, capsys):
    store, signing = tmp_path / "apps", tmp_path / "signing"
    assert fedids_main(["bundle", "keygen", "--out", str(signing), "--name", "rel"]) == 0
    assert fedids_main(["bundle", "keygen", "--out", str(signing), "--name", "rel"]) == 2
    args = ["bundle", "sign", "--key", str(signing / "rel"), "--store", str(store)]
    assert fedids_main([*args, "--app", str(CANARY)]) == 0
    out = capsys.readouterr().out
    assert "flwr run @fedids-tests/canary==1.0.0" in out
    trusted = tmp_path / "trusted.yaml"
    assert fedids_main(["bundle", "trust", str(signing / "rel.pub"), "--out", str(trusted)]) == 0
    capsys.readouterr()
    assert fedids_main(["bundle", "list", "--store", str(store), "--trusted", str(trusted)]) == 0
    assert "VERIFIES" in capsys.readouterr().out
    # the SuperNode auth key is not a signing key: one line naming the file, exit 2
    assert fedids_main(["certs", "--out", str(tmp_path / "k"), "--node-key", "dev"]) == 0
    capsys.readouterr()
    bad = ["bundle", "sign", "--key", str(tmp_path / "k" / "dev"), "--store", str(store)]
    assert fedids_main([*bad, "--app", str(CANARY)]) == 2
    assert "not an unencrypted Ed25519 private key" in capsys.readouterr().err
