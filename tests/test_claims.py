"""Paired intervals and verdicts on hand-made predictions whose answer is known."""

import numpy as np
import pytest

from harness.tables.claims import Cell, ClaimError, Claim, judge, paired_difference

V = 200


def _cell(name, correct_by_seed, num_classes=3):
    """A cell whose seed s is right exactly on the videos where correct_by_seed[s] is 1."""
    targets = np.arange(V) % num_classes
    by_seed = {}
    for s, correct in correct_by_seed.items():
        pred = np.where(np.asarray(correct, bool), targets, (targets + 1) % num_classes)
        by_seed[s] = {"scores": np.eye(num_classes)[pred], "targets": targets, "video_ids": np.arange(V)}
    return Cell(name, by_seed)


def test_a_sure_win_holds_a_sure_loss_fails_a_tie_is_inconclusive():
    right, wrong = np.ones(V), np.zeros(V)
    win = paired_difference(_cell("a", {0: right, 1: right}), _cell("b", {0: wrong, 1: wrong}), n_boot=500)
    assert win.diff == 100.0 and win.lo == win.hi == 100.0 and win.verdict == "holds" and win.paired_seeds
    loss = paired_difference(_cell("a", {0: wrong}), _cell("b", {0: right}), n_boot=500)
    assert loss.verdict == "fails"
    half = (np.arange(V) % 2).astype(float)
    tie = paired_difference(_cell("a", {0: half}), _cell("b", {0: half}), n_boot=500)
    assert tie.diff == 0.0 and tie.verdict == "inconclusive"


def test_the_bootstrap_error_matches_the_paired_formula_for_one_seed():
    """One seed: the SE of a mean of per-video differences d_v is std(d) / sqrt(V)."""
    rng = np.random.default_rng(1)
    ca = (rng.random(V) < 0.6).astype(float)
    cb = np.where(rng.random(V) < 0.15, 1.0 - ca, ca)     # b mostly right where a is: strongly paired
    d = paired_difference(_cell("a", {0: ca}), _cell("b", {0: cb}), n_boot=20_000)
    oracle = 100.0 * (ca - cb).std(ddof=0) / np.sqrt(V)
    assert d.diff == pytest.approx(100.0 * (ca.mean() - cb.mean()))
    assert d.se == pytest.approx(oracle, rel=0.05)
    # pairing matters: two accuracies resampled independently would have a far larger error
    unpaired = 100.0 * np.sqrt(ca.var() / V + cb.var() / V)
    assert d.se < 0.7 * unpaired


def test_a_small_difference_on_few_videos_is_inconclusive_and_several_opponents_need_all():
    # a and b disagree on 40 of 200 videos, a right on 22 of them, b on 18: +2 points, SE ~3
    base = np.zeros(V)
    base[:100] = 1.0
    better = base.copy()
    better[:18] = 0.0          # b right, a wrong
    better[100:122] = 1.0      # a right, b wrong
    cells = {"a": _cell("a", {0: better}), "b": _cell("b", {0: base}), "c": _cell("c", {0: np.zeros(V)})}
    assert judge(Claim("a beats b", "t", "a", ("b",)), cells, n_boot=2000)["verdict"] == "inconclusive"
    assert judge(Claim("a beats c", "t", "a", ("c",)), cells, n_boot=2000)["verdict"] == "holds"
    assert judge(Claim("a is best", "t", "a", ("b", "c")), cells, n_boot=2000)["verdict"] == "inconclusive"
    assert judge(Claim("c is best", "t", "c", ("a", "b")), cells, n_boot=2000)["verdict"] == "fails"


def test_runs_on_other_videos_or_without_predictions_are_refused():
    a = _cell("a", {0: np.ones(V)})
    b = _cell("b", {0: np.ones(V)})
    b.by_seed[0]["video_ids"] = np.arange(V)[::-1].copy()
    with pytest.raises(ClaimError, match="b \\(seed 0\\): its test videos differ"):
        paired_difference(a, b, n_boot=10)
    with pytest.raises(ClaimError, match="c: no runs with saved test predictions"):
        paired_difference(a, Cell("c", {}), n_boot=10)


