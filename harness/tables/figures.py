"""Figures from finished runs (matplotlib, PNG and PDF), written beside the tables.

- ``fig4a_curves``: test accuracy per epoch (the distillation runs' ``metrics.jsonl``), mean
  and min-max band over seeds, for G_l vs G_l+G_r and MMGD vs MMGD+G_r (the paper's Fig. 4a);
- ``fig3_conv1``: the first convolution's filters of each teacher and of the MMGD and G_l+G_r
  students (the paper's Fig. 3);
- ``graph_weights``: the learned G_l adjacency and G_r vertex weights, mean over seeds.

Every figure's caption file (``<name>.txt``) names the runs it was drawn from.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.atomic import atomic_file, write_text_atomic


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out_dir: Path, name: str, runs: list[str], caption: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        path = out_dir / f"{name}.{ext}"
        # no timestamp in the PDF, so an unchanged figure is byte-identical when redrawn
        with atomic_file(path) as fh:
            fig.savefig(fh, format=ext, dpi=150, bbox_inches="tight",
                        metadata={"CreationDate": None} if ext == "pdf" else None)
        paths.append(path)
    write_text_atomic(out_dir / f"{name}.txt", caption + "\n\nRuns:\n" + "".join(f"- {r}\n" for r in runs))
    _plt().close(fig)
    return paths


def _curve(run) -> tuple[np.ndarray, np.ndarray]:
    rows = [r for r in run.rows() if "test_value" in r]
    return np.array([r["epoch"] for r in rows]), 100.0 * np.array([r["test_value"] for r in rows])


def fig4a_curves(runs: dict[str, list], labels: dict[str, str], out_dir: Path) -> list[Path]:
    """Test accuracy per epoch: ``runs`` holds gl, gl+gr, mmgd, mmgd+gr (lists of seed runs)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    used = []
    for ax, pair in zip(axes, (("gl", "gl+gr"), ("mmgd", "mmgd+gr"))):
        for method, style in zip(pair, ("--", "-")):
            curves = [_curve(r) for r in runs[method]]
            epochs = curves[0][0]
            values = np.stack([c[1] for c in curves])
            ax.plot(epochs, values.mean(0), style, label=f"{labels[method]} ({len(curves)} seeds)")
            if len(curves) > 1:
                ax.fill_between(epochs, values.min(0), values.max(0), alpha=0.2)
            used += [str(r.path) for r in runs[method]]
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy, video level (%)")
    fig.suptitle("Fig. 4a (ours): does G_r make the logits graph learn faster? mean, band = min..max over seeds",
                 fontsize=9)
    return _save(fig, out_dir, "fig4a_curves", used,
                 "Test accuracy per epoch of the distilled student, mean over seeds (band: min to max).")


def _first_conv(state_dict: dict) -> tuple[str, np.ndarray] | None:
    """The first 4-D weight with 3 input channels and its key, else None. For the conv
    backbones that is conv1 on RGB; PredNet has none on its input (its ConvLSTM reads the
    frame with the error maps), so its panel shows the first 3-channel convolution it has,
    named by its key."""
    for key, value in state_dict.items():
        if key.endswith("weight") and value.ndim == 4 and value.shape[1] == 3:
            return key, value.detach().float().cpu().numpy()
    return None


