"""Key files: format, 0600 from creation, no overwrite, lock-protected creation, CLI."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import stat

import pytest

from fedids.crypto import keys
from fedids.crypto.keys import (
    KeyFileError,
    ensure_keypair,
    fingerprint,
    load_private_key,
    load_public_key,
    save_keypair,
)


@pytest.fixture
def open_umask():
    """A permissive umask: the 0600 must come from the code, not the environment."""
    old = os.umask(0)
    yield
    os.umask(old)


def test_fingerprint_is_sha256_of_n_bytes(keys512):
    pub, _ = keys512
    raw = pub.n.to_bytes((pub.n.bit_length() + 7) // 8, "big")
    assert fingerprint(pub) == hashlib.sha256(raw).hexdigest()


def test_save_and_load_round_trip(tmp_path, keys512):
    pub, priv = keys512
    save_keypair(tmp_path, pub, priv)
    assert load_public_key(tmp_path).n == pub.n
    loaded = load_private_key(tmp_path)
    assert (loaded.p, loaded.q) == (priv.p, priv.q)
    assert loaded.raw_decrypt(pub.raw_encrypt(42)) == 42
    doc = json.loads((tmp_path / "public.json").read_text())
    assert doc["format"] == "fedids-paillier-public/1" and doc["bits"] == 512
    assert "p" not in doc and "q" not in doc
    assert json.loads((tmp_path / "private.json").read_text())["format"] == (
        "fedids-paillier-private/1"
    )


def test_private_file_is_0600_from_creation(tmp_path, keys512, open_umask, monkeypatch):
    pub, priv = keys512

    def no_chmod(*args, **kwargs):
        raise AssertionError("key files must get their mode at creation, not by chmod")

    monkeypatch.setattr(os, "chmod", no_chmod)
    monkeypatch.setattr(os, "fchmod", no_chmod)
    created_modes = {}
    real_open = os.open

    def recording_open(path, flags, mode=0o777, *args, **kwargs):
        if flags & os.O_CREAT:
            created_modes[os.fspath(path)] = mode
        return real_open(path, flags, mode, *args, **kwargs)

    monkeypatch.setattr(os, "open", recording_open)
    save_keypair(tmp_path / "k", pub, priv)
    assert stat.S_IMODE((tmp_path / "k" / "private.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "k" / "public.json").stat().st_mode) == 0o644
    assert any(m == 0o600 for p, m in created_modes.items() if "private.json" in p)
    assert not [p for p in os.listdir(tmp_path / "k") if p.endswith(".tmp")]


def test_refuses_to_overwrite_unless_asked(tmp_path, keys512, other_keys1024):
    pub, priv = keys512
    save_keypair(tmp_path, pub, priv)
    with pytest.raises(FileExistsError, match="not overwriting"):
        save_keypair(tmp_path, *other_keys1024)
    assert load_public_key(tmp_path).n == pub.n
    save_keypair(tmp_path, *other_keys1024, overwrite=True)
    assert load_public_key(tmp_path).n == other_keys1024[0].n
    assert stat.S_IMODE((tmp_path / "private.json").stat().st_mode) == 0o600


def test_tampered_files_are_refused(tmp_path, keys512):
    pub, priv = keys512
    save_keypair(tmp_path, pub, priv)
    doc = json.loads((tmp_path / "private.json").read_text())
    doc["q"] = format(priv.q + 2, "x")
    (tmp_path / "private.json").write_text(json.dumps(doc))
    with pytest.raises(KeyFileError, match="p\\*q"):
        load_private_key(tmp_path)
    doc = json.loads((tmp_path / "public.json").read_text())
    doc["fingerprint"] = "00" * 32
    (tmp_path / "public.json").write_text(json.dumps(doc))
    with pytest.raises(KeyFileError, match="fingerprint"):
        load_public_key(tmp_path)


def test_repr_shows_no_key_material(keys512):
    pub, priv = keys512
    for text in (repr(pub), repr(priv), str(priv)):
        assert format(priv.p, "x") not in text and format(pub.n, "x") not in text


def test_ensure_keypair_creates_once_then_loads(tmp_path, monkeypatch):
    pub, priv = ensure_keypair(tmp_path / "keys", 512)
    assert stat.S_IMODE((tmp_path / "keys" / "private.json").stat().st_mode) == 0o600
    monkeypatch.setattr(keys, "generate_keypair", lambda bits: pytest.fail("regenerated"))
    pub2, priv2 = ensure_keypair(tmp_path / "keys", 512)
    assert pub2.n == pub.n and priv2.p == priv.p
    with pytest.raises(KeyFileError, match="512-bit key, 1024 bits"):
        ensure_keypair(tmp_path / "keys", 1024)


def test_ensure_keypair_refuses_public_without_private(tmp_path, keys512):
    save_keypair(tmp_path, *keys512)
    (tmp_path / "private.json").unlink()
    with pytest.raises(KeyFileError, match="no private.json"):
        ensure_keypair(tmp_path, 512)


def _race(directory: str, barrier, queue) -> None:
    barrier.wait()
    try:
        pub, _ = ensure_keypair(directory, 1024)
        queue.put(fingerprint(pub))
    except Exception as exc:  # reported to the parent
        queue.put(f"error: {exc!r}")


def test_concurrent_ensure_keypair_agrees_on_one_key(tmp_path):
    """Two simulated devices starting at once must end up with the same key pair."""
    ctx = multiprocessing.get_context("spawn")
    barrier, queue = ctx.Barrier(3), ctx.Queue()
    procs = [
        ctx.Process(target=_race, args=(str(tmp_path / "k"), barrier, queue)) for _ in range(3)
    ]
    for p in procs:
        p.start()
    try:
        results = [queue.get(timeout=60) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=60)
    assert all(not r.startswith("error") for r in results), results
    assert len(set(results)) == 1
    assert results[0] == fingerprint(load_public_key(tmp_path / "k"))


def test_keygen_cli(tmp_path, capsys):
    from fedids.cli import main

    out = tmp_path / "keys"
    assert main(["keygen", "--bits", "2048", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    pub = load_public_key(out)
    priv = load_private_key(out)
    assert pub.n.bit_length() == 2048
    assert fingerprint(pub) in printed
    for secret in (format(pub.n, "x"), format(priv.p, "x"), format(priv.q, "x")):
        assert secret[:32] not in printed
    assert stat.S_IMODE((out / "private.json").stat().st_mode) == 0o600

    assert main(["keygen", "--out", str(out)]) == 1  # refuses to overwrite
    assert "--force" in capsys.readouterr().err
    assert load_public_key(out).n == pub.n
    assert main(["keygen", "--out", str(out), "--force"]) == 0
    assert load_public_key(out).n != pub.n
    with pytest.raises(SystemExit):
        main(["keygen", "--bits", "1024", "--out", str(tmp_path / "weak")])
    assert not (tmp_path / "weak").exists()


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_private_file_readable_by_others_is_refused(tmp_path, keys512, mode):
    pub, priv = keys512
    save_keypair(tmp_path, pub, priv)
    file = tmp_path / "private.json"
    os.chmod(file, mode)
    with pytest.raises(KeyFileError) as err:
        load_private_key(tmp_path)
    message = str(err.value)
    assert str(file) in message and f"chmod 600 {file}" in message and f"{mode:04o}" in message
    _assert_no_key_material(message, priv)
    with pytest.raises(KeyFileError, match="readable by group or others"):
        ensure_keypair(tmp_path, 512)
    os.chmod(file, 0o600)
    assert load_private_key(tmp_path).p == priv.p


def _assert_no_key_material(text: str, priv) -> None:
    n = priv.public_key.n
    for secret in (priv.p, priv.q, n):
        for form in (format(secret, "x"), format(secret, "X"), str(secret)):
            assert form[:12] not in text, "key material in an error message"


def _broken_private_docs(priv):
    n, p, q = priv.public_key.n, priv.p, priv.q
    good = {
        "format": "fedids-paillier-private/1",
        "bits": n.bit_length(),
        "n": format(n, "x"),
        "p": format(p, "x"),
        "q": format(q, "x"),
        "fingerprint": keys.fingerprint_of_n(n),
    }
    yield "not json " + format(p, "x")
    yield json.dumps({**good, "format": "x"})
    yield json.dumps({**good, "n": "zz" + format(p, "x")})
    yield json.dumps({**good, "bits": 7})
    yield json.dumps({**good, "p": "g" + format(p, "x")})
    yield json.dumps({**good, "q": format(q + 2, "x")})
    yield json.dumps({**good, "p": format(p, "x"), "q": format(p, "x")})
    yield json.dumps({**good, "p": format(n, "x"), "q": "1"})
    yield json.dumps({k: v for k, v in good.items() if k != "q"})
    yield json.dumps([good["p"], good["q"]])
    yield "\xff\xfe" + format(p, "x")


def test_no_error_on_a_private_key_file_carries_key_material(tmp_path, keys512):
    """Every refusal names the file and the problem, never p, q or n (Flower logs errors and
    sends them to the SuperLink)."""
    pub, priv = keys512
    for i, text in enumerate(_broken_private_docs(priv)):
        d = tmp_path / f"k{i}"
        d.mkdir()
        fd = os.open(d / "private.json", os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w", errors="surrogateescape") as fh:
            fh.write(text)
        with pytest.raises((KeyFileError, ValueError)) as err:
            load_private_key(d)
        assert str(d / "private.json") in str(err.value)
        _assert_no_key_material(str(err.value), priv)
        # nothing that held the file's content is kept, not even as suppressed context
        assert err.value.__cause__ is None and err.value.__context__ is None
