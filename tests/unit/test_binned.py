"""Performance in bins of the physics (e2e.evaluation.binned): the per-bin metrics on constructed examples with known
answers, the bins from params (edges or a number), the electron/photon crop energies, the plot tables, and
dvc.yaml's entries for them."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from e2e.config import EvaluateParams, load_params
from e2e.errors import E2EError
from e2e.evaluation import binned, binned_plots, metrics
from e2e.stages import evaluate
from e2e.store.sparse import SparseImages
from e2e.tasks import get_task

ROOT = Path(__file__).resolve().parents[2]
QG, JM = get_task("quark_gluon"), get_task("jet_mass")


def params(task: str = "quark_gluon", bins=None, **kw) -> EvaluateParams:
    return EvaluateParams(bins={task: bins or {"pt": [60.0, 75.0, 90.0, 120.0, 400.0]}}, bootstrap=200, **kw)


def frame(pt, y, s, split="test") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "split": split,
            "row": np.arange(len(y)),
            "truth": np.asarray(y, float),
            "prediction": np.asarray(s, float),
            "pt": np.asarray(pt, float),
        }
    )


def two_bins(rng, n: int = 200, shift: float = 0.0) -> pd.DataFrame:
    """Bin 60-75 with scores that separate the classes perfectly; bin 75-90 with the same score for all."""
    y = np.tile([0.0, 1.0], n // 2)
    perfect = np.where(y == 1, rng.uniform(0.6, 1.0, n), rng.uniform(0.0, 0.4, n)) + shift
    return pd.concat(
        [frame(rng.uniform(60, 75, n), y, perfect), frame(rng.uniform(75, 90, n), y, np.full(n, 0.5))],
        ignore_index=True,
    )


# ---------------------------------------------------------------- bins


def test_bins_are_half_open_except_the_last_which_includes_its_upper_edge():
    edges = np.array([0.0, 1.0, 2.0])
    values = np.array([-0.1, 0.0, 0.5, 1.0, 1.5, 2.0, 2.1, np.nan])
    np.testing.assert_array_equal(binned.bin_index(values, edges), [-1, 0, 0, 1, 1, 1, -1, -1])
    df = frame([0.0, 1.0, 2.0, 2.0, 2.5], [0, 1, 0, 1, 1], [0.1, 0.2, 0.3, 0.4, 0.5])
    out = binned.binned_metrics(df, QG, params(bins={"pt": [0.0, 1.0, 2.0]}))
    assert {k: v["n"] for k, v in out["pt"].items()} == {"0-1": 1, "1-2": 3}  # 2.0 in the last bin, 2.5 in none


def test_edges_from_params_and_a_number_of_bins_over_the_test_range_in_whole_units():
    df = frame(np.linspace(14.2, 41.7, 50), np.zeros(50), np.zeros(50))
    edges = binned.resolve(df, "quark_gluon", {"pt": 4})["pt"]
    np.testing.assert_array_equal(edges, [14.0, 21.0, 28.0, 35.0, 42.0])  # floor(min) to floor(max) + 1
    given = [0.0, 0.45, 0.6, 2.0]
    np.testing.assert_array_equal(binned.resolve(df, "quark_gluon", {"pt": given})["pt"], given)
    assert [binned.bin_key(*e) for e in ((60.0, 75.0), (0.0, 0.45), (1.1, 1.3), (850.0, 1000.0))] == [
        "60-75",
        "0-0.45",
        "1.1-1.3",
        "850-1000",
    ]


def test_a_variable_the_predictions_lack_is_one_line_naming_the_param_and_the_columns():
    df = frame([70.0], [1.0], [0.5])
    with pytest.raises(E2EError) as err:
        evaluate.summarise(QG, df, 0.5, params(bins={"eta": [0.0, 1.0]}))
    message = str(err.value)
    assert "\n" not in message and "params.yaml evaluate.bins.quark_gluon.eta" in message
    assert "pt" in message and "truth" in message and "split" not in message.split("available:")[1]


# ---------------------------------------------------------------- classifier metrics per bin


def test_auc_is_one_in_a_separable_bin_and_one_half_where_the_score_is_constant():
    rng = np.random.default_rng(0)
    df = pd.concat(
        [
            two_bins(rng),
            frame([100.0] * 5, [0, 1, 0, 1, 0], [0.1] * 5),  # too few events
            frame(rng.uniform(120, 400, 30), np.ones(30), rng.random(30)),  # no background
            frame(rng.uniform(400, 500, 30), np.zeros(30), rng.random(30)),  # no signal
            two_bins(rng).assign(split="val"),
        ],
        ignore_index=True,
    )
    out = evaluate.summarise(QG, df, 0.5, params(bins={"pt": [60.0, 75.0, 90.0, 120.0, 400.0, 500.0]}))
    assert "binned" not in out["val"]  # the validation split keeps today's keys
    pt = out["test"]["binned"]["pt"]
    assert list(pt) == ["60-75", "75-90", "90-120", "120-400", "400-500"]
    perfect, constant = pt["60-75"], pt["75-90"]
    assert (perfect["n"], perfect["roc_auc"], perfect["roc_auc_ci_lo"], perfect["roc_auc_ci_hi"]) == (
        200,
        1.0,
        1.0,
        1.0,
    )
    assert perfect["rejection_at_50"] is None and perfect["rejection_at_80_ci_hi"] is None  # no background passes
    assert constant["roc_auc"] == 0.5 and constant["rejection_at_50"] == constant["rejection_at_80"] == 1.0
    assert pt["90-120"] == {"n": 5} and pt["120-400"] == {"n": 30} and pt["400-500"] == {"n": 30}
    expected = {"n", "roc_auc", "roc_auc_ci_lo", "roc_auc_ci_hi"} | {
        f"rejection_at_{wp}{end}" for wp in (50, 80) for end in ("", "_ci_lo", "_ci_hi")
    }
    assert set(constant) == expected
    json.dumps(out, allow_nan=False)


def test_top_level_rejections_follow_the_working_points():
    rng = np.random.default_rng(1)
    out = evaluate.summarise(QG, two_bins(rng), 0.5, params(working_points=(0.3, 0.9)))["test"]
    assert {"rejection_at_30", "rejection_at_90"} <= set(out) and "rejection_at_50" not in out
    assert {"rejection_at_30", "rejection_at_90_ci_hi"} <= set(out["binned"]["pt"]["75-90"])


def test_bin_intervals_are_the_bootstrap_of_the_resampled_events():
    """The weighted statistic (sorted once) against resampling the arrays themselves, with the same draws:
    the AUC interval, and the rejection interval as 1/the FPR interval (ends swapped)."""
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 300).astype(float)
    s = np.round(1 / (1 + np.exp(-rng.normal(2 * y - 1, 1.0))), 2)  # ties
    out = binned.classifier_bin(y, s, (0.5, 0.8), n_boot=200)
    draws, fpr = np.random.default_rng(0), []
    for _ in range(200):
        i = draws.integers(0, 300, 300)
        fpr.append([1 / metrics.background_rejection(y[i], s[i], wp) for wp in (0.5, 0.8)])
    lo, hi = np.quantile(np.array(fpr), [0.025, 0.975], axis=0)
    with np.errstate(divide="ignore"):  # no background passing in 2.5 % of the resamples: rejection inf
        lo, hi = 1 / lo, 1 / hi
    assert (out["roc_auc_ci_lo"], out["roc_auc_ci_hi"]) == pytest.approx(metrics.roc_auc_interval(y, s, n_boot=200))
    assert (out["rejection_at_50_ci_lo"], out["rejection_at_50_ci_hi"]) == pytest.approx((hi[0], lo[0]))
    assert (out["rejection_at_80_ci_lo"], out["rejection_at_80_ci_hi"]) == pytest.approx((hi[1], lo[1]))
    assert out["rejection_at_80_ci_lo"] < out["rejection_at_80"] < out["rejection_at_80_ci_hi"]


# ---------------------------------------------------------------- classifier plot tables


def shifted_bins(rng) -> pd.DataFrame:
    """100 signal and 100 background events in each of two pT bins, the classes overlapping; the upper bin's
    scores are all higher than the lower bin's."""
    parts = []
    for lo, hi, shift in ((60, 75, 0.0), (75, 90, 0.4)):
        sig, bkg = rng.permutation(np.linspace(0.21, 0.40, 100)) + shift, rng.uniform(0.1, 0.35, 100) + shift
        parts.append(frame(rng.uniform(lo, hi, 200), np.r_[np.ones(100), np.zeros(100)], np.r_[sig, bkg]))
    return pd.concat(parts, ignore_index=True)


