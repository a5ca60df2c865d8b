"""The augmentation study's report: seeds-style tables, verdicts, GAN quality and plots."""

from __future__ import annotations

import numpy as np

from medgan_jax.study.comparisons import find


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


def size_description(results: dict) -> str:
    """What the grid's sizes count (config.size_unit)."""
    if results.get("size_unit") == "minority":
        return f"real training images of the minority class ({results.get('minority_class')})"
    return "real training images per class"


def study_markdown(results: dict) -> str:
    """Summary against the controls and the ceiling, per-metric tables with their tests,
    GAN quality and plain verdicts."""
    sizes, methods = results["sizes"], results["methods"]
    comparisons = results.get("comparisons") or {"tests": [], "ceiling_shares": []}
    lines = [
        "# Augmentation study",
        "",
        f"Test-set metrics over {len(results['seeds'])} seed(s) (seed = subset, GAN and "
        f"classifier initialisation). Images added: {results['synthetic_amount']} (of the "
        f"real training set). Sizes are {size_description(results)}.",
        "",
        *_test_rule(comparisons),
        *_summary(results, comparisons),
    ]
    for metric in results["metrics"]:
        lines += _metric_section(results, comparisons, metric)
    if results.get("gan_quality"):
        lines += _gan_quality_table(results["gan_quality"], sizes)
    verdicts = [_verdict(results, comparisons, name, s) for name in methods for s in sizes]
    verdicts = [v for v in verdicts if v]
    if verdicts:
        lines += ["## Verdicts", "", *verdicts, ""]
    lines += _environment(results)
    if comparisons.get("skipped"):
        lines += ["## Not tested", ""]
        lines += [f"- {k['metric']} at {k['size']}: {k['reason']}" for k in comparisons["skipped"]]
        lines += [""]
    for key, title in (("failed_cells", "Failed cells"), ("no_ceiling", "No ceiling available")):
        if results.get(key):
            lines += [f"## {title}", ""]
            lines += [f"- {k}: {v}" for k, v in results[key].items()] + [""]
    return "\n".join(lines) + "\n"


def _test_rule(comparisons: dict) -> list[str]:
    n = sum(t["p_value"] is not None for t in comparisons["tests"])
    return [
        "Each difference is tested once: a two-level bootstrap (seeds, then test cases, on the "
        f"saved test predictions; {comparisons.get('n_resamples', 'n/a')} resamples) gives its "
        "standard error, with Student's t on seeds − 1 degrees of freedom for the 95% CI and "
        f"p. The {n} p-values of this report are Holm-adjusted together (p_holm); a method "
        f"*beats* a reference only if p_holm < {comparisons.get('alpha', 0.05)} and the "
        "difference is positive. Thresholded metrics use each run's threshold chosen on its "
        "validation split.",
        "",
    ]


def _summary(results: dict, comparisons: dict) -> list[str]:
    """Per size: each method against the better control, and its share of the ceiling gain."""
    metrics = [m for m in ("roc_auc", "average_precision") if m in results["metrics"]]
    metrics = metrics or results["metrics"][:1]
    if not comparisons["tests"]:
        return []
    head = " | ".join(f"Δ {m} vs control [95% CI] (p, p_holm)" for m in metrics)
    lines = [
        "## Summary: against rebalancing and the real-data ceiling",
        "",
        "Control = the better of `oversample` (the minority images repeated) and `weighted` "
        "(class-weighted loss) at that size and metric. Share of the ceiling gain = (method − "
        "control) / (real_topup − control): 0 = no better than rebalancing, 1 = as good as "
        f"the same number of real images ({metrics[0]}); n/a where the ceiling's own gain "
        "over the control has a 95% CI reaching 0 (no generator can be expected to help).",
        "",
        f"| size | method | {head} | share of ceiling gain [95% CI] |",
        "|---" * (3 + len(metrics)) + "|",
    ]
    for size in results["sizes"]:
        for name in results["methods"]:
            tests = [_against_control(comparisons, size, m, name) for m in metrics]
            if not any(tests):
                continue
            cells = [
                f"{_diff_text(t)} vs {t['reference']}" if t else "n/a" for t in tests
            ]  # the better control can differ between metrics
            share = _share(comparisons, size, metrics[0], name)
            lines.append(f"| {size} | {name} | " + " | ".join(cells) + f" | {share} |")
    return lines + [""]


