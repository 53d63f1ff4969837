"""Run-config keys and Hydra overrides compose into one config; bad ones are refused in one line."""

import pytest
from omegaconf import OmegaConf

from fedids.config import (
    ConfigError,
    compose_config,
    config_dir,
    groups,
    overrides_from_run_config,
    to_plain,
)
from fedids.config_values import RULES


def test_defaults_run_offline():
    cfg = to_plain(compose_config({}))
    assert cfg["mode"]["name"] == "plain"
    assert cfg["dataset"]["name"] == "synthetic"
    assert cfg["classification"]["name"] == "multi"
    assert cfg["partition"]["name"] == "iid"


def test_run_config_keys_map_to_hydra():
    cfg = to_plain(
        compose_config(
            {
                "num-server-rounds": 10,
                "local-epochs": 10,
                "classification": "mult",  # the old system's spelling
                "mode": "paillier",
                "run-dir": "/tmp/some dir/with 'quote'",
                "hydra-overrides": "partition=dirichlet partition.alpha=0.3 dataset.rows=1000",
            }
        )
    )
    assert cfg["num_server_rounds"] == 10
    assert cfg["local_epochs"] == 10
    assert cfg["classification"]["name"] == "multi"
    assert cfg["mode"]["name"] == "paillier"
    assert cfg["mode"]["key_bits"] == 2048
    assert cfg["run_dir"] == "/tmp/some dir/with 'quote'"
    assert cfg["partition"] == {"name": "dirichlet", "alpha": 0.3, "min_records": 50}
    assert cfg["dataset"]["rows"] == 1000


def test_csv_dataset_override():
    cfg = to_plain(
        compose_config(
            {
                "hydra-overrides": "dataset=csv dataset.path=/data/f.csv "
                "dataset.label_column=L dataset.drop_columns=[a,b]"
            }
        )
    )
    assert cfg["dataset"]["path"] == "/data/f.csv"
    assert cfg["dataset"]["label_column"] == "L"
    assert cfg["dataset"]["drop_columns"] == ["a", "b"]


def test_missing_required_value_is_named():
    with pytest.raises(ConfigError, match="dataset.path"):
        compose_config({"hydra-overrides": "dataset=wustl"})