def test_global_threshold_gives_the_known_efficiency_in_each_bin():
    rng = np.random.default_rng(3)
    df = shifted_bins(rng)
    y, s, pt = (df[c].to_numpy() for c in ("truth", "prediction", "pt"))
    table = binned_plots.efficiency_plot(
        y, s, pt, np.array([60.0, 75.0, 90.0]), var="pt", working_points=(0.5, 0.8)
    ).rows
    assert (
        list(table.columns) == ["pt", "pt_lo", "pt_hi", "n", "series", "efficiency", "efficiency_lo", "efficiency_hi"]
        and len(table) == 4
    )
    got = {(r.series, r.pt_lo): r.efficiency for r in table.itertuples()}
    # the error bars: the exact binomial interval of 60 of 100 signal events passing, around the value
    sixty = table[(table.series == "global 80%") & (table.pt_lo == 60.0)].iloc[0]
    assert (sixty.efficiency_lo, sixty.efficiency_hi) == pytest.approx((0.4972, 0.6967), abs=1e-4)
    assert (table.efficiency_lo <= table.efficiency).all() and (table.efficiency <= table.efficiency_hi).all()
    # 50 %: the 100 highest signal scores are the upper bin's; 80 %: those and the lower bin's top 60
    assert got == {
        ("global 50%", 60.0): 0.0,
        ("global 50%", 75.0): 1.0,
        ("global 80%", 60.0): pytest.approx(0.6),
        ("global 80%", 75.0): 1.0,
    }
    assert table["pt"].tolist() == [67.5, 82.5] * 2 and table["n"].tolist() == [200] * 4


