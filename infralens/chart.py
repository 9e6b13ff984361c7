"""``infralens chart lab07``: draw a lab's measured risk as a PNG (needs the ``chart`` extra, matplotlib).

Lab 07's learner code measures a risk table (:func:`risk_table` over the lab's ``RISK_GRID`` on the
given model's ``long`` workload); this module runs it and draws bits per value on x, perplexity
increase on y, one line per target and granularity, with the lab's safe and breaks thresholds as
bands. It plots the numbers the learner's code returns and computes none of them.
"""

from __future__ import annotations

from pathlib import Path

from infralens.labs import Lab, discover_labs, resolve_lab
from infralens.loader import LabCode

CHARTED = {"lab07_quality_risk": ("quality_risk", "long")}
"""Labs with a chart: the module whose ``risk_table`` draws it, and the workload it measures."""

MISSING_MATPLOTLIB = (
    "the chart needs matplotlib, which is not installed. Install the chart extra: "
    "python -m pip install -e \".[chart]\" (or python -m pip install matplotlib), then run the command again"
)


def chart_lab(root: Path, name: str) -> Lab:
    """The lab called ``name`` if it has a chart; ``ValueError`` naming the labs that do otherwise."""
    lab = resolve_lab(name, discover_labs(root))
    if lab.folder not in CHARTED:
        raise ValueError(f"{lab.short} has no chart; charts exist for {', '.join(resolve_lab(folder, discover_labs(root)).short for folder in CHARTED)}")
    return lab


def load_pyplot():
    """matplotlib's pyplot on the file-only Agg backend, or ``RuntimeError`` saying how to install it."""
    try:
        import matplotlib
    except ImportError:
        raise RuntimeError(MISSING_MATPLOTLIB) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def measured_rows(code_root: Path, display_root: str, lab: Lab) -> tuple[list, float, str, tuple[float, float]]:
    """Run the lab's ``risk_table`` from ``code_root``.

    Returns ``(rows, float perplexity, what was measured, (safe, breaks) thresholds)``; the float
    perplexity is measured here with torch's cross-entropy, for the title.
    """
    import math

    import torch
    from torch.nn import functional as F

    from infralens.tinylm import WORKLOADS, load_tiny_lm, workload

    module_name, workload_name = CHARTED[lab.folder]
    module = LabCode(code_root, lab.folder, display_root).module(module_name)
    model, tokens = load_tiny_lm(), workload(workload_name)
    try:
        rows = module.risk_table(tokens, list(module.RISK_GRID))
    except NotImplementedError as error:
        raise RuntimeError(f"{display_root}/{lab.folder}/{module_name}.py is not finished ({error}); "
                           f"the chart draws what your risk_table measures: run pytest --lab {lab.short[3:]} first") from None
    with torch.no_grad():
        logits = model(tokens[:, :-1])
    float_perplexity = math.exp(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1)).item())
    about = f"the given model on the held-out workload '{workload_name}': {WORKLOADS[workload_name].about}"
    return rows, float_perplexity, about, (module.SAFE_INCREASE, module.BREAKS_INCREASE)


def draw(rows: list, float_perplexity: float, about: str, out: Path, safe: float, breaks: float) -> Path:
    """Bits per value on x, perplexity increase (%) on a symmetric-log y, one line per series."""
    plt = load_pyplot()
    series: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        series.setdefault(row.config.series, []).append((row.config.bits, 100 * row.increase))
    figure, axes = plt.subplots(figsize=(8, 5), dpi=100)
    axes.axhspan(-100, 100 * safe, color="#d8f0d8", zorder=0, label=f"safe (≤ +{100 * safe:g}%)")
    axes.axhspan(100 * safe, 100 * breaks, color="#fff1c9", zorder=0, label=f"degrades (≤ +{100 * breaks:g}%)")
    axes.axhspan(100 * breaks, 1e6, color="#f8d6d6", zorder=0, label="breaks")
    markers = "osD^v<>ph*"
    for index, (name, points) in enumerate(series.items()):
        points.sort()
        axes.plot([b for b, _ in points], [y for _, y in points], marker=markers[index % len(markers)], linestyle="-" if "kv" not in name else "--", label=name)
    increases = [100 * row.increase for row in rows]
    axes.set_yscale("symlog", linthresh=0.1)
    axes.set_ylim(min(-0.1, min(increases) * 1.5), max(10 * 100 * breaks, max(increases) * 2))
    axes.set_xticks(sorted({row.config.bits for row in rows}))
    axes.invert_xaxis()
    axes.set_xlabel("bits per value (code width; fewer to the right)")
    axes.set_ylabel("perplexity increase over float (%)")
    axes.set_title(f"Quality risk per target (float perplexity {float_perplexity:.3f})", fontsize=11)
    axes.text(0.01, 0.01, about, transform=axes.transAxes, fontsize=7, color="#555555")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=7, loc="upper left", ncol=2)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    plt.close(figure)
    return out