# Each probe: the one line must name the key (and, for values, the value).
PROBES = [
    ({"mode": "foo"}, "run-config mode must be one of paillier, plain, got 'foo'"),
    ({"mode": "ckks"}, "run-config mode must be one of"),
    ({"classification": "ternary"}, "run-config classification must be one of binary, multi"),
    ({"num-server-rounds": 0}, "run-config num-server-rounds must be at least 1, got 0"),
    ({"local-epochs": -2}, "run-config local-epochs must be at least 1, got -2"),
    ({"hydra-overrides": "dataset=nosuch"}, "dataset must be one of csv, .*got 'nosuch'"),
    ({"hydra-overrides": "dataset.path='unclosed"}, "hydra-overrides cannot be parsed"),
    ({"hydra-overrides": "dataset.rows=[1"}, "cannot parse 'dataset.rows=\\[1'"),
    ({"hydra-overrides": "train.lr=abc"}, "^train.lr must be a number, got 'abc'$"),
    ({"hydra-overrides": "train.lr=nan"}, "train.lr must be a finite number, got nan"),
    ({"hydra-overrides": "train.lr=0"}, "train.lr must be greater than 0, got 0"),
    ({"hydra-overrides": "num_server_rounds=0"}, "^num_server_rounds must be at least 1, got 0"),
    ({"hydra-overrides": "num_server_rounds=2.5"}, "num_server_rounds must be an integer"),
    ({"hydra-overrides": "federation.fraction_fit=1.5"}, "fraction_fit must be in \\(0, 1\\]"),
    ({"hydra-overrides": "federation.fraction_fit=0"}, "fraction_fit must be in \\(0, 1\\]"),
    ({"hydra-overrides": "train.val_fraction=1"}, "val_fraction must be in \\[0, 1\\)"),
    ({"hydra-overrides": "train.class_weighting=sqrt"}, "class_weighting must be one of none"),
    ({"hydra-overrides": "model.hidden=[64,abc]"}, "model.hidden\\[1\\] must be an integer"),
    ({"hydra-overrides": "model.hidden=64"}, "model.hidden must be a list, got 64"),
    ({"hydra-overrides": "model.hidden=[]"}, "model.hidden must not be empty"),
    ({"hydra-overrides": "train=3"}, "train is a section .*train.lr"),
    ({"hydra-overrides": "mode=paillier mode.precompute=yes"}, "mode.precompute must be true or"),
    ({"hydra-overrides": "federation.round_timeout=null"}, "round_timeout must be a number"),
    # unknown keys: refused, named, with the nearest known keys
    ({"hydra-overrides": "nonexistent.key=1"}, "unknown key 'nonexistent.key' \\(nearest known"),
    ({"hydra-overrides": "train.lrr=0.1"}, "key 'train.lrr' \\(nearest known keys: train.lr,"),
    ({"hydra-overrides": "hydra.job.name=x"}, "unknown key 'hydra.job.name'"),
    ({"hydra-overrides": "partition.alpha=0.3"}, "alpha is not a setting of partition=iid;"),
    ({"hydra-overrides": "+nonexistent.key=1"}, "adding keys with '\\+' is refused"),
    ({"hydra-overrides": "++nonexistent.key=1"}, "adding keys with '\\+\\+' is refused"),
    ({"hydra-overrides": "+train.lr=0.1"}, "train.lr is a known key, drop the '\\+' \\(train.lr"),
    ({"hydra-overrides": "~train.lr"}, "deleting a key is not allowed"),
    ({"hydra-overrides": "seed=1,2"}, "one value per key, not a sweep"),
]


@pytest.mark.parametrize("run_config, pattern", PROBES, ids=[str(p[0]) for p in PROBES])
def test_bad_values_are_refused_in_one_line(run_config, pattern):
    with pytest.raises(ConfigError, match=pattern) as err:
        compose_config(run_config)
    assert "\n" not in str(err.value)


def test_lossless_conversions_are_applied():
    cfg = to_plain(
        compose_config(
            {
                "run-name": "2024",
                "hydra-overrides": "dataset=csv dataset.path=/x dataset.label_column=L "
                "dataset.normal_label=0 num_server_rounds=2.0",
            }
        )
    )
    assert cfg["dataset"]["normal_label"] == "0"  # labels are compared as text
    assert cfg["num_server_rounds"] == 2 and isinstance(cfg["num_server_rounds"], int)
    assert cfg["run_name"] == "2024"


def test_hydra_overrides_come_last():
    ov = overrides_from_run_config({"mode": "plain", "hydra-overrides": "mode=paillier"})
    assert ov[-1] == "mode=paillier"
    assert (
        to_plain(compose_config({"mode": "plain", "hydra-overrides": "mode=paillier"}))["mode"][
            "name"
        ]
        == "paillier"
    )


def test_every_group_option_passes_its_own_checks():
    """conf/ and the rules agree: each option composes with its defaults (??? filled in)."""
    for group, options in groups().items():
        for option in options:
            try:
                compose_config(overrides=[f"{group}={option}"])
            except ConfigError as exc:
                assert "values missing" in str(exc), (group, option, exc)


def test_every_rule_names_a_key_conf_defines():
    """A rule for a key that conf/ no longer has would silently check nothing."""
    base = OmegaConf.to_container(OmegaConf.load(config_dir() / "config.yaml"))
    for path in RULES:
        head, _, rest = path.partition(".")
        if head in groups():
            docs = [
                OmegaConf.to_container(OmegaConf.load(config_dir() / head / f"{o}.yaml"))
                for o in groups()[head]
            ]
            assert any(rest in d for d in docs), path
        else:
            node = base
            for part in path.split("."):
                assert isinstance(node, dict) and part in node, path
                node = node[part]