def test_per_bin_threshold_gives_the_working_point_in_every_bin_unlike_the_global_one():
    rng = np.random.default_rng(4)
    df = shifted_bins(rng)
    y, s, pt = (df[c].to_numpy() for c in ("truth", "prediction", "pt"))
    for wp in (0.5, 0.8):
        cuts = []
        for lo in (60, 75):
            sel = (pt >= lo) & (pt < lo + 15)
            cut = metrics.threshold_at_efficiency(y[sel], s[sel], wp)
            assert np.mean(s[sel & (y == 1)] >= cut) == pytest.approx(wp)  # flat signal efficiency
            cuts.append(cut)
        assert cuts[0] != cuts[1] and metrics.threshold_at_efficiency(y, s, wp) not in cuts
    edges = np.array([60.0, 75.0, 90.0])
    glob = binned_plots.global_rejection_plot(y, s, pt, edges, var="pt", working_points=(0.5, 0.8)).rows
    measured = binned.binned_metrics(df, QG, params(bins={"pt": edges.tolist()}))["pt"]
    flat = binned_plots.flat_rejection_plot(measured, edges, "pt", (0.5, 0.8)).rows
    for table in (glob, flat):
        assert (
            list(table.columns) == ["pt", "pt_lo", "pt_hi", "n", "series", "rejection", "rejection_lo", "rejection_hi"]
            and len(table) == 4
        )
    assert set(glob.series) == {"global 50%", "global 80%"} and set(flat.series) == {"per-bin 50%", "per-bin 80%"}
    got = {(r.series, r.pt_lo): r.rejection for t in (glob, flat) for r in t.itertuples()}
    global_cut = metrics.threshold_at_efficiency(y, s, 0.8)
    for lo in (60.0, 75.0):
        sel = (pt >= lo) & (pt < lo + 15)
        assert got[("per-bin 80%", lo)] == metrics.background_rejection(y[sel], s[sel], 0.8)
        passing = np.mean(s[sel & (y == 0)] >= global_cut)
        assert got[("global 80%", lo)] == (1 / passing if passing else np.inf)
    assert got[("global 80%", 60.0)] != got[("per-bin 80%", 60.0)]
    # the per-bin series' error bars are metrics.json's bootstrap intervals of the same bins
    first = flat[(flat.series == "per-bin 80%") & (flat.pt_lo == 60.0)].iloc[0]
    assert (first.rejection_lo, first.rejection_hi) == (
        measured["60-75"]["rejection_at_80_ci_lo"],
        measured["60-75"]["rejection_at_80_ci_hi"],
    )
    # the global series' error bars: 1/the exact binomial interval of the background passing, ends swapped
    row = glob[(glob.series == "global 80%") & (glob.pt_lo == 60.0)].iloc[0]
    k = int(np.sum(s[(pt < 75) & (y == 0)] >= global_cut))
    f_lo, f_hi = binned_plots.passing_interval(k, 100)
    assert (row.rejection_lo, row.rejection_hi) == pytest.approx((1 / f_hi, 1 / f_lo))


