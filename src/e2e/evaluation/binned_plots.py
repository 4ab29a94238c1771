"""The plot tables of performance in bins (params `evaluate.bins`, e2e.evaluation.binned's bins), for `dvc plots`:
a point per bin with its 95 % interval and the bin's extent, drawn as error bars by .dvc/plots/binned*.json.

With the global threshold of a working point (fixed for every bin) an efficiency or an FPR is a binomial
fraction: exact Clopper-Pearson intervals. The per-bin-threshold rejections, the response and the resolution
carry the bootstrap intervals that e2e.evaluation.binned measured for metrics.json, never computed twice.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from e2e.evaluation import metrics
from e2e.evaluation.binned import LEVEL, _inverse, binned_metrics, each_bin, measurable, rejection_key, resolve
from e2e.evaluation.plots import Plot


def series(kind: str, efficiency: float) -> str:
    return f"{kind} {efficiency:.0%}"  # "global 50%": the legend of the binned plots


def bin_columns(var: str, lo: float, hi: float, n) -> dict:
    return {var: (lo + hi) / 2, f"{var}_lo": lo, f"{var}_hi": hi, "n": int(n)}


def table(rows: list[dict], var: str, values: list[str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=[var, f"{var}_lo", f"{var}_hi", "n", *values])


def with_interval(name: str, value: float, lo: float, hi: float) -> dict:
    """{name, name_lo, name_hi}: the columns .dvc/plots/binned*.json draw as a point with a vertical error bar."""
    return {name: value, f"{name}_lo": lo, f"{name}_hi": hi}


def passing_interval(k: int, n: int) -> tuple[float, float]:
    """95 % Clopper-Pearson interval of a fraction k/n passing a fixed cut: an efficiency or an FPR is a
    binomial proportion once the threshold is fixed (the global one is, for every bin)."""
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=LEVEL, method="exact")
    return float(ci.low), float(ci.high)


# The classifier tables are long: one row per bin and series, the series named in a column, so dvc.yaml
# names one y column whatever the working points (.dvc/plots/binned.json colours by that column). Each
# chart holds one kind of threshold, so a chart of two revisions has four lines, not eight.


def interval_columns(name: str) -> list[str]:
    return [name, f"{name}_lo", f"{name}_hi"]


def passing(y, s, by, edges, *, var: str, working_points, of_class: int) -> list[tuple[dict, int, int]]:
    """(bin columns and series, events of `of_class` passing, events of `of_class`) per working point and
    measurable bin, at the threshold that gives the working point on the whole split (one global cut)."""
    out = []
    for wp in working_points:
        cut = metrics.threshold_at_efficiency(y, s, wp)
        for _, lo, hi, sel in each_bin(by, edges):
            if measurable(y[sel]):
                mine = sel & (y == of_class)
                at = {**bin_columns(var, lo, hi, sel.sum()), "series": series("global", wp)}
                out.append((at, int(np.sum(s[mine] >= cut)), int(np.sum(mine))))
    return out


def efficiency_plot(y, s, by, edges, *, var: str, working_points) -> Plot:
    """Signal efficiency per bin at the threshold that gives each working point on the whole split."""
    rows = [
        {**at, **with_interval("efficiency", k / n, *passing_interval(k, n))}
        for at, k, n in passing(y, s, by, edges, var=var, working_points=working_points, of_class=1)
    ]
    return Plot(
        f"efficiency_vs_{var}",
        table(rows, var, ["series", *interval_columns("efficiency")]),
        var,
        "efficiency",
        "binned",
        "signal efficiency, one global threshold per working point, bars: 95 % interval",
    )


def global_rejection_plot(y, s, by, edges, *, var: str, working_points) -> Plot:
    """1/FPR per bin at the global threshold of each working point: how a fixed cut performs across bins."""
    rows = []
    for at, k, n in passing(y, s, by, edges, var=var, working_points=working_points, of_class=0):
        f_lo, f_hi = passing_interval(k, n)  # a high FPR is a low rejection: the ends swap
        rows.append({**at, **with_interval("rejection", _inverse(k / n), _inverse(f_hi), _inverse(f_lo))})
    return Plot(
        f"rejection_vs_{var}",
        table(rows, var, ["series", *interval_columns("rejection")]),
        var,
        "rejection",
        "binned_log_y",
        "1/FPR at one global threshold per working point, bars: 95 % interval",
    )


def flat_rejection_plot(measured: dict, edges, var: str, working_points) -> Plot:
    """1/FPR per bin at the bin's own threshold (a flat signal efficiency), with the intervals of metrics.json."""
    rows = []
    for wp in working_points:
        key = rejection_key(wp)
        for (lo, hi), m in zip(zip(edges[:-1], edges[1:]), measured.values()):
            if key in m:
                rows.append(
                    {
                        **bin_columns(var, lo, hi, m["n"]),
                        "series": series("per-bin", wp),
                        **with_interval("rejection", m[key], m[f"{key}_ci_lo"], m[f"{key}_ci_hi"]),
                    }
                )
    return Plot(
        f"rejection_flat_vs_{var}",
        table(rows, var, ["series", *interval_columns("rejection")]),
        var,
        "rejection",
        "binned_log_y",
        "1/FPR at each bin's own threshold (flat efficiency), bars: 95 % interval",
    )


def regression_plots(measured: dict, edges, var: str) -> list[Plot]:
    """Response and resolution per bin with the 95 % intervals of metrics.json."""
    rows = [
        {**bin_columns(var, lo, hi, m["n"]), **{k.replace("_ci", ""): v for k, v in m.items() if k != "n"}}
        for (lo, hi), m in zip(zip(edges[:-1], edges[1:]), measured.values())
        if "response" in m
    ]
    rows = table(rows, var, [*interval_columns("response"), *interval_columns("resolution")])
    return [
        Plot(
            f"response_vs_{var}",
            rows,
            var,
            "response",
            "binned",
            "mass response median(pred/true), bars: 95 % bootstrap interval",
        ),
        Plot(
            f"resolution_vs_{var}", rows, var, "resolution", "binned", "mass resolution, bars: 95 % bootstrap interval"
        ),
    ]


def binned_plots(test: pd.DataFrame, task, ep, measured: dict | None = None) -> list[Plot]:
    """The plot tables in the bins of `ep.bins`; `measured` is binned_metrics' result for the same test split
    (computed here when not given), whose bootstrap intervals the per-bin series show."""
    t, p = test["truth"].to_numpy(np.float64), test["prediction"].to_numpy(np.float64)
    measured = binned_metrics(test, task, ep) if measured is None else measured
    out = []
    for var, edges in resolve(test, task.name, ep.bins.get(task.name, {})).items():
        by = test[var].to_numpy(np.float64)
        if task.is_classification:
            out += [
                efficiency_plot(t, p, by, edges, var=var, working_points=ep.working_points),
                global_rejection_plot(t, p, by, edges, var=var, working_points=ep.working_points),
                flat_rejection_plot(measured[var], edges, var, ep.working_points),
            ]
        else:
            out += regression_plots(measured[var], edges, var)
    return out
