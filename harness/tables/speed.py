"""The speed table ("better and faster"): renders what ``harness.speed.speed_table`` measured
as ``speed.{md,csv,json}``; it measures nothing itself."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from harness.atomic import write_text_atomic
from harness.provenance import code_version, write_json_atomic

CSV_COLUMNS = ("shapes", "model", "arch", "input", "params", "gflops_per_frame", "gflops_per_prediction",
               "frames_per_s", "batch", "rounds")


def _rate(v: float) -> str:
    """frames/s with three significant digits however slow (paper PredNet: ~0.05 on a CPU)."""
    return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"


def _row_line(r: dict) -> str:
    return (f"| {r['shapes']} | {r['model']} | {r['arch']} | {r['input']} | {r['params'] / 1e6:.2f} M | "
            f"{r['gflops_per_frame']:.3f} | {r['gflops_per_prediction']:.3f} | {_rate(r['frames_per_s'])} |")


def _ratio_line(q: dict) -> str:
    return (f"- {q['shapes']} shapes: the student runs {q['frames_per_s']:.1f}x the frames/s of the four teachers "
            f"together, with 1/{q['params']:.1f} of their parameters and 1/{q['gflops_per_prediction']:.1f} of "
            f"their FLOPs per prediction.")


def render_speed(result: dict, command: str, out_dir: Path) -> str:
    """Write ``speed.md``, ``speed.csv`` and ``speed.json`` under ``out_dir``; return the markdown."""
    version = code_version()  # one stamp for every file
    md = "\n".join([
        f"Speed of the teachers and the student at the {' and '.join(q['shapes'] for q in result['ratios'])} "
        f"model shapes, measured on {result['device']}. Random weights, eval mode, no gradients; a frame is one "
        "prediction (PredNet reads the clip ending at the frame). frames/s: median over interleaved rounds.",
        "",
        *(_ratio_line(q) for q in result["ratios"]),
        "",
        "| Shapes | Model | Arch | Input | Params | GFLOPs / frame | GFLOPs / prediction | frames/s |",
        "|---|---|---|---:|---:|---:|---:|---:|",
        *(_row_line(r) for r in result["rows"]),
        "",
        "FLOPs counted by torch.utils.flop_counter (2 per multiply-add of convolutions and matrix products).",
        f"Made by: `{command}` (code {version}); batch and per-round seconds of each row are in speed.json.",
    ])
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "speed.md", md + "\n")
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CSV_COLUMNS)
    for r in result["rows"]:
        writer.writerow([r[c] for c in CSV_COLUMNS])
    write_text_atomic(out_dir / "speed.csv", buf.getvalue())
    write_json_atomic(out_dir / "speed.json", {**result, "command": command, "code_version": version})
    return md