def test_infinite_rejection_is_null_in_the_plot_records():
    rng = np.random.default_rng(5)
    df = two_bins(rng)
    made = {p.name: p for p in evaluate.plot_tables(QG, df, 50, params())}
    rows = evaluate.records(made["rejection_vs_pt"].rows)
    assert any(r["rejection"] is None for r in rows) and json.dumps(rows, allow_nan=False)


# ---------------------------------------------------------------- regression


def test_regression_bins_have_the_known_response_and_resolution():
    rng = np.random.default_rng(6)
    t = rng.uniform(85, 500, 400)
    pt = np.r_[rng.uniform(400, 550, 200), rng.uniform(550, 700, 200)]
    # the first bin: 120 jets 10 % high and 80 twice too high, so a median and a mean differ
    p = np.r_[t[:200] * np.where(np.arange(200) < 120, 1.1, 3.0), t[200:] * (1 + rng.normal(0, 0.1, 200))]
    df = frame(pt, t, p).assign(ieta=np.r_[np.full(200, 20.0), np.full(200, 30.0)])
    ep = params("jet_mass", {"pt": [400.0, 550.0, 700.0], "ieta": 2})
    out = evaluate.summarise(JM, df, 250.0, ep)["test"]["binned"]
    exact = out["pt"]["400-550"]
    # sorted ratios: 120 at 1.1 then 80 at 3.0; the 16 % quantile is 1.1, the 84 % (position 167.2) is 3.0
    assert exact["response"] == pytest.approx(1.1) and exact["resolution"] == pytest.approx((3.0 - 1.1) / 2)
    smeared = out["pt"]["550-700"]
    assert smeared["response_ci_lo"] < 1.0 < smeared["response_ci_hi"] and 0.07 < smeared["resolution"] < 0.13
    assert smeared["resolution_ci_lo"] < smeared["resolution"] < smeared["resolution_ci_hi"]
    assert list(out["ieta"]) == ["20-25.5", "25.5-31"]  # 2 bins over [20, 31)
    made = {p.name: p for p in evaluate.plot_tables(JM, df, 50, ep)}
    assert {"response_vs_pt", "response_vs_ieta", "resolution_vs_ieta", "resolution_vs_pt"} <= set(made)
    assert made["resolution_vs_pt"].template == "binned" and "n" in made["resolution_vs_pt"].rows  # today's profile
    band = made["response_vs_pt"].rows
    assert (
        len(band) == 2
        and (band["response_lo"] <= band["response"]).all()
        and (band["response"] <= band["response_hi"]).all()
    )
    assert band["response"].tolist() == pytest.approx([exact["response"], smeared["response"]])


