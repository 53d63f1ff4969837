"""The device decides: node-config, not the run, says what may leave the site."""

import pytest

from fedids.device.policy import DevicePolicy, PolicyError

FP = "ab" * 32


def _policy(simulation=False, **node):
    base = {"partition-id": 0, "num-partitions": 2}
    base.update(node)
    return DevicePolicy.from_node_config(base, simulation=simulation)


def test_device_with_key_dir_refuses_plain_and_names_the_key():
    p = _policy(**{"key-dir": "/etc/fedids/keys"})
    with pytest.raises(PolicyError, match="allow-plain=true"):
        p.mode("plain")
    assert p.mode("paillier") == "paillier"


def test_allow_plain_lets_the_site_choose_plain():
    assert _policy(**{"key-dir": "/k", "allow-plain": "true"}).mode("plain") == "plain"


def test_deployed_device_without_key_dir_never_makes_keys():
    p = _policy()
    with pytest.raises(PolicyError, match="key-dir is not set"):
        p.mode("paillier")
    with pytest.raises(PolicyError, match="key-dir"):
        p.key_directory("/server/chosen/path")


def test_simulation_makes_keys_in_the_run_directory():
    p = _policy(simulation=True)
    assert p.mode("paillier") == "paillier"
    directory, create = p.key_directory("/runs/r1")
    assert str(directory) == "/runs/r1/keys" and create


def test_key_dir_from_node_config_is_never_created():
    directory, create = _policy(**{"key-dir": "/k"}).key_directory("/runs/r1")
    assert str(directory) == "/k" and not create


def test_eaas_comes_only_with_a_token_file_and_forbids_plain():
    with pytest.raises(PolicyError, match="eaas-token-file"):
        _policy(**{"eaas-url": "https://eaas:8443"})
    p = _policy(**{"eaas-url": "https://eaas:8443", "eaas-token-file": "/t", "key-dir": "/k"})
    assert p.eaas is not None and p.eaas.url == "https://eaas:8443"
    with pytest.raises(PolicyError, match="eaas-url"):
        _policy(**{"eaas-url": "https://e", "eaas-token-file": "/t", "allow-plain": "1"}).mode(
            "plain"
        )


@pytest.mark.parametrize(
    ("node", "match"),
    [
        ({"expected-fingerprint": "abc"}, "64-hex-digit"),
        ({"min-contributors": "0"}, "at least 1"),
        ({"min-contributors": "two"}, "whole number"),
        ({"allow-plain": "maybe"}, "true or false"),
        ({"max-change": "-1"}, "positive"),
        ({"partition-id": 5}, "out of range"),
    ],
)
def test_bad_node_config_is_one_clear_line(node, match):
    with pytest.raises(PolicyError, match=match):
        _policy(**node)


def test_missing_partition_is_explained():
    with pytest.raises(PolicyError, match="partition-id"):
        DevicePolicy.from_node_config({}, simulation=False)


def test_defaults_min_contributors_and_model_directory():
    p = _policy(**{"expected-fingerprint": FP.upper()})
    assert p.expected_fingerprint == FP and p.min_contributors == 2
    assert "run-7" in str(p.model_directory("/server/path", 7))
    assert "/server/path" not in str(p.model_directory("/server/path", 7))
    assert str(_policy(**{"run-dir": "/data/fedids"}).model_directory("/x", 7)) == (
        "/data/fedids/run-7"
    )
    sim = _policy(simulation=True)
    assert str(sim.model_directory("/runs/r1", 7)) == "/runs/r1"
    assert _policy(simulation=True, **{"num-partitions": 1}).min_contributors == 1


def test_outside_a_ray_actor_is_not_a_simulation():
    from fedids.device.policy import running_in_simulation

    assert running_in_simulation() is False
