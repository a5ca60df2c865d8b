"""The evaluate job's report: markdown tables of generated-image quality and classifier
metrics, ROC curves and image-pair grids (what a reviewer reads and looks at)."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from medgan_jax.images import image_grid
from medgan_jax.metrics.classification import headline_metrics


def save_pairs_grid(path: str, top: np.ndarray, bottom: np.ndarray, columns: int = 8) -> None:
    """Two image sets (in [-1, 1]) one above the other: `top` rows, a gap, `bottom` rows.

    With as many columns as images, column i shows the pair (top[i], bottom[i]).
    """
    columns = min(columns, len(top)) if len(top) != len(bottom) else min(len(top), 16)
    upper, lower = image_grid(top, columns), image_grid(bottom, columns)
    width = max(upper.shape[1], lower.shape[1])
    gap = np.full((6, width, upper.shape[2]), 128, np.uint8)
    pad = lambda g: np.pad(g, ((0, 0), (0, width - g.shape[1]), (0, 0)), constant_values=255)
    grid = np.concatenate([pad(upper), gap, pad(lower)])
    scale = max(1, 512 // grid.shape[1])
    picture = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    picture.save(path)


def roc_plot(path: str, runs: dict[str, dict]) -> None:
    """ROC curves of every classifier run; one panel per class for multi-class/-label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    first = next(iter(runs.values()))
    panels = [None] if first["task"] == "binary" else list(range(len(first["class_names"])))
    cols = min(len(panels), 4)
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 4 * rows), squeeze=False)
    for ax, k in zip(axes.flat, panels):
        for name, run in runs.items():
            y, s = binary_view(run, k)
            if len(np.unique(y)) < 2:
                continue
            fpr, tpr, _ = roc_curve(y, s)
            ax.plot(fpr, tpr, label=name)
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        title = "ROC" if k is None else first["class_names"][k]
        ax.set(title=title, xlabel="1 - specificity", ylabel="sensitivity")
        ax.legend(fontsize=8, loc="lower right")
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def binary_view(run: dict, k: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Binary labels and scores of one ROC panel (class k one-vs-rest, masked labels out)."""
    labels, scores = run["labels"], run["scores"]
    if k is None:
        return labels, scores
    if run["task"] == "multiclass":
        return (labels == k).astype(int), scores[:, k]
    keep = run["mask"][:, k] > 0 if "mask" in run else np.ones(len(labels), bool)
    return labels[keep, k], scores[keep, k]


def markdown(results: dict) -> str:
    """The evaluation report: generated-image quality and classifier metrics."""
    lines = ["# Evaluation report", ""]
    if results.get("generated"):
        lines += _generated_section(results["generated"], results.get("feature_network"))
    if results.get("classification"):
        lines += _classification_section(results["classification"])
    return "\n".join(lines) + "\n"


def _fmt(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _na(values: dict, key: str) -> str:
    """'n/a (N = 10 < 50: ...)' for a value left out, with the reason saved beside it."""
    reason = values.get(f"{key}_na_reason")
    return f"n/a ({reason})" if reason else "n/a"


def _quality_cells(r: dict) -> dict[str, str]:
    """The generated-set table's metric cells; n/a with the reason where a value is None."""
    scores = r["inception_score"]
    cells = {key: _na(r, key) for key in ("fid", "kid", "precision", "density")}
    cells["is"] = _na(scores, "generated")
    if scores.get("generated") is not None:
        gen, real = scores["generated"], scores.get("real")
        real_text = _na(scores, "real") if real is None else f"{real['mean']:.3f}"
        cells["is"] = f"{gen['mean']:.3f} ± {gen['std']:.3f} ({real_text})"
    if r.get("fid") is not None:
        cells["fid"] = f"{r['fid']:.2f}"
    if r.get("kid") is not None:
        cells["kid"] = f"{1e3 * r['kid']['mean']:.2f} ± {1e3 * r['kid']['std']:.2f}"
    if r.get("precision") is not None:
        cells["precision"] = f"{r['precision']:.3f} / {r['recall']:.3f} (k = {r['prdc_k']})"
    if r.get("density") is not None:
        cells["density"] = f"{r['density']:.3f} / {r['coverage']:.3f}"
    return cells


def _generated_section(generated: dict, network: str | None) -> list[str]:
    lines = [
        f"## Generated images (feature network: {network})",
        "",
        "IS and MS-SSIM are shown for generated (real) images. MS-SSIM is the mean over "
        "consecutive pairs: higher means less diverse. Precision/recall (Kynkäänniemi et al. "
        "2019: fidelity / variety) and density/coverage (Naeem et al. 2020) use each point's "
        "k-nearest-neighbour ball in the FID/KID feature space. Memorised = fraction of "
        "generated images closer to a training image than the median training image is to "
        "its nearest neighbour (about 0.5 for fresh samples, 1.0 for copies). A metric below "
        "its minimum sample size is n/a, with the reason. Recognised = fraction the feature "
        "classifier assigns to the set's class, generated (real).",
        "",
        "| set | class | N gen / real | IS | FID | KID x1e3 | precision / recall | "
        "density / coverage | MS-SSIM | memorised pixel / feature | exact copies | recognised |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for name, r in generated.items():
        cells = _quality_cells(r)
        div = r["ms_ssim_diversity"]
        mem = r["memorization"]
        lines.append(
            f"| {name} | {r['class_name']} | {r['num_generated']} / {r['num_real']} | "
            f"{cells['is']} | {cells['fid']} | {cells['kid']} | {cells['precision']} | "
            f"{cells['density']} | "
            f"{_fmt(div['generated']['mean'])} ({_fmt(div['real']['mean'])}) | "
            f"{mem['pixel']['fraction_closer_than_threshold']:.2f} / "
            f"{mem['feature']['fraction_closer_than_threshold']:.2f} | "
            f"{mem['pixel']['num_copies']} | {_recognised_cell(r.get('recognised_as_class'))} |"
        )
        gen_div, real_div = div["generated"]["mean"], div["real"]["mean"]
        if gen_div is not None and real_div is not None and gen_div > real_div + 0.05:
            notes.append(
                f"- **{name}**: generated MS-SSIM {gen_div:.3f} is well above the real "
                f"{real_div:.3f}: the generator may have collapsed to a few modes."
            )
        if mem["pixel"]["num_copies"]:
            notes.append(
                f"- **{name}**: {mem['pixel']['num_copies']} generated image(s) reproduce a "
                "training image: see closest_pairs.png before sharing these images."
            )
        lines_plots = r.get("plots", {})
        notes.append(f"- {name}: streamed {r['generated_images_per_s']:.0f} generated images/s.")
        notes.append(
            f"- {name}: samples (top) vs real (bottom) in `{lines_plots.get('samples')}`; "
            f"closest generated/training pairs in `{lines_plots.get('closest_pairs')}`."
        )
    return lines + [""] + notes + [""]


def _recognised_cell(recognised: dict | None) -> str:
    if not recognised or recognised.get("generated") is None:
        return "n/a" + (f" ({recognised['generated_na_reason']})" if recognised else "")
    return f"{_fmt(recognised['generated'])} ({_fmt(recognised['real'])})"


def _classification_section(classification: dict) -> list[str]:
    lines = [
        "## Classifiers (test set)",
        "",
        "Accuracy and AUC with 95% stratified bootstrap CIs; sensitivity, specificity and F1 "
        "are macro averages for multi-class and multi-label tasks.",
        "",
        "| run | accuracy [95% CI] | balanced acc. | AUC [95% CI] | sensitivity | "
        "specificity | F1 |",
        "|---|---|---|---|---|---|---|",
    ]
    tests = []
    for name, r in classification.items():
        h = headline_metrics(r)
        boot = r.get("bootstrap", {})
        lines.append(
            f"| {name} | {_fmt(h['accuracy'])} {_ci(boot.get('accuracy'))} | "
            f"{_fmt(h['balanced_accuracy'])} | {_fmt(h['roc_auc'])} {_ci(boot.get('roc_auc'))} | "
            f"{_fmt(h['sensitivity'])} | {_fmt(h['specificity'])} | {_fmt(h['f1'])} |"
        )
        for key, value in r.items():
            if key.startswith("delong_vs_"):
                tests += _delong_lines(name, key[len("delong_vs_") :], value)
    if tests:
        lines += ["", "DeLong's test of the AUC difference against the first run:", ""] + tests
    return lines + [""]


def _ci(boot: dict | None) -> str:
    if not boot or "ci_low" not in boot:
        return ""
    return f"[{boot['ci_low']:.3f}, {boot['ci_high']:.3f}]"


def _delong_lines(name: str, baseline: str, value: dict) -> list[str]:
    tests = {"": value} if "p_value" in value else value
    lines = []
    for label, t in tests.items():
        where = f" ({label})" if label else ""
        if "p_value" not in t:
            lines.append(f"- {name} vs {baseline}{where}: undefined ({t.get('undefined')})")
            continue
        verdict = "significant at 0.05" if t["p_value"] < 0.05 else "not significant"
        lines.append(
            f"- {name} vs {baseline}{where}: ΔAUC {t['difference']:+.3f} "
            f"[{t['ci_low']:+.3f}, {t['ci_high']:+.3f}], p = {t['p_value']:.3g} ({verdict})"
        )
    return lines
