"""The augmentation study's report: seeds-style tables, verdicts, GAN quality and plots."""

from __future__ import annotations

import numpy as np


def _pm(stats: dict | None, signed: bool = False) -> str:
    if not stats or stats.get("mean") is None:
        return "n/a"
    sign = "+" if signed else ""
    return f"{stats['mean']:{sign}.3f} ± {stats['std']:.3f}"


def _delong(tests: list, metric: str) -> list[tuple[float, float]]:
    """(p-value, AUC difference) of DeLong's test per seed, for an AUC metric."""
    if metric != "roc_auc" and not metric.startswith("auc:"):
        return []
    if metric != "roc_auc":
        tests = [t.get(metric[4:], {}) for t in tests]
    return [(t["p_value"], t["difference"]) for t in tests if "p_value" in t]


def _auc_metric(metrics: list[str]) -> str | None:
    """The metric whose DeLong tests back the verdicts: roc_auc, else the first per-label AUC."""
    aucs = [m for m in metrics if m == "roc_auc"] + [m for m in metrics if m.startswith("auc:")]
    return aucs[0] if aucs else None


def size_description(results: dict) -> str:
    """What the grid's sizes count (config.size_unit)."""
    if results.get("size_unit") == "minority":
        return f"real training images of the minority class ({results.get('minority_class')})"
    return "real training images per class"


def study_markdown(results: dict) -> str:
    """Seeds-style tables per metric, deltas with tests, GAN quality and plain verdicts."""
    sizes, methods = results["sizes"], results["methods"]
    n_seeds = len(results["seeds"])
    lines = [
        "# Augmentation study",
        "",
        f"Test-set metrics, mean ± std over {n_seeds} seed(s) (seed = subset, GAN and "
        f"classifier initialisation). Synthetic images added: {results['synthetic_amount']} "
        f"(of the real training set). Sizes are {size_description(results)}.",
        "",
    ]
    verdicts = []
    for metric in results["metrics"]:
        table = results["table"][metric]
        lines += [f"## {metric}", "", "| method | " + " | ".join(sizes) + " |"]
        lines.append("|---" * (len(sizes) + 1) + "|")
        for name in methods:
            lines.append(f"| {name} | " + " | ".join(_pm(table[name][s]) for s in sizes) + " |")
        for name in methods:
            if name == "base":
                continue
            cells = []
            for s in sizes:
                delta = table[name][s]["delta_vs_base"]
                tests = _delong(results["delong"].get(name, {}).get(s, []), metric)
                notes = [f"DeLong p: {', '.join(f'{p:.2g}' for p, _ in tests)}"] if tests else []
                if delta and delta.get("paired_t_p") is not None:
                    notes.append(f"paired t p: {delta['paired_t_p']:.2g}")
                cells.append(_pm(delta, signed=True) + (f" ({'; '.join(notes)})" if notes else ""))
                if metric == results["metrics"][0]:
                    auc = _auc_metric(results["metrics"])
                    auc_tests = _delong(results["delong"].get(name, {}).get(s, []), auc or "")
                    verdicts.append(_verdict(name, s, metric, delta, auc, auc_tests))
            lines.append(f"| {name} − base | " + " | ".join(cells) + " |")
        lines += ["", f"![{metric}](plot_{file_name(metric)}.png)", ""]
    if results.get("gan_quality"):
        lines += _gan_quality_table(results["gan_quality"], sizes)
    if verdicts:
        lines += ["## Verdicts", ""] + verdicts + [""]
    env = results.get("environment")
    if env:
        total = sum(v for v in results.get("wall_seconds", {}).values() if v)
        lines += [
            "## Environment",
            "",
            f"jax {env['jax']}, flax {env['flax']}, optax {env['optax']}, numpy {env['numpy']}, "
            f"Python {env['python']}; backend {env['backend']}, {len(env['devices'])} device(s), "
            f"{env['processes']} process(es). Classifier training took {total / 60:.1f} min in "
            "all (per cell: wall_seconds in results.json; GAN runs log their own time).",
            "",
        ]
    if results.get("failed_cells"):
        lines += ["## Failed cells", ""]
        lines += [f"- {k}: {v}" for k, v in results["failed_cells"].items()] + [""]
    return "\n".join(lines) + "\n"