def test_seeds_are_resampled_together_when_both_cells_have_them():
    """A seed that is good for both methods must not count as a difference: with the seeds
    paired the error stays small; resampled independently it would be tens of points."""
    right, wrong = np.ones(V), np.zeros(V)
    b0 = right.copy()
    b0[:10] = 0.0
    d = paired_difference(_cell("a", {0: right, 1: wrong}), _cell("b", {0: b0, 1: wrong}), n_boot=4000)
    assert d.paired_seeds and d.diff == pytest.approx(2.5) and d.se < 3.0
    unpaired = paired_difference(_cell("a", {0: right, 1: wrong}), _cell("b", {5: b0, 6: wrong}), n_boot=4000)
    assert not unpaired.paired_seeds and unpaired.se > 20.0


def test_claims_render_from_run_folders_beside_the_paper(tmp_path):
    import json

    from harness.data.frames import save_predictions
    from harness.runs import RunDir
    from harness.tables.claims import TABLE2_CLAIMS, cells_from_runs, render_claims
    from harness.tables.render import paper_numbers

    targets = np.arange(V) % 3
    rng = np.random.default_rng(0)
    rates = {"fusion": 0.3, "ensemble": 0.3, "kd": 0.4, "mmgd": 0.5, "gl": 0.55, "feat": 0.45, "gr": 0.5,
             "mmgd+gr": 0.6, "gl+gr": 0.95}
    runs = {}
    for m, rate in rates.items():
        runs[m] = []
        for s in (0, 1):
            folder = tmp_path / f"{m}-{s}"
            folder.mkdir()
            right = rng.random(V) < rate
            pred = np.where(right, targets, (targets + 1) % 3)
            save_predictions(folder, np.eye(3)[pred], targets, np.arange(V))
            (folder / "final.json").write_text(json.dumps({"seed": s, "value": float(right.mean())}))
            runs[m].append(RunDir(folder))
    cells = cells_from_runs(runs)
    results = [judge(c, cells, n_boot=300) for c in TABLE2_CLAIMS]
    md = render_claims(results, {1: paper_numbers(1), 2: paper_numbers(2)}, "synth-tiny, split 1", "harness claims",
                       tmp_path / "out")
    best = next(r for r in results if r["claim"] == "G_l+G_r is the best row of Table 2")
    assert best["verdict"] == "holds" and len(best["differences"]) == 8
    assert "| G_l+G_r beats MMGD+G_r | Table 2 |" in md and "| +1.9 |" in md   # paper: 68.9 - 67.0
    assert "`harness claims --volumes` trains its runs | | **not tested** |" in md
    assert "Median standard error of a paired difference" in md
    data = json.loads((tmp_path / "out" / "claims.json").read_text())
    assert data["verdicts"]["holds"] + data["verdicts"]["fails"] + data["verdicts"]["inconclusive"] == len(results)


def test_a_curve_claim_is_early_accuracy_paired_over_seeds_with_a_t_interval():
    from harness.tables.claims import curve_difference, early_accuracy

    assert early_accuracy([0.1, 0.3, 0.9, 0.9]) == pytest.approx(20.0)     # first half of 4 epochs
    assert early_accuracy([0.5]) == pytest.approx(50.0)
    base = [0.2, 0.2, 0.5, 0.5]
    # per-seed early differences of 2, 3 and 4 points: mean 3, sd 1, t(0.975, 2 df) = 4.3027
    a = {s: [v + (s + 2) / 100 for v in base] for s in (0, 1, 2)}
    b = {s: base for s in (0, 1, 2, 7)}                                     # seed 7 unpaired: left out
    d = curve_difference(a, b)
    assert d.diff == pytest.approx(3.0) and d.seeds_a == [0, 1, 2]
    half = 4.302653 / np.sqrt(3)
    assert d.lo == pytest.approx(3.0 - half, abs=1e-4) and d.hi == pytest.approx(3.0 + half, abs=1e-4)
    assert d.verdict == "holds"
    one = curve_difference({0: [0.9, 0.9]}, {0: [0.1, 0.1]})
    assert one.diff == pytest.approx(80.0) and one.verdict == "inconclusive"   # one seed: no interval
    with pytest.raises(ClaimError, match="no seed"):
        curve_difference({0: base}, {1: base})


