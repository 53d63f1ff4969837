"""True end-to-end runs: `flwr run` against a simulation SuperLink we start and stop.

Few and small (2 devices, 2 rounds, small data): Ray start-up dominates their time.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedids.cli import main as fedids_main
from fedids.model import load_detector
from fedids.simulation import simulation_link

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
SMALL = "dataset.rows=40000"


@pytest.fixture(scope="module")
def link():
    with simulation_link(num_supernodes=2, num_cpus=1) as link:
        yield link


def _run(link, run_dir: Path, name: str, run_config: str) -> dict:
    result = link.run(
        ROOT, f"{run_config} run-dir='{run_dir}' run-name='{name}'", timeout=600, echo=False
    )
    assert result.returncode == 0, result.stdout[-3000:]
    metrics_path = run_dir / name / "metrics.json"
    assert metrics_path.is_file(), result.stdout[-3000:]
    doc = json.loads(metrics_path.read_text())
    assert doc["status"] == "completed"
    return doc


def _check_round_records(doc: dict, rounds: int, classes: list[str]) -> None:
    assert [r["round"] for r in doc["rounds"]] == list(range(1, rounds + 1))
    for r in doc["rounds"]:
        for key in (
            "accuracy",
            "macro_f1",
            "false_positive_rate",
            "round_seconds",
            "upload_bytes_per_client",
            "confusion_matrix",
            "per_class",
        ):
            assert key in r, key
        assert list(r["per_class"]) == classes
        for c in classes:
            assert set(r["per_class"][c]) >= {"precision", "recall", "f1"}
        assert len(r["confusion_matrix"]) == len(classes)
        assert r["round_seconds"] > 0 and r["upload_bytes_per_client"] > 0


def test_plain_multi_on_a_users_csv(link, tmp_path):
    """A user's own labelled CSV via hydra-overrides (here: synthetic flows written to disk)."""
    csv = tmp_path / "flows.csv"
    assert fedids_main(["synth", "--rows", "40000", "--seed", "11", "--out", str(csv)]) == 0
    overrides = (
        f"dataset=csv dataset.path={csv} dataset.label_column=Traffic "
        "dataset.drop_columns=[StartTime,LastTime,SrcAddr,DstAddr,sIpId,dIpId,Target] "
        "dataset.classes=[normal,DoS,Reconn,CommInj,Backdoor]"
    )
    doc = _run(
        link,
        tmp_path / "runs",
        "csv-plain",
        f"mode='plain' classification='multi' num-server-rounds=2 hydra-overrides='{overrides}'",
    )
    _check_round_records(doc, 2, ["normal", "DoS", "Reconn", "CommInj", "Backdoor"])
    det = load_detector(tmp_path / "runs" / "csv-plain" / "model.pt")
    assert det.class_names == ["normal", "DoS", "Reconn", "CommInj", "Backdoor"]
    assert len(det.feature_names) == 41
    assert (tmp_path / "runs" / "csv-plain" / "config.yaml").is_file()


def test_paillier_matches_plain(link, tmp_path):
    """Same seed, same rounds: Paillier's first global model scores as plain's (within 0.005
    macro-F1: the same FedAvg up to the codec's bound), upload <= 1.5x.

    Later rounds train on models that differ by that bound (a few 1e-6), and training
    amplifies it: measured in-process on this workload, round 2 differs by 0.0074 with
    16-bit values, 0.0055 with 12 and 0.0000 with 24. The closeness of later rounds is
    therefore checked loosely here; docs/paillier.md reports the measured spread."""
    common = f"classification='binary' num-server-rounds=2 hydra-overrides='{SMALL}'"
    plain = _run(link, tmp_path / "runs", "plain", f"mode='plain' {common}")
    paillier = _run(link, tmp_path / "runs", "paillier", f"mode='paillier' {common}")
    _check_round_records(plain, 2, ["normal", "attack"])
    _check_round_records(paillier, 2, ["normal", "attack"])
    first_p, first_e = plain["rounds"][0], paillier["rounds"][0]
    assert abs(first_p["macro_f1"] - first_e["macro_f1"]) <= 0.005
    last_p, last_e = plain["rounds"][-1], paillier["rounds"][-1]
    assert abs(last_p["macro_f1"] - last_e["macro_f1"]) <= 0.02
    assert last_e["upload_bytes_per_client"] <= 1.5 * last_p["upload_bytes_per_client"]
    assert last_e["encrypt_seconds"] > 0
    # the server never wrote a plaintext model in Paillier mode; devices did
    run = tmp_path / "runs" / "paillier"
    assert not (run / "global_parameters.npz").exists()
    assert (run / "model.pt").is_file()
    assert oct((run / "keys" / "private.json").stat().st_mode & 0o777) == "0o600"