def _against_control(comparisons, size, metric, name) -> dict | None:
    """The test of `name` against the better control (None for a control itself)."""
    tests = (t for t in comparisons["tests"] if t["reference"] != "base")
    return _entry(tests, size, metric, name)


def _share_entry(comparisons, size, metric, name) -> dict | None:
    return _entry(comparisons["ceiling_shares"], size, metric, name)


def _entry(rows, size, metric, name) -> dict | None:
    """The first row about method `name` at a size and metric."""
    return next(
        (r for r in rows if (r["size"], r["metric"], r["method"]) == (size, metric, name)), None
    )


def _share(comparisons, size, metric, name) -> str:
    entry = _share_entry(comparisons, size, metric, name)
    if entry is None:
        return "n/a"
    gain, (gain_low, gain_high) = entry["ceiling_gain"], entry["ceiling_gain_ci"]
    if not entry["ceiling_above_control"]:
        return f"n/a (the ceiling is not above the control: {gain:+.3f})"
    if gain_low is None or gain_low <= 0:  # a ratio over a gain that may be 0 means nothing
        interval = "" if gain_low is None else f" [{gain_low:+.3f}, {gain_high:+.3f}]"
        return f"n/a (the ceiling's gain over the control, {gain:+.3f}{interval}, may be 0)"
    low, high = entry["ci_low"], entry["ci_high"]
    ci = "" if low is None else f" [{low:.2f}, {high:.2f}]"
    return f"{entry['estimate']:.2f}{ci}"


def _diff_text(test: dict | None) -> str:
    if not test:
        return "n/a"
    if test["p_value"] is None:
        return f"{test['estimate']:+.3f} (n/a: {test.get('reason', 'untestable')})"
    mark = " **beats**" if test["beats"] else ""
    return (
        f"{test['estimate']:+.3f} [{test['ci_low']:+.3f}, {test['ci_high']:+.3f}] "
        f"(p {test['p_value']:.2g}, p_holm {test['p_holm']:.2g}){mark}"
    )


def _metric_section(results: dict, comparisons: dict, metric: str) -> list[str]:
    sizes, table = results["sizes"], results["table"][metric]
    lines = [f"## {metric}", "", "| method | " + " | ".join(sizes) + " |"]
    lines.append("|---" * (len(sizes) + 1) + "|")
    for name in results["methods"]:
        lines.append(f"| {name} | " + " | ".join(_pm(table[name][s]) for s in sizes) + " |")
    for name in results["methods"]:
        if name == "base":
            continue
        cells = []
        for s in sizes:
            test = find(comparisons["tests"], s, metric, name, "base")
            text = _diff_text(test) if test else _pm(table[name][s]["delta_vs_base"], signed=True)
            tests = _delong(results["delong"].get(name, {}).get(s, []), metric)
            if tests:
                text += f"; DeLong p per seed: {', '.join(f'{p:.2g}' for p, _ in tests)}"
            cells.append(text)
        lines.append(f"| {name} − base | " + " | ".join(cells) + " |")
    return lines + ["", f"![{metric}](plot_{file_name(metric)}.png)", ""]


def _verdict(results: dict, comparisons: dict, name: str, size: str) -> str:
    """A plain sentence per method and size on the primary (first) metric."""
    if name == "base":
        return ""
    metric = results["metrics"][0]
    vs_base = find(comparisons["tests"], size, metric, name, "base")
    if vs_base is None or vs_base["p_value"] is None:
        return f"- **{name}** at {size}: no test on {metric} (see the tables)."
    words = [f"{_outcome(vs_base)} base ({_evidence(metric, vs_base)})"]
    control = _against_control(comparisons, size, metric, name)
    if control is not None:
        what = "the control" if name in _ceilings(comparisons) else "rebalancing"
        evidence = _evidence("", control)
        words.append(f"{_outcome(control)} {what} ({control['reference']}: {evidence})")
    share = _share_entry(comparisons, size, metric, name)
    if share is not None:
        low = share["ceiling_gain_ci"][0]
        if share["ceiling_above_control"] and low is not None and low > 0:
            words.append(f"share of the ceiling gain {_share(comparisons, size, metric, name)}")
        else:
            words.append(
                "the same number of real extra images was not shown to beat rebalancing "
                f"({share['ceiling_gain']:+.3f}), so no generator could be expected to here"
            )
    return f"- **{name}** at {size}: " + "; ".join(words) + "."


