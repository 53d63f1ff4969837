"""Federated statistics: fixed-length count vectors whose sums give the pooled encoder."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from fedids.data.encoder import build_encoder
from fedids.data.spec import infer_spec
from fedids.data.stats import (
    StatsError,
    allocate_subcells,
    coarse_cell,
    coarse_edges,
    local_summary,
    pooled_totals,
    stats_passes,
    summary_header,
    summary_lengths,
)
from fedids.data.table import Split

CLASSES = ["normal", "a", "b"]


def _frame(n: int, seed: int) -> tuple[pl.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pl.DataFrame(
        {
            "bytes": rng.lognormal(6, 2, n).round(0),
            "lat": rng.normal(100, 30, n),
            "neg": rng.normal(-5, 3, n),
            "flag": rng.choice(["true", "false ", "0", "1"], n),
            "state": rng.choice(["open", "closed", "ajar", "stuck"], n, p=[0.5, 0.3, 0.15, 0.05]),
        }
    )
    return frame, rng.integers(0, 3, n)


@pytest.fixture(scope="module")
def parts() -> tuple[list[Split], object]:
    splits = []
    for seed, n in ((1, 900), (2, 400), (3, 1700)):
        frame, y = _frame(n, seed)
        splits.append(Split(frame, y))
    spec = infer_spec(pl.concat([s.frame for s in splits]), {}, CLASSES)
    return splits, spec


def test_vectors_have_fixed_length_header_and_bound(parts):
    splits, spec = parts
    lengths = summary_lengths(spec, {})
    assert stats_passes({}) == 2 and stats_passes({"refine": False}) == 1
    totals = []
    for p in range(2):
        vecs = [local_summary(spec, {}, s, p, totals) for s in splits]
        for s, v in zip(splits, vecs, strict=True):
            assert v.dtype == np.int64 and len(v) == lengths[p]
            assert v.min() >= 0 and v.max() <= len(s)  # bound: n_train per entry
            assert v[0] == len(s)
        if p == 0:
            assert vecs[0][1:4].tolist() == np.bincount(splits[0].labels, minlength=3).tolist()
        totals.append(np.sum(vecs, axis=0))
    n, counts = summary_header(totals[0], spec)
    assert n == 3000 and counts.sum() == 3000


def test_split_summaries_sum_to_the_pooled_encoder(parts):
    splits, spec = parts
    enc_split = build_encoder(spec, {}, pooled_totals(spec, {}, splits))
    pooled = Split(pl.concat([s.frame for s in splits]), np.concatenate([s.labels for s in splits]))
    enc_pooled = build_encoder(spec, {}, pooled_totals(spec, {}, [pooled]))
    assert enc_split.to_dict() == enc_pooled.to_dict()
    x = pooled.frame.head(50)
    np.testing.assert_array_equal(enc_split.transform(x), enc_pooled.transform(x))


def test_quantile_edges_track_the_data(parts):
    splits, spec = parts
    enc = build_encoder(spec, {"bins": 8}, pooled_totals(spec, {"bins": 8}, splits))
    for name in ("bytes", "lat", "neg"):
        data = np.concatenate([s.frame[name].to_numpy() for s in splits])
        edges = enc.num_stats[name].edges
        share = np.searchsorted(np.sort(data), edges) / len(data)
        np.testing.assert_allclose(share, np.arange(1, 8) / 8, atol=0.02)
    one_pass = {"refine": False, "bins": 8}
    coarse = build_encoder(spec, one_pass, pooled_totals(spec, one_pass, splits))
    assert coarse.n_inputs == enc.n_inputs  # same layout, coarser statistics


def test_categories_kept_by_federation_frequency(parts):
    splits, spec = parts
    enc = build_encoder(spec, {"categories": 2}, pooled_totals(spec, {"categories": 2}, splits))
    kept = set(enc.cat_stats["state"].codes.tolist())
    from fedids.data.spec import stable_hash

    assert kept == {stable_hash("open", 1024), stable_hash("closed", 1024)}
    x = enc.transform(pl.DataFrame({**{c: [splits[0].frame[c][0]] * 3 for c in spec.names},
                                    "state": ["open", "stuck", "never seen"]}))  # fmt: skip
    lo = enc.n_inputs - 3 - 1  # state is the last column: 2 kept + other; flag before it
    block = x[:, lo + 1 :]
    assert block.sum(axis=1).tolist() == [1, 1, 1]
    assert block[1].tolist() == block[2].tolist() == [0, 0, 1]  # rare and unknown -> other


def test_grid_is_exact_and_covers_everything():
    e = coarse_edges(2)
    assert e[len(e) // 2] == 0.0 and e[len(e) // 2 + 2] == 1.0 and e[-1] == 2.0**40 - 1
    assert np.all(np.diff(e) > 0)
    cells = coarse_cell(np.array([-1e300, -1.0, 0.0, 0.5, 1e300]), 2)
    assert cells[0] == 0 and cells[-1] == len(e) and np.all(np.diff(cells) > 0)


def test_allocation_is_integer_and_complete():
    t = np.array([0, 5, 0, 1, 94, 0])
    a = allocate_subcells(t, 20)
    assert a.sum() == 20 and (a[t == 0] == 0).all() and (a[t > 0] >= 1).all()
    assert a[4] > a[1] > 0


def test_bad_totals_are_refused(parts):
    splits, spec = parts
    totals = pooled_totals(spec, {}, splits)
    with pytest.raises(StatsError, match="expected totals of 2"):
        build_encoder(spec, {}, totals[:1])
    with pytest.raises(StatsError, match=r"shape \(5,\)"):
        build_encoder(spec, {}, [totals[0], np.zeros(5, np.int64)])
    other = totals[1].copy()
    other[0] += 1
    with pytest.raises(StatsError, match="different records"):
        build_encoder(spec, {}, [totals[0], other])
    bad = totals[0].copy()
    bad[1] += 1
    with pytest.raises(StatsError, match="inconsistent"):
        summary_header(bad, spec)
