"""The synthetic generator: schema, determinism, proportions, realism, difficulty."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterator

import numpy as np
import polars as pl
import pytest
import torch
from data_helpers import best_threshold_balanced_accuracy

from fedids.data.features import Scaler
from fedids.data.schema import (
    WUSTL_CLASS_COUNTS,
    WUSTL_CLASSES,
    WUSTL_COLUMNS,
    WUSTL_FEATURES,
    WUSTL_TOTAL_RECORDS,
)
from fedids.data.synth import (
    CAPTURE_SECONDS,
    SYNTHETIC_NETWORKS,
    class_counts,
    generate,
    looks_synthetic,
)


@pytest.fixture(scope="module")
def flows() -> pl.DataFrame:
    return generate(100_000, 11)


@pytest.fixture(scope="module")
def labels(flows: pl.DataFrame) -> np.ndarray:
    return flows["Traffic"].replace_strict({c: i for i, c in enumerate(WUSTL_CLASSES)}).to_numpy()


def test_schema_and_types(small_flows: pl.DataFrame) -> None:
    assert small_flows.columns == WUSTL_COLUMNS
    for name in ("SrcAddr", "DstAddr", "Traffic"):
        assert small_flows.schema[name] == pl.String
    for name in WUSTL_FEATURES + ["StartTime", "LastTime", "Target"]:
        assert small_flows.schema[name].is_numeric(), name
    feats = small_flows.select(WUSTL_FEATURES).to_numpy()
    assert np.isfinite(feats).all() and (feats >= 0).all()


def test_deterministic_per_seed() -> None:
    a, b, c = generate(3000, 1), generate(3000, 1), generate(3000, 2)
    assert a.equals(b)
    assert not a.equals(c)


@pytest.mark.parametrize("rows", [1, 5, 17, 100, 2500, 300_000, WUSTL_TOTAL_RECORDS])
def test_class_counts_are_exact_proportions(rows: int) -> None:
    counts = class_counts(rows)
    assert list(counts) == WUSTL_CLASSES and sum(counts.values()) == rows
    if rows >= len(WUSTL_CLASSES):
        assert min(counts.values()) >= 1
    if rows >= 2500:
        for name, n in counts.items():
            assert abs(n - rows * WUSTL_CLASS_COUNTS[name] / WUSTL_TOTAL_RECORDS) < 1, name
    if rows == WUSTL_TOTAL_RECORDS:
        assert counts == WUSTL_CLASS_COUNTS


def test_300k_rows_have_the_documented_class_counts() -> None:
    assert class_counts(300_000) == {
        "normal": 278_145, "DoS": 19_667, "Reconn": 2_070, "CommInj": 65, "Backdoor": 53
    }  # fmt: skip


def test_generated_labels_follow_class_counts(small_flows: pl.DataFrame) -> None:
    got = dict(small_flows["Traffic"].value_counts().iter_rows())
    assert got == class_counts(1500)
    assert (small_flows["Target"] == (small_flows["Traffic"] != "normal").cast(pl.Int64)).all()


def test_columns_are_consistent_with_each_other(flows: pl.DataFrame) -> None:
    f = flows
    assert (f["TotPkts"] == f["SrcPkts"] + f["DstPkts"]).all()
    assert (f["TotBytes"] == f["SrcBytes"] + f["DstBytes"]).all()
    assert (f["TotAppByte"] == f["SAppBytes"] + f["DAppBytes"]).all()
    assert np.allclose(f["LastTime"] - f["StartTime"], f["Dur"], atol=2e-6)
    assert (f["Min"] <= f["Mean"] + 1e-6).all() and (f["Mean"] <= f["Max"] + 1e-6).all()
    assert (f["Max"] <= f["Sum"] + 1e-6).all() and (f["Sum"] <= f["Dur"] + 1e-6).all()
    assert f["Sport"].is_between(0, 65535).all() and f["Dport"].is_between(0, 65535).all()
    assert set(f["Proto"].unique().to_list()) <= {1, 6, 17}
    assert (f["StartTime"].diff().drop_nulls() >= 0).all()  # capture order
    assert f["SrcPkts"].min() >= 1


def test_attacks_reuse_few_sources_and_target_plcs(flows: pl.DataFrame) -> None:
    attacks = flows.filter(pl.col("Traffic") != "normal")
    assert attacks["SrcAddr"].n_unique() <= 3
    assert set(attacks["SrcAddr"].unique()).isdisjoint(
        flows.filter(pl.col("Traffic") == "normal")["SrcAddr"].unique()
    )
    dos = flows.filter(pl.col("Traffic") == "DoS")
    assert dos["DstAddr"].n_unique() <= 3
    assert (dos["Dport"] == 502).mean() > 0.7
    assert (flows.filter(pl.col("Traffic") == "CommInj")["Dport"] == 502).all()
    # Modbus is also the bulk of normal traffic: the port alone does not give attacks away
    assert (flows.filter(pl.col("Traffic") == "normal")["Dport"] == 502).mean() > 0.4


def test_dos_happens_in_bursts(flows: pl.DataFrame) -> None:
    start = flows.filter(pl.col("Traffic") == "DoS")["StartTime"].to_numpy()
    hours_with_dos = np.unique(((start - start.min()) // 3600).astype(int))
    assert len(hours_with_dos) <= 8  # at most 4 half-hour windows, each touching <= 2 hours
    normal = flows.filter(pl.col("Traffic") == "normal")["StartTime"].to_numpy()
    assert normal.max() - normal.min() > 0.9 * CAPTURE_SECONDS


def test_addresses_are_documentation_ranges(flows: pl.DataFrame) -> None:
    for name in ("SrcAddr", "DstAddr"):
        for a in flows[name].unique().to_list():
            assert any(ipaddress.ip_address(a) in net for net in SYNTHETIC_NETWORKS), a
    assert looks_synthetic(flows["SrcAddr"].head(50).to_list())
    assert not looks_synthetic(["192.0.2.1", "10.1.2.3"])
    assert not looks_synthetic(["not-an-ip"])
    assert not looks_synthetic([])


def test_no_single_column_separates_attacks(flows: pl.DataFrame, labels: np.ndarray) -> None:
    x = flows.select(WUSTL_FEATURES).to_numpy().astype(np.float64)
    attack = labels > 0
    scores = {
        f: best_threshold_balanced_accuracy(x[:, j], attack) for j, f in enumerate(WUSTL_FEATURES)
    }
    worst = max(scores, key=scores.get)
    assert scores[worst] < 0.99, (worst, scores[worst])
    for cls in range(1, len(WUSTL_CLASSES)):  # nor any one attack class from normal traffic
        keep = (labels == 0) | (labels == cls)
        best = max(
            best_threshold_balanced_accuracy(x[keep, j], labels[keep] == cls) for j in range(41)
        )
        assert best < 0.995, WUSTL_CLASSES[cls]


def test_threshold_helper_detects_a_separating_column() -> None:
    """The check above can fail: a column equal to the label scores 1.0."""
    y = np.array([0, 0, 1, 1, 0, 1], dtype=bool)
    assert best_threshold_balanced_accuracy(y.astype(float), y) == 1.0
    assert best_threshold_balanced_accuracy(np.ones(6), y) == 0.5


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model: threads only add contention
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_torch_thread")
def test_learnable_by_a_small_mlp(flows: pl.DataFrame, labels: np.ndarray) -> None:
    """Combinations of columns mostly separate the classes: a small MLP learns them fast,
    but the camouflaged share of every attack class keeps it below a perfect score."""
    x = flows.select(WUSTL_FEATURES).to_numpy().astype(np.float32)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    train, test = order[:50_000], order[80_000:]
    scaler = Scaler.fit(x[train])
    xt, yt = torch.from_numpy(scaler.transform(x[train])), torch.from_numpy(labels[train])
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(41, 64),
        torch.nn.ReLU(),
        torch.nn.Linear(64, 32),
        torch.nn.ReLU(),
        torch.nn.Linear(32, 5),
    )
    counts = np.bincount(labels[train], minlength=5)
    weight = torch.tensor(1 / np.sqrt(counts), dtype=torch.float32)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weight)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(3):
        perm = torch.randperm(len(xt))
        for i in range(0, len(perm), 1024):
            b = perm[i : i + 1024]
            opt.zero_grad()
            loss_fn(model(xt[b]), yt[b]).backward()
            opt.step()
    with torch.no_grad():
        pred = model(torch.from_numpy(scaler.transform(x[test]))).argmax(1).numpy()
    truth = labels[test]
    f1 = []
    for c in range(3):  # the classes with enough test records for a stable F1
        tp = np.sum((pred == c) & (truth == c))
        f1.append(2 * tp / (np.sum(pred == c) + np.sum(truth == c)))
    assert min(f1) >= 0.75, f1
    attack_f1 = 2 * np.sum((pred > 0) & (truth > 0)) / (np.sum(pred > 0) + np.sum(truth > 0))
    assert 0.93 <= attack_f1 <= 0.985, attack_f1


def test_generate_is_vectorized_fast() -> None:
    start = time.perf_counter()
    df = generate(300_000, 3)
    elapsed = time.perf_counter() - start
    assert df.height == 300_000
    assert elapsed < 8.0, f"generate(300_000) took {elapsed:.1f} s"


@pytest.mark.parametrize("rows", [0, -5, 2.5, True])
def test_bad_row_counts_are_rejected(rows: object) -> None:
    with pytest.raises(ValueError, match="rows"):
        generate(rows, 1)  # type: ignore[arg-type]
