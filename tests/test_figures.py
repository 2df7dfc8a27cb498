"""Figures are drawn from run folders only, as PNG and PDF with a caption naming the runs."""

import json

import numpy as np
import torch

from harness.runs import RunDir


def _run(folder, seed, curve, adj=None):
    folder.mkdir(parents=True)
    (folder / "metrics.jsonl").write_text("".join(json.dumps({"epoch": e + 1, "test_value": v}) + "\n"
                                                  for e, v in enumerate(curve)))
    art = {}
    if adj is not None:
        art = {"gl_adjacency": adj, "gl_teachers": ["a", "b"], "gr_vertex_weights": [0.3, 0.7],
               "gr_vertices": ["axb", "axc"]}
    (folder / "final.json").write_text(json.dumps({"seed": seed, "value": curve[-1], "artifacts": art}))
    return RunDir(folder)


def test_curves_weights_and_filters_are_written_with_their_runs(tmp_path):
    from harness.tables.figures import _first_conv, fig3_conv1, fig4a_curves, graph_weights

    runs = {m: [_run(tmp_path / f"{m}{s}", s, [0.1 * (s + 1), 0.2, 0.3], [[0.6, 0.4], [0.5, 0.5]])
                for s in (0, 1)] for m in ("gl", "gl+gr", "mmgd", "mmgd+gr")}
    out = tmp_path / "fig"
    paths = fig4a_curves(runs, {m: m for m in runs}, out) + graph_weights(runs, out)
    conv = torch.nn.Conv2d(3, 4, 5)
    paths += fig3_conv1({"teacher x": ({"features.0.weight": conv.weight}, "ckpt-x"),
                         "prednet": ({"cells.0.conv.weight": torch.zeros(4, 17, 3, 3)}, "ckpt-p")}, out)
    assert sorted(p.name for p in paths) == sorted(f"{n}.{e}" for n in ("fig4a_curves", "graph_weights", "fig3_conv1")
                                                   for e in ("png", "pdf"))
    assert all(p.stat().st_size > 1000 for p in paths)
    caption = (out / "graph_weights.txt").read_text()
    assert all(str(r.path) in caption for r in runs["gl+gr"]) and "gl0" not in caption
    assert "ckpt-x" in (out / "fig3_conv1.txt").read_text()
    assert _first_conv({"cells.0.conv.weight": torch.zeros(4, 17, 3, 3)}) is None
    first = (out / "fig4a_curves.png").read_bytes()
    fig4a_curves(runs, {m: m for m in runs}, out)
    assert (out / "fig4a_curves.png").read_bytes() == first       # redrawn from the same runs: same bytes
    key, w = _first_conv({"features.0.weight": conv.weight})
    assert key == "features.0.weight" and w.shape == (4, 3, 5, 5)


def test_what_is_plotted_is_the_runs_numbers(tmp_path, monkeypatch):
    """The drawn data, read back from the figure objects, against numbers computed here from the
    runs' own files: Fig. 4a's mean line and band, the graph heat map and the weight bars."""
    import harness.tables.figures as figures

    drawn = {}
    monkeypatch.setattr(figures, "_save", lambda fig, out_dir, name, runs, caption: drawn.setdefault(name, fig) and [])
    curves = {0: [0.1, 0.4, 0.5], 1: [0.3, 0.2, 0.7]}
    runs = {m: [_run(tmp_path / f"{m}{s}", s, [v + (0.05 if m == "gl+gr" else 0.0) for v in c],
                     [[0.6 + 0.1 * s, 0.4 - 0.1 * s], [0.5, 0.5]]) for s, c in curves.items()]
            for m in ("gl", "gl+gr", "mmgd", "mmgd+gr")}
    figures.fig4a_curves(runs, {m: m for m in runs}, tmp_path)
    ax = drawn["fig4a_curves"].axes[0]
    gl_line, glgr_line = ax.lines[:2]
    assert np.allclose(gl_line.get_xdata(), [1, 2, 3])
    assert np.allclose(gl_line.get_ydata(), [20.0, 30.0, 60.0])          # mean over the two seeds, in %
    assert np.allclose(glgr_line.get_ydata(), [25.0, 35.0, 65.0])
    band = ax.collections[0].get_paths()[0].vertices[:, 1]               # min..max over seeds
    assert np.isclose(band.min(), 10.0) and np.isclose(band.max(), 70.0)
    figures.graph_weights(runs, tmp_path)
    heat, bars = drawn["graph_weights"].axes[:2]
    assert np.allclose(heat.images[0].get_array(), [[0.65, 0.35], [0.5, 0.5]])   # mean adjacency
    assert np.allclose([b.get_height() for b in bars.patches], [0.3, 0.7])