def _outcome(test: dict) -> str:
    if test["beats"]:
        return "**beat**"
    return "did **not** beat" if test["estimate"] <= 0 else "was **not shown** to beat"


def _evidence(metric: str, test: dict) -> str:
    name = f"Δ {metric} " if metric else "Δ "
    if test["p_value"] is None:
        return f"{name}{test['estimate']:+.3f}, untested: {test.get('reason', '')}"
    return f"{name}{test['estimate']:+.3f}, p {test['p_value']:.2g}, p_holm {test['p_holm']:.2g}"


def _ceilings(comparisons: dict) -> set[str]:
    return {s["ceiling"] for s in comparisons["ceiling_shares"]}


def _environment(results: dict) -> list[str]:
    env = results.get("environment")
    if not env:
        return []
    total = sum(v for v in results.get("wall_seconds", {}).values() if v)
    return [
        "## Environment",
        "",
        f"jax {env['jax']}, flax {env['flax']}, optax {env['optax']}, numpy {env['numpy']}, "
        f"Python {env['python']}; backend {env['backend']}, {len(env['devices'])} device(s), "
        f"{env['processes']} process(es). Classifier training took {total / 60:.1f} min in "
        "all (per cell: wall_seconds in results.json; GAN runs log their own time).",
        "",
    ]


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
        "nearest-neighbour distance (~0.5 for fresh samples, 1.0 for copies). Recognised: "
        "fraction of images the reference classifier assigns to their class, generated "
        "(real); a generator that copies another class's look scores low. A metric below "
        "its minimum sample size is n/a, with the reason.",
        "",
        "| GAN | size | IS (real) | FID | KID x1e3 | precision | recall | MS-SSIM (real) | "
        "memorised | copies | recognised (real) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
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
                f"{cell(q.get('copies'))} | {cell(q.get('recognised'))} "
                f"({cell(q.get('recognised_real'))}) |"
            )
            warnings += _looks_like_another_class(gan, s, q)
    return lines + [""] + warnings + ([""] if warnings else []) + _sample_grids(quality, sizes)


def _sample_grids(quality: dict, sizes: list[str]) -> list[str]:
    """Each GAN's samples (top rows) above real minority images (bottom rows), per size."""
    lines = []
    for gan, by_size in quality.items():
        for s in sizes:
            shown = (by_size.get(s) or {}).get("samples")
            if shown:
                lines += [
                    f"**{gan}** at {s} (seed {shown['seed']}): generated above real",
                    "",
                    f"![{gan} at {s}]({shown['path']})",
                    "",
                ]
    if not lines:
        return []
    return [
        "### Samples",
        "",
        "Each grid: the GAN's images (top rows) above real images of "
        "the minority class from the same cell (bottom rows).",
        "",
        *lines,
    ]


def _looks_like_another_class(gan: str, size: str, q: dict) -> list[str]:
    """A warning when the classifier recognises far fewer generated than real images."""
    fake, real = (q.get(k) or {} for k in ("recognised", "recognised_real"))
    if fake.get("mean") is None or real.get("mean") is None:
        return []
    if fake["mean"] >= real["mean"] - 0.25:
        return []
    return [
        f"- **{gan}** at {size}: the reference classifier assigns only {fake['mean']:.0%} of "
        f"its images to their class (real images: {real['mean']:.0%}): its samples look like "
        "another class (for a transferred GAN, the class it was pretrained on)."
    ]


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