# ---------------------------------------------------------------- electron/photon crop energies


def test_crop_energies_equal_the_dense_sum_and_maximum_of_the_energy_channel():
    rng = np.random.default_rng(7)
    dense = rng.normal(0.0, 1.0, (12, 2, 4, 4)) * (rng.random((12, 2, 4, 4)) < 0.4)
    dense[3] = 0.0  # an empty event
    dense[5, 1] = -rng.uniform(0.1, 1.0, (4, 4))  # every pixel stored and negative: the maximum is below 0
    dense[7, 1] = 0.0
    dense[7, 1, 2, 3] = -0.5  # one negative pixel among zeros that are not stored: the maximum is 0
    images = SparseImages.from_dense(dense.astype(np.float16))
    rows = np.array([0, 3, 5, 11, 7, 2])
    out = binned.crop_energies(images, ["time", "energy"], rows, chunk=4)  # chunks of 4 rows
    expected = dense.astype(np.float16).astype(np.float64)[rows, 1].reshape(len(rows), -1)
    np.testing.assert_allclose(out["energy_total"], expected.sum(1), rtol=1e-12)
    np.testing.assert_array_equal(out["energy_max"], expected.max(1))
    assert out["energy_max"][2] < 0 and out["energy_max"][4] == 0 and out["energy_total"][4] == -0.5
    assert binned.crop_energies(images, ["track_pt", "ecal"], rows) == {}


# ---------------------------------------------------------------- dvc.yaml and the review


def with_variables(task, rng, n: int = 400) -> pd.DataFrame:
    y = rng.integers(0, 2, n).astype(float) if task.is_classification else rng.uniform(85, 500, n)
    df = frame(np.zeros(n), y, rng.random(n) if task.is_classification else y * rng.normal(1, 0.1, n))
    for var, spec in load_params(ROOT / "params.yaml").evaluate.bins[task.name].items():
        df[var] = rng.uniform(spec[0], spec[-1], n) if isinstance(spec, list) else rng.uniform(0, 50, n)
    return df


@pytest.mark.parametrize("task", ["electron_photon", "quark_gluon", "jet_mass"])
def test_dvc_yaml_declares_every_binned_plot_of_params_yaml(task):
    ep = dataclasses.replace(load_params(ROOT / "params.yaml").evaluate, bootstrap=20)
    entries = yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
    declared = {k: v for e in entries if isinstance(e, dict) for k, v in e.items()}
    made = evaluate.plot_tables(get_task(task), with_variables(get_task(task), np.random.default_rng(8)), 50, ep)
    kinds = ("response", "resolution") if task == "jet_mass" else ("efficiency", "rejection", "rejection_flat")
    assert {f"{kind}_vs_{var}" for kind in kinds for var in ep.bins[task]} <= {p.name for p in made}
    templates = {t.stem for t in (ROOT / ".dvc" / "plots").glob("*.json")}
    for p in made:
        props = declared[f"metrics/{task}/eval/plots/custom/{p.name}.json"]
        assert (props["template"], props["x"], props["y"]) == (p.template, p.x, p.y)
        assert props["title"].endswith(p.title) and props["x_label"] and props["y_label"]
        assert p.template in templates | {"simple"} and len(p.rows) > 0


def test_the_review_shows_a_binned_plot_of_each_task():
    """`make review` picks its key plots among dvc.yaml's: one binned plot per task is among them."""
    from e2e.reports.review_report import split_plots

    ids = [
        next(iter(e)) if isinstance(e, dict) else e for e in yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
    ]
    for task, binned_plot in (
        ("electron_photon", "rejection_vs_energy_total"),
        ("quark_gluon", "rejection_vs_pt"),
        ("jet_mass", "response_vs_pt"),
    ):
        key, _ = split_plots(get_task(task), ids)
        assert f"metrics/{task}/eval/plots/custom/{binned_plot}.json" in key, key
