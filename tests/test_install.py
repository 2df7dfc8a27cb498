"""A non-editable install, used from a scratch folder: the package carries everything a user
needs (the paper's reference tables, the speed reports) and no command reads the checkout."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    site = tmp_path_factory.mktemp("site")
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                          "--target", str(site), str(REPO)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return site


def _harness(site, cwd, *args, timeout=600):
    env = {k: v for k, v in os.environ.items() if k not in ("HARNESS_RUNS", "PYTHONPATH")}
    env["PYTHONPATH"] = str(site)
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_installed_package_runs_from_a_scratch_folder(installed, smoke_store, tmp_path):
    where = subprocess.run([sys.executable, "-c", "import harness; print(harness.__file__)"], cwd=tmp_path,
                           env={**os.environ, "PYTHONPATH": str(installed)}, capture_output=True, text=True)
    assert Path(where.stdout.strip()).is_relative_to(installed), where   # not the checkout
    out = _harness(installed, tmp_path, "distill", "--store", str(smoke_store), "--method", "gl+gr", "--preset",
                   "smoke", "--set", "epochs=1")
    assert out.returncode == 0, out.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["distill"]   # no teacher was trained
    out = _harness(installed, tmp_path, "ablation", "--method", "kd", "--preset", "smoke", "--store", str(smoke_store))
    assert out.returncode == 0, out.stderr[-3000:]
    table = json.loads((tmp_path / "tables/generated/smoke/ablation/kd/table2.json").read_text())
    assert table["rows"][0]["paper"] == {"ucf101": 60.1, "hmdb51": 24.3, "ccv": 48.1}   # package data
    # the whole Table 2 on smoke, from nothing: data, teachers, store, every method
    scratch = tmp_path / "fresh"
    scratch.mkdir()
    out = _harness(installed, scratch, "table2", "--preset", "smoke")
    assert out.returncode == 0, out.stderr[-3000:]
    rows = json.loads((scratch / "tables/generated/smoke/table2.json").read_text())["rows"]
    assert len(rows) == 10 and all(r["ours"] is not None for r in rows)
    out = _harness(installed, tmp_path, "bench", "--collect-only", "-q")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "test_bench_reader.py" in out.stdout and "test_bench_em.py" in out.stdout
    assert not (Path(installed) / "harness" / "bench" / ".pytest_cache").exists()


def test_no_file_of_the_repository_points_outside_it():
    """Docs and code name paths inside the checkout only (a user's clone has nothing else)."""
    import re
    import subprocess as sp

    files = sp.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    # spelt in pieces so this file does not match itself
    outside = re.compile("|".join([r"\.\./" + "shared", "/" + "work/", "/" + r"home/\w+", "/" + r"Users/\w+"]))
    hits = []
    for name in files:
        path = REPO / name
        if path.suffix not in (".py", ".md", ".cfg", ".ini", ".toml", ".txt", ".csv", ".json") or path.is_symlink():
            continue
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if outside.search(line):
                hits.append(f"{name}:{n}: {line.strip()[:100]}")
    assert hits == []