def test_projected_error_shrinks_as_one_over_root_videos_for_one_seed():
    """One seed, independent per-video differences: SE(n videos) = SE(V) * sqrt(V / n)."""
    from harness.tables.claims import claim_pairs, projected_se

    rng = np.random.default_rng(2)
    ca = (rng.random(V) < 0.6).astype(float)
    cb = (rng.random(V) < 0.5).astype(float)
    cells = {"a": _cell("a", {0: ca}), "b": _cell("b", {0: cb})}
    claim = Claim("a beats b", "t", "a", ("b",))
    base = 100.0 * (ca - cb).std(ddof=0) / np.sqrt(V)
    (at_v, at_4v) = projected_se(claim_pairs(cells, [claim]), [(1, V), (1, 4 * V)], n_boot=4000)
    assert at_v["median_se_points"] == pytest.approx(base, rel=0.06)
    assert at_4v["median_se_points"] == pytest.approx(base / 2, rel=0.06)
    # the observed difference is not what is projected
    assert paired_difference(cells["a"], cells["b"], 500, n_videos=4 * V).diff == pytest.approx(
        100.0 * (ca.mean() - cb.mean()))


def test_the_volume_claim_compares_the_largest_volume_with_the_smallest():
    from harness.tables.claims import judge_volume

    half = (np.arange(V) % 2).astype(float)
    more = half.copy()
    more[::2] = 1.0                                       # right everywhere: +50 points over "half"
    cells = {75: _cell("75", {0: half, 1: half}), 150: _cell("150", {0: half, 1: half}),
             300: _cell("300", {0: more, 1: more})}
    r = judge_volume(cells)
    assert r["volumes"] == [75, 150, 300] and r["verdict"] == "holds"
    assert r["differences"][0]["diff"] == pytest.approx(50.0) and r["differences"][0]["a"] == "300"
    assert [s["verdict"] for s in r["steps"]] == ["inconclusive", "holds"]
    assert judge_volume({75: cells[300], 300: cells[75]})["verdict"] == "fails"
    with pytest.raises(ClaimError, match="at least two volumes"):
        judge_volume({300: cells[300]})


def test_measured_power_compares_the_lowest_seeds_with_all_of_them():
    """``measured_power`` (`harness power`'s table) on cells whose errors are known: a
    is right everywhere on seeds 0 and 1 and wrong everywhere on seeds 2-9, b right on half the
    videos on every seed. On the three lowest seeds a leads by 16.7 points, with the error of a
    mean of 3 seeds drawn from {right, right, wrong} (100 sqrt(2/9 / 3) = 27.2) and the videos'
    (50 / sqrt(V) = 3.5) in quadrature; projected to ten seeds drawn from those three, 100
    sqrt(2/9 / 10) = 14.9 with the videos'; on all ten a trails by 30, 100 sqrt(0.16 / 10) = 12.6
    with the videos'."""
    from harness.tables.claims import measured_power

    half = (np.arange(V) % 2).astype(float)
    videos = 50.0 / np.sqrt(V)
    # inserted highest seed first: "the lowest three" must not mean "the first three stored"
    a = _cell("a", {s: (np.ones(V) if s < 2 else np.zeros(V)) for s in range(9, -1, -1)})
    b = _cell("b", {s: half for s in range(10)})
    claims = [Claim("a beats b", "t", "a", ("b",)), Claim("a is best", "t", "a", ("b", "c"))]  # no cell c
    rows = measured_power({"a": a, "b": b}, claims, n_boot=4000, project_videos=(4 * V,))
    assert len(rows) == 1      # (a, b) once; (a, c) left out, c was not run
    r = rows[0]
    assert (r["better"], r["than"], r["n_seeds"], r["from_seeds"], r["n_videos"]) == ("a", "b", 10, 3, V)
    assert r["diff_3"] == pytest.approx(100 * 2 / 3 - 50) and r["diff_n"] == pytest.approx(-30.0)
    assert r["se_3"] == pytest.approx(np.hypot(100 * np.sqrt(2 / 27), videos), rel=0.1)
    assert r["se_projected_from_3"] == pytest.approx(np.hypot(100 * np.sqrt(2 / 90), videos), rel=0.1)
    assert r["se_n"] == pytest.approx(np.hypot(100 * np.sqrt(0.016), videos), rel=0.1)
    lo, hi = r["ci_n"]
    assert lo < r["diff_n"] < hi
    assert r["verdict_n"] == ("holds" if lo > 0 else "fails" if hi < 0 else "inconclusive")
    assert 0 < r[f"se_n_projected_{4 * V}_videos"] < r["se_n"]