def _verdict(
    name: str,
    size: str,
    metric: str,
    delta: dict | None,
    auc: str | None,
    auc_tests: list[tuple[float, float]],
) -> str:
    """A plain sentence: did the method beat base, and on what evidence."""
    if not delta or delta.get("mean") is None:
        return f"- {name} at {size}: no result to compare."
    mean, std, n = delta["mean"], delta["std"], delta["n"]
    evidence = [f"Δ {metric} {mean:+.3f} ± {std:.3f} over {n} seed(s)"]
    t_p = delta.get("paired_t_p")
    if t_p is not None:
        evidence.append(f"paired t-test p = {t_p:.2g}")
    wins = sum(p < 0.05 and diff > 0 for p, diff in auc_tests)
    if auc_tests:
        evidence.append(
            f"DeLong ({auc}) significantly better in {wins} of {len(auc_tests)} seed(s)"
        )
    significant = (t_p is not None and t_p < 0.05) or (auc_tests and wins * 2 > len(auc_tests))
    if mean <= 0:
        outcome = "did **not** beat base"
    elif not significant:
        outcome = "was **not shown** to beat base (the gain is not distinguishable from noise)"
    else:
        outcome = "beat base"
    return f"- **{name}** at {size}: {outcome} ({'; '.join(evidence)})."


def _gan_quality_table(quality: dict, sizes: list[str]) -> list[str]:
    lines = [
        "## GAN quality",
        "",
        "IS, FID/KID and precision/recall use the all-data reference classifier as the "
        "feature network (domain classifier score). Precision (fidelity) and recall (variety) "
        "after Kynkäänniemi et al. 2019: the fraction of generated images inside the real "
        "images' k-NN balls, and of real images inside the generated ones. MS-SSIM: mean over "
        "consecutive pairs, generated (real); higher means less diverse. Memorised: fraction "
        "of generated images closer to a training image than the median training "
        "nearest-neighbour distance (~0.5 for fresh samples, 1.0 for copies). A metric below "
        "its minimum sample size is n/a, with the reason.",
        "",
        "| GAN | size | IS (real) | FID | KID x1e3 | precision | recall | MS-SSIM (real) | "
        "memorised | copies |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def cell(stats: dict | None, scale: float = 1.0) -> str:
        """mean ± std over seeds, or n/a with the reason the evaluation gave."""
        if stats and stats.get("mean") is not None:
            return _pm({"mean": scale * stats["mean"], "std": scale * stats["std"]})
        reason = (stats or {}).get("na_reason")
        return f"n/a ({reason})" if reason else "n/a"

    warnings: list[str] = []
    for gan, by_size in quality.items():
        for s in sizes:
            q = by_size.get(s) or {}
            if not q:
                continue
            if ((q.get("memorised") or {}).get("mean") or 0) > 0.9:
                warnings.append(
                    f"- **{gan}** at {s}: {q['memorised']['mean']:.0%} of its images are closer "
                    "to a training image than training images are to each other: it stays "
                    "close to its few training images (possible memorisation; look at the "
                    "closest pairs in its quality/ folder)."
                )
            lines.append(
                f"| {gan} | {s} | {cell(q.get('inception_score'))} "
                f"({cell(q.get('inception_score_real'))}) | {cell(q.get('fid'))} | "
                f"{cell(q.get('kid'), 1e3)} | {cell(q.get('precision'))} | "
                f"{cell(q.get('recall'))} | {cell(q.get('ms_ssim'))} "
                f"({cell(q.get('ms_ssim_real'))}) | {cell(q.get('memorised'))} | "
                f"{cell(q.get('copies'))} |"
            )
    return lines + [""] + warnings + ([""] if warnings else [])


def metric_plot(path: str, results: dict, metric: str) -> None:
    """Metric vs data size with std error bars, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = results["sizes"]
    x = np.arange(len(sizes))
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, name in enumerate(results["methods"]):
        rows = [results["table"][metric][name][s] for s in sizes]
        mean = np.array([np.nan if r["mean"] is None else r["mean"] for r in rows])
        std = np.array([0.0 if r["std"] is None else r["std"] for r in rows])
        offset = (i - (len(results["methods"]) - 1) / 2) * 0.04  # keep error bars apart
        ax.errorbar(x + offset, mean, yerr=std, marker="o", capsize=3, label=name)
    ax.set(xticks=x, xticklabels=sizes, xlabel=size_description(results), ylabel=metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def file_name(metric: str) -> str:
    """A metric name as a file-name part: 'auc:Lung Lesion' -> 'auc_Lung_Lesion'."""
    return "".join(c if c.isalnum() else "_" for c in metric).strip("_")
