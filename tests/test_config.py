"""Run-config keys and Hydra overrides compose into one config."""

import pytest

from fedids.config import ConfigError, compose_config, overrides_from_run_config, to_plain


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


@pytest.mark.parametrize(
    "run_config, fragment",
    [
        ({"classification": "ternary"}, "classification"),
        ({"mode": "ckks"}, "mode"),
        ({"num-server-rounds": 0}, "num-server-rounds"),
        ({"hydra-overrides": "dataset=nosuch"}, "dataset must be one of .*nosuch"),
        ({"hydra-overrides": "dataset.path='unclosed"}, "hydra-overrides"),
    ],
)
def test_bad_values_are_rejected_clearly(run_config, fragment):
    with pytest.raises(ConfigError, match=fragment):
        compose_config(run_config)


def test_hydra_overrides_come_last():
    ov = overrides_from_run_config({"mode": "plain", "hydra-overrides": "mode=paillier"})
    assert ov[-1] == "mode=paillier"
    assert (
        to_plain(compose_config({"mode": "plain", "hydra-overrides": "mode=paillier"}))["mode"][
            "name"
        ]
        == "paillier"
    )
