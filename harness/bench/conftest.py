"""Shared by the speed reports: a list of result lines printed at the end of the session
(pytest-benchmark's table has no room for ratios and sizes), and the speed figures' summary
(ratios first, each against its target), printed and written to .benchmarks/summary.md."""

from pathlib import Path

import pytest

_REPORT = pytest.StashKey[list]()
_SUMMARY = pytest.StashKey[list]()
SUMMARY_FILE = Path(".benchmarks") / "summary.md"


@pytest.fixture(scope="session")
def report_lines(request):
    """Append lines here; they are printed under "feature store report" at the end."""
    return request.config.stash.setdefault(_REPORT, [])


@pytest.fixture(scope="session")
def speed_summary(request):
    """Append one dict per figure: figure, what, ratio (float), target (text or ""),
    verdict ("pass" / "miss" / "reported"), detail."""
    return request.config.stash.setdefault(_SUMMARY, [])


def summary_markdown(rows: list[dict]) -> str:
    from harness.provenance import machine_summary, numerics

    lines = ["| Fig. | Ratio | Value | Target | Verdict | Detail |", "|---|---|---:|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["figure"], r["what"])):
        lines.append(f"| {r['figure']} | {r['what']} | {r['ratio']:.3g} | {r['target']} | {r['verdict']} | "
                     f"{r['detail']} |")
    return "\n".join([*lines, "", f"Machine: {machine_summary(numerics())}."])


def pytest_terminal_summary(terminalreporter, config):
    rows = config.stash.get(_SUMMARY, [])
    if rows:
        md = summary_markdown(rows)
        terminalreporter.write_sep("-", "speed summary (ratios measured side by side)")
        for line in md.splitlines():
            terminalreporter.write_line(line)
        SUMMARY_FILE.parent.mkdir(parents=True, exist_ok=True)
        SUMMARY_FILE.write_text(md + "\n")
        terminalreporter.write_line(f"written to {SUMMARY_FILE.resolve()}")
    lines = config.stash.get(_REPORT, [])
    if lines:
        terminalreporter.write_sep("-", "feature store report")
        for line in lines:
            terminalreporter.write_line(line)