def _filter_grid(w: np.ndarray, cols: int = 8) -> np.ndarray:
    n, _, kh, kw = w.shape
    rows = -(-n // cols)
    grid = np.ones((rows * (kh + 1) + 1, cols * (kw + 1) + 1, 3))
    for i in range(n):
        f = w[i].transpose(1, 2, 0)
        f = (f - f.min()) / max(float(f.max() - f.min()), 1e-12)
        r, c = divmod(i, cols)
        grid[1 + r * (kh + 1): 1 + r * (kh + 1) + kh, 1 + c * (kw + 1): 1 + c * (kw + 1) + kw] = f
    return grid


def fig3_conv1(models: dict[str, tuple[dict, str]], out_dir: Path) -> list[Path]:
    """``models``: ``{title: (state_dict, run or checkpoint path)}``; one filter grid each
    (PredNet has no RGB convolution: its panel says so)."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(models), figsize=(2.6 * len(models), 2.8))
    for ax, (title, (sd, _)) in zip(np.atleast_1d(axes), models.items()):
        found = _first_conv(sd)
        if found is None:
            ax.text(0.5, 0.5, "no 3-channel convolution", ha="center", va="center", fontsize=8)
        else:
            key, w = found
            ax.imshow(_filter_grid(w), interpolation="nearest")
            title = f"{title}\n{key}: {w.shape[0]} x {w.shape[2]}x{w.shape[3]}"
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.suptitle("Fig. 3 (ours): first-layer filters, each filter scaled to its own range", fontsize=9)
    return _save(fig, out_dir, "fig3_conv1", [src for _, src in models.values()],
                 "First convolution's filters (RGB), each filter min-max scaled.")


def graph_weights(runs: dict[str, list], out_dir: Path) -> list[Path]:
    """The learned G_l adjacency (rows: receiving teacher m, columns: sending teacher n) and
    the G_r vertex weights of the gl+gr runs, mean over seeds."""
    plt = _plt()
    finals = [r.final()["artifacts"] for r in runs["gl+gr"]]
    adj = np.mean([f["gl_adjacency"] for f in finals], axis=0)
    names = finals[0]["gl_teachers"]
    weights = np.mean([f["gr_vertex_weights"] for f in finals], axis=0)
    vertices = finals[0]["gr_vertices"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4), gridspec_kw={"width_ratios": [1, 1.4]})
    im = a.imshow(adj, cmap="viridis", vmin=0, vmax=max(0.5, float(adj.max())))
    a.set_xticks(range(len(names)), names, fontsize=8)
    a.set_yticks(range(len(names)), names, fontsize=8)
    for i in range(len(names)):
        for j in range(len(names)):
            a.text(j, i, f"{adj[i, j]:.3f}", ha="center", va="center", color="w", fontsize=7)
    a.set_title("G_l adjacency e(n->m), row m", fontsize=8)
    fig.colorbar(im, ax=a, fraction=0.046)
    b.bar(range(len(vertices)), weights)
    b.axhline(1.0 / len(vertices), color="k", ls=":", lw=1, label="uniform")
    b.set_xticks(range(len(vertices)), vertices, rotation=30, fontsize=7)
    b.set_title("G_r vertex weights softmax(g_r / T)", fontsize=8)
    b.legend(fontsize=7)
    fig.suptitle(f"Learned graphs of G_l+G_r, mean over {len(finals)} seeds", fontsize=9)
    return _save(fig, out_dir, "graph_weights", [str(r.path) for r in runs["gl+gr"]],
                 "G_l adjacency and G_r vertex weights learned by the G_l+G_r student, mean over seeds.")


def volume_points(runs: dict[int, list]) -> dict[int, list[float]]:
    """``{number of unlabeled videos: [test accuracy (%) per seed]}`` of ``pipeline.volume_runs``."""
    return {n: [100.0 * r.final()["value"] for r in seed_runs] for n, seed_runs in sorted(runs.items())}


def fig4b_volume(runs: dict[int, list], label: str, out_dir: Path) -> list[Path]:
    """Test accuracy of the distilled student against the number of unlabeled videos its
    teachers were pretrained on: each seed a dot, the mean a line."""
    plt = _plt()
    points = volume_points(runs)
    sizes = list(points)
    fig, ax = plt.subplots(figsize=(4.6, 3.4))
    for n, values in points.items():
        ax.plot([n] * len(values), values, "o", color="C0", alpha=0.4, ms=4)
    ax.plot(sizes, [float(np.mean(points[n])) for n in sizes], "-", color="C0",
            label=f"{label}, mean of {len(points[sizes[0]])} seeds")
    ax.set_xlabel("unlabeled videos used for self-supervised pretraining")
    ax.set_ylabel("test accuracy, video level (%)")
    ax.set_xticks(sizes)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle("Fig. 4b (ours): accuracy vs the volume of unlabeled video", fontsize=9)
    caption = ("Distilled student's test accuracy against the number of unlabeled videos its four teachers were "
               "pretrained on (dots: seeds; line: mean). Means: "
               + ", ".join(f"{n} videos {np.mean(v):.1f}%" for n, v in points.items()) + ".")
    return _save(fig, out_dir, "fig4b_volume", [str(r.path) for rs in runs.values() for r in rs], caption)
