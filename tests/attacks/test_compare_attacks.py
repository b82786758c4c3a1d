"""The attack comparison: bootstrap intervals, the claim-decision rule, the budget table, claims on hand-made
runs, and one end-to-end ``coadv compare-attacks`` over two attacks x two budgets on random-weight victims."""

from __future__ import annotations

import inspect
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from coadv.cli import cli_main
from coadv.compare import budgets, configs, jobs
from coadv.compare import main as compare_attacks
from coadv.compare.claims import claims_markdown, comparisons
from coadv.compare.stats import (
    MEAN,
    Comparison,
    bootstrap,
    claim_verdict,
    correct,
    decide,
    holm,
    median,
    median_interval,
    paired,
    sign_test,
)
from coadv.compare.tables import Run, budget_table, default_table
from coadv.constants import ATTACKS, VICTIMS

nan = float("nan")


def test_bootstrap_interval_of_a_known_mean_is_seeded():
    x = 2.0 * (1 + np.linspace(-0.2, 0.2, 41))  # mean exactly 2; resampled means stay in [1.6, 2.4]
    estimate, low, high = bootstrap(np.random.default_rng(1).permutation(x), seed=7)
    assert estimate == pytest.approx(2.0) and 1.6 <= low < 2.0 < high <= 2.4
    assert bootstrap(x, seed=7) == bootstrap(x, seed=7)
    assert bootstrap(x, seed=7, resamples=50) != bootstrap(x, seed=8, resamples=50)
    assert bootstrap(np.full(9, 1.25)) == (1.25, 1.25, 1.25)
    assert all(math.isnan(v) for v in bootstrap(np.array([])))


def test_median_is_the_lower_middle_everywhere_and_takes_infinity():
    assert median(np.array([4.0, 1.0, 3.0, 2.0])) == 2.0  # torch.median's convention, not NumPy's 2.5
    assert median(np.array([5.0, 1.0, 3.0])) == 3.0
    assert median(np.array([1.0, math.inf, math.inf])) == math.inf
    assert median(np.array([[1.0, 9.0], [4.0, 2.0]])).tolist() == [1.0, 2.0]
    import torch

    values = np.random.default_rng(0).random(10)
    assert median(values) == float(torch.tensor(values).median())


def test_sign_test_interval_and_p_value_by_hand():
    # n = 20 at 95 %: k = 6 (P(Bin(20, 1/2) <= 5) = 0.0207 <= 0.025 < P(<= 6) = 0.0577): [x_(6), x_(15)]
    assert median_interval(np.arange(1.0, 21.0)) == (10.0, 6.0, 15.0)
    # n = 5: even [x_(1), x_(5)] covers only 1 - 2 / 32 = 0.9375 < 95 %: unbounded
    assert median_interval(np.arange(1.0, 6.0)) == (3.0, -math.inf, math.inf)
    assert median_interval(np.arange(1.0, 7.0))[1:] == (1.0, 6.0)  # n = 6: 1 - 2 / 64 = 0.969
    # 18 of 20 above 1: P(Bin(20, 1/2) >= 18) = (190 + 20 + 1) / 2^20
    assert sign_test(np.array([2.0] * 18 + [0.0, 0.0])) == pytest.approx(211 / 2**20)
    # ties (ratio 1: e.g. both fail) count as not above, as in the interval: P(Bin(3, 1/2) >= 1) = 7/8
    assert sign_test(np.array([1.0, 1.0, 3.0])) == pytest.approx(7 / 8)
    assert sign_test(np.array([])) == 1.0
    assert sign_test(np.array([2.0] * 60)) == pytest.approx(2.0**-60)  # the upper tail itself, no 1 - cdf
    assert median_interval(np.arange(2000.0))[1:] == (955.0, 1044.0)  # fast at n = 2,000 (scipy's binomial)


def test_holm_adjusts_by_hand():
    # sorted 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04, but never below the previous: 0.06)
    assert holm([0.04, 0.01, 0.03]) == pytest.approx([0.06, 0.03, 0.06])
    assert holm([0.5, 0.9]) == [1.0, 1.0]
    assert holm([]) == []


def test_bootstrap_interval_of_a_mean_matches_the_normal_approximation():
    x = np.random.default_rng(0).normal(5.0, 2.0, 400)
    estimate, low, high = bootstrap(x, MEAN, resamples=4000, seed=1)
    half = 1.96 * x.std(ddof=1) / math.sqrt(len(x))  # 0.196: a 90 % interval would be 0.165 wide on each side
    assert estimate == pytest.approx(x.mean())
    assert high - estimate == pytest.approx(half, rel=0.08) and estimate - low == pytest.approx(half, rel=0.08)


def test_bootstrap_refuses_bad_arguments():
    with pytest.raises(ValueError, match="one value per trial"):
        bootstrap(np.ones((3, 2)))
    with pytest.raises(ValueError, match="resamples 0"):
        bootstrap(np.ones(3), resamples=0)


def table(index, clean_correct, success, rho) -> dict[str, np.ndarray]:
    return {
        k: np.asarray(v, dtype=float)
        for k, v in dict(index=index, clean_correct=clean_correct, success=success, rho=rho).items()
    }


def test_paired_matches_trials_by_index_and_counts_failures_as_infinite_rho():
    claimed = table([0, 1, 2, 3, 4, 5], [1, 1, 1, 1, 0, 1], [1, 1, 1, 0, 1, 1], [0.01, 0.02, 0.04, 0.5, 0.0, 0.01])
    # the other run lists its trials in another order and lacks trial 5
    other = table([4, 3, 2, 1, 0], [0, 1, 1, 1, 1], [1, 1, 1, 0, 1], [0.0, 0.03, 0.12, 0.9, 0.02])
    p = paired(claimed, other, resamples=200)
    # shared 0-4; attacked 0-3 (4 was wrong when clean); claimed flips 0, 1, 2; other 0, 2, 3; both 0 and 2
    assert p["attacked"] == 4 and p["success"] == (0.75, 0.75) and p["pairs"] == 2
    # ratios ρ_other / ρ_claimed: trial 0: 2, 1: ∞ (other failed), 2: 3, 3: 0 (claimed failed); lower median 2
    assert p["ratio"][0] == 2.0 and p["ratio"][1:] == (-math.inf, math.inf)  # n = 4: no finite 95 % interval
    assert p["p"] == pytest.approx(5 / 16)  # 3 of 4 above 1: P(Bin(4, 1/2) >= 3)
    assert p["success_diff"][0] == 0 and p["success_diff"][1] < 0 < p["success_diff"][2]


def test_failures_on_the_hardest_trials_are_not_hidden():
    # 20 trials: the claimed method is 3 % smaller on 18 and fails the 2 hardest, which the other flips
    n = 20
    other_rho = np.linspace(0.001, 0.01, n)
    claimed = table(range(n), [1] * n, [1] * 18 + [0, 0], list(other_rho[:18] / 1.03) + [0.5, 0.5])
    other = table(range(n), [1] * n, [1] * n, other_rho)
    c = comparison_of(claimed, other)
    assert c.ratio[0] == pytest.approx(1.03) and c.pairs == 18  # the old rule: "holds" on the 18 pairs
    assert decide(c) == ("does not hold", "the claimed method flips fewer trials")
    # 2/29 vs 29/29 is a clear loss, not "too few trials"
    few = comparison_of(
        table(range(29), [1] * 29, [1, 1] + [0] * 27, [0.001] * 29), table(range(29), [1] * 29, [1] * 29, [0.002] * 29)
    )
    assert decide(few) == ("does not hold", "the claimed method flips fewer trials")


def comparison_of(claimed: dict, other: dict, **kw) -> Comparison:
    p = paired(claimed, other, resamples=200)
    base = dict(
        victim="ecapa",
        setting="30",
        claimed="ssr",
        other="fmn",
        comparable=True,
        equal_budget=True,
        equal_stop=True,
        stops=("a", "b"),
        evals=(30.0, 30.0),
    )
    return Comparison(**{**base, **p, **kw})


def comparison(ratio=(1.5, 1.2, 1.9), success_diff=(0.0, -0.05, 0.05), pairs=40, comparable=True, **kw):
    base = dict(
        victim="ecapa",
        setting="100",
        claimed="ssr",
        other="ddn",
        comparable=comparable,
        equal_budget=True,
        equal_stop=True,
        stops=("a", "b"),
        evals=(100.0, 100.0),
        attacked=50,
        success=(0.9, 0.9),
        success_diff=success_diff,
        pairs=pairs,
        ratio=ratio,
        p=1e-4,
    )
    return Comparison(**{**base, **kw})


def test_decision_rule_on_hand_made_comparisons():
    holds = comparison()
    assert decide(holds) == ("holds", "the claimed method's ρ is smaller (sign test p = 0.0001)")
    assert decide(comparison(ratio=(1.1, 0.95, 1.3), p=0.2))[1] == "no difference shown (p = 0.2)"
    assert decide(comparison(ratio=(0.7, 0.6, 0.8), p=0.99)) == ("does not hold", "the other attack's ρ is smaller")
    lower_success = comparison(success=(0.8, 0.9))  # smaller ρ, but fewer flips: no win
    assert decide(lower_success) == ("does not hold", "the claimed method flips fewer trials")
    assert decide(comparison(attacked=9))[0] == "too few trials"
    assert decide(comparison(comparable=False, ratio=(nan,) * 3))[0] == "not comparable"
    against = comparison(ratio=(0.7, 0.6, 0.8), p=0.99)
    assert claim_verdict([holds, holds]) == "holds"
    assert claim_verdict([against, lower_success]) == "does not hold"
    assert claim_verdict([holds, against]) == "mixed"
    assert claim_verdict([holds, comparison(attacked=3), comparison(comparable=False)]) == "holds"  # undecided left out
    assert claim_verdict([comparison(attacked=3)]) == claim_verdict([]) == "not decided"


def test_ties_cannot_make_a_holds():
    # 94 trials both attacks fail (ratio 1), 6 where only the claimed flips: the median ratio is 1, not above it
    tied = table(range(100), [1] * 100, [0] * 94 + [1] * 6, [0.5] * 94 + [0.01] * 6)
    other = table(range(100), [1] * 100, [0] * 100, [0.5] * 100)
    c = comparison_of(tied, other)
    assert c.ratio == (1.0, 1.0, 1.0) and c.p > 0.5 and decide(c)[0] == "does not hold"


def test_holm_correction_within_a_claim_table_can_undo_a_holds():
    # alone p = 0.02 holds (<= 0.025); beside two others Holm makes it 0.06 (three comparisons x 0.02)
    family = [comparison(p=0.02), comparison(p=0.02), comparison(p=0.02)]
    assert decide(family[0])[0] == "holds"
    correct(family)
    assert [c.p_holm for c in family] == pytest.approx([0.06, 0.06, 0.06])
    assert decide(family[0]) == ("does not hold", "no difference shown (p = 0.06)")
    strong = correct([comparison(p=0.001), comparison(p=0.02), comparison(comparable=False)])
    assert decide(strong[0])[0] == "holds" and strong[2].p_holm is None  # n/c rows are not in the family


# attack -> flags for B = 30, written out by hand from the classes' budget docstrings
EXPECTED_FLAGS = {
    "fgsm": [],
    "mfcc_ivec": [],
    "bim": ["steps=30"],
    "pgd_linf": ["steps=30"],
    "pgd_l2": ["steps=30"],
    "cw": ["max_grad_evals=30", "steps=30"],
    "gauss_newton": ["steps=30", "max_grad_evals=30"],
    "qn_lbfgs": ["max_grad_evals=30"],
    "qn_bfgs": ["max_grad_evals=30"],
    "ssr": ["steps=30", "max_grad_evals=30"],
    "ssr_lin": ["steps=30", "max_grad_evals=30"],
    "ddn": ["steps=30"],
    "fmn": ["steps=30"],
}


def test_budget_flags_per_attack():
    assert set(EXPECTED_FLAGS) == set(ATTACKS)
    prefix = "--model.init_args.attack.init_args."
    for name, expected in EXPECTED_FLAGS.items():
        assert budgets.budget_flags(budgets.variant(name), 30) == [prefix + f for f in expected], name
        assert budgets.budget_flags(budgets.variant(name), None) == [], name  # default settings: the config's
    assert budgets.budget_flags(budgets.variant("pgd_l2+bs"), 30) == [prefix + "attack.init_args.steps=30"]
    assert budgets.budget_flags(budgets.variant("gauss_newton+min"), 10) == [
        prefix + "early_stop=false",
        prefix + "steps=10",
        prefix + "max_grad_evals=10",
    ]
    assert budgets.budget_flags(budgets.variant("gauss_newton+min"), None) == [prefix + "early_stop=false"]
    for bad in ("qn_lbfgs+bs", "pgd_l2+min", "pgd"):
        with pytest.raises(SystemExit, match=f"unknown attack '{re.escape(bad)}'; valid: fgsm, fgsm\\+bs"):
            budgets.variant(bad)


@pytest.mark.parametrize("victim", VICTIMS)
def test_budget_arguments_exist_in_the_attack_each_config_names(victim):
    for name in budgets.variant_names():
        row = budgets.variant(name)
        if configs.exists(row.base, victim):
            cls, args = budgets.effective_args(victim, row, 30)
            accepted = inspect.signature(cls).parameters
            assert set(budgets.overrides(row, 30)) <= set(accepted), (name, cls.__name__)
            assert all(args[k] == 30 for k in budgets.BUDGET_ARGS.get(row.base, ())), name


def test_stopping_rules():
    def rule(name):
        return budgets.stopping_rule("ecapa", budgets.variant(name), 10)

    assert rule("gauss_newton") == (False, "first success")
    assert rule("gauss_newton+min") == (True, "all steps; smallest success kept")
    assert rule("pgd_l2") == (False, "first success inside the ε ball")
    assert rule("pgd_l2+bs") == (True, "first success inside the ε ball, then 10 bisections of the scale")
    assert rule("fgsm")[0] is False and rule("ddn")[0] is rule("fmn")[0] is rule("cw")[0] is True


def test_boundary_search_fragment_and_budget_flags_reach_the_attack(tmp_path, capsys):
    row = budgets.variant("cw+bs")
    (tmp_path / "bs.yaml").write_text(budgets.boundary_fragment("cw", "ecapa"))
    with pytest.raises(SystemExit):
        cli_main(
            [
                "test",
                *configs.args("cw", "ecapa"),
                "-c",
                str(tmp_path / "bs.yaml"),
                *budgets.budget_flags(row, 12),
                "--print_config",
            ]
        )
    attack = yaml.safe_load(capsys.readouterr().out)["model"]["init_args"]["attack"]
    inner = configs.merged("cw", "ecapa")["model"]["init_args"]["attack"]["init_args"]
    assert attack["class_path"] == "attacks.BoundarySearch" and attack["init_args"]["steps"] == 10
    got = attack["init_args"]["attack"]
    assert got["class_path"] == "attacks.CarliniWagnerL2"
    assert got["init_args"]["max_grad_evals"] == got["init_args"]["steps"] == 12
    assert got["init_args"]["search_steps"] == inner["search_steps"] and got["init_args"]["lr"] == inner["lr"]


def test_settings_and_plan(tmp_path):
    assert compare_attacks.settings_of(None) == ["default"]
    assert compare_attacks.settings_of(["default", "10", "030", "10"]) == ["default", "10", "30"]
    for bad in (["0"], ["ten"], ["-5"]):
        with pytest.raises(SystemExit, match="not 'default' or a positive integer"):
            compare_attacks.settings_of(bad)
    jobs = compare_attacks.plan("ivector", ["fgsm", "mfcc_ivec", "ddn"], ["default", "10"], tmp_path, 3, ["--x=1"])
    assert [(j.row.name, j.setting) for j in jobs] == [
        ("fgsm", "default"),
        ("mfcc_ivec", "default"),
        ("ddn", "default"),
        ("ddn", "10"),
    ]
    assert jobs[3].folder == tmp_path / "budget_10" / "ddn" and jobs[2].folder == tmp_path / "ddn"
    assert jobs[3].args[-3:] == [
        "--model.init_args.attack.init_args.steps=10",
        "--x=1",
        "--data.init_args.max_trials=3",
    ]
    assert compare_attacks.checkpoint_flag("ck/{victim}_libri.ckpt", "ecapa") == [
        "--model.init_args.checkpoint=ck/ecapa_libri.ckpt"
    ]
    assert compare_attacks.checkpoint_flag(None, "ecapa") == []
    with pytest.raises(SystemExit, match=r"--checkpoint 'ck/a.ckpt': expected a path with '\{victim\}' in it"):
        compare_attacks.checkpoint_flag("ck/a.ckpt", "ecapa")
    every = {j.row.name for j in compare_attacks.plan("ecapa", None, ["default"], tmp_path, None, [])}
    assert "mfcc_ivec" not in every and {"pgd_l2+bs", "gauss_newton+min", "ddn", "fmn"} <= every
    named = compare_attacks.plan("ecapa", ["fgsm", "mfcc_ivec"], ["default"], tmp_path, None, [])
    assert [j.row.name for j in named] == ["fgsm"]  # one attack list for several victims: MFCC-ivec where it exists
    compare_attacks.check_rows(["fgsm", "mfcc_ivec"], ["ivector", "ecapa"])
    with pytest.raises(SystemExit, match=r"no attack config for mfcc_ivec against ecapa, seresnet34"):
        compare_attacks.check_rows(["mfcc_ivec"], ["ecapa", "seresnet34"])


def hand_run(name: str, setting: str, rho: list[float], success: list[int], minimises: bool) -> Run:
    n = len(rho)
    trials = table(range(n), [1] * n, success, rho)
    won = np.array(success) > 0
    summary = {
        "domain": "waveform",
        "success_rate": won.mean(),
        "rho_median": float(np.median(np.array(rho)[won])),
        "rho_mean": float(np.mean(np.array(rho)[won])),
        "grad_evals_mean": 10.0,
        "clean_far": 0.1,
        "far": 0.9,
        "clean_frr": 0.2,
        "frr": 1.0,
    }
    return Run("ecapa", budgets.variant(name), setting, summary, trials, minimises, "stop rule", Path("."))


def test_claims_on_hand_made_runs():
    n = 20
    ssr = [0.001 * (1 + i % 5) for i in range(n)]
    runs = [
        hand_run("ssr", "10", ssr, [1] * n, True),
        hand_run("ddn", "10", [2 * r for r in ssr], [1] * n, True),  # twice SSR's rho on every trial
        hand_run("pgd_l2", "10", ssr, [1] * n, False),  # the same rho: no difference
        hand_run("ssr", "default", ssr, [1] * n, True),
        hand_run("ddn", "default", [0.5 * r for r in ssr], [1] * n, True),  # half SSR's rho
    ]
    found = comparisons(runs, resamples=300)
    assert found["a"] == [] and [(c.setting, c.other) for c in found["b"]] == [
        ("10", "pgd_l2"),
        ("10", "ddn"),
        ("default", "ddn"),
    ]  # in the claim's order
    assert [(c.setting, c.other) for c in found["c"]] == [("10", "ddn"), ("default", "ddn")]  # vs FMN / DDN
    pgd10, ddn10, ddn_default = found["b"]
    assert ddn10.ratio == (2.0, 2.0, 2.0) and decide(ddn10)[0] == "holds" and ddn10.equal_budget
    assert decide(pgd10)[0] == "does not hold" and not pgd10.equal_stop
    assert decide(ddn_default)[0] == "does not hold" and not ddn_default.equal_budget
    text = claims_markdown(found, "coadv compare-attacks --victim ecapa --budgets default 10")
    section_b = text.split("## Claim (b)")[1].split("## Claim (c)")[0]
    lines = {line.split(" | ")[0].strip("| "): line for line in section_b.splitlines() if line.startswith("| ")}
    assert (
        "| does not hold | — | ssr vs ddn on ecapa (default) |"
        in lines["default settings (unequal budgets: see grad evals)"]
    )
    assert (
        "| mixed | ssr vs ddn on ecapa (B=10) | ssr vs pgd_l2 on ecapa (B=10) |"
        in lines["equal budget (any stopping rule)"]
    )
    assert (
        "| holds | ssr vs ddn on ecapa (B=10) | — |"
        in lines["equal budget and equal stopping rule (the fair comparison)"]
    )
    assert "Claim (a)" in text and "No comparison: the runs it needs are missing." in text
    assert "`coadv compare-attacks --victim ecapa --budgets default 10`" in text
    cells = budget_table(runs)
    assert "| ddn | yes | 1 / 0.006 |" in cells and "| pgd_l2 | no | 1 / 0.003 |" in cells
    assert "0.1 → 0.9" in default_table(runs[3:]) and "0.2 → 1" in default_table(runs[3:])


@pytest.mark.slow  # four attack runs in subprocesses, twice the tables: ~2.5 min on 2 shared cores
def test_comparison_over_budgets_end_to_end(tmp_path, corpus, victim_checkpoints, capsys):
    argv = [
        "--victim",
        "ecapa",
        "--trials",
        "2",
        "--attacks",
        "ssr",
        "pgd_l2+bs",
        "--budgets",
        "10",
        "30",
        "--resamples",
        "200",
        "--out",
        str(tmp_path),
        "--",
        f"--model.init_args.checkpoint={victim_checkpoints['ecapa_synth']}",
        f"--data.init_args.root={corpus}",
        "--trainer.logger=false",
    ]
    text = compare_attacks.main(argv)
    assert "Attacks against ecapa (2 trials" in text and "| attack | keeps minimising | B = 10 | B = 30 |" in text
    for name in ("ssr", "pgd_l2+bs"):
        for budget in (10, 30):
            rows = jobs.read_trials_csv(tmp_path / f"budget_{budget}" / name / "attack" / "trials.csv")
            assert len(rows["index"]) == 2 and rows["grad_evals"].max() <= budget  # the cap held
    assert (tmp_path / "budget_10" / "pgd_l2+bs" / "wrapper.yaml").is_file()
    assert (tmp_path / "comparison.csv").read_text().count("\n") == 5 and (tmp_path / "rho_budget.png").is_file()
    claims = (tmp_path / "claims.md").read_text()
    assert "ssr vs pgd_l2+bs" in claims and "too few trials" in claims  # 2 trials: nothing is decided
    capsys.readouterr()
    assert compare_attacks.main(argv) == text  # every run reused, the tables rebuilt from their files
    assert capsys.readouterr().out.count("reusing") == 4
    record = json.loads((tmp_path / "budget_30" / "ssr" / "compare_args.json").read_text())
    assert "--model.init_args.attack.init_args.max_grad_evals=30" in record["args"]

    def results(path):  # every column but the wall time
        return {k: v for k, v in jobs.read_trials_csv(path).items() if k != "wall_s"}

    trials = {p: results(p) for p in tmp_path.glob("budget_*/*/attack/trials.csv")}
    compare_attacks.main(argv[:-4] + ["--in-process", "--force"] + argv[-4:])  # the same runs in this process
    assert len(trials) == 4
    for path, before in trials.items():  # identical per-trial results
        after = results(path)
        differ = [k for k in before if not np.array_equal(after[k], before[k], equal_nan=True)]
        assert after.keys() == before.keys() and not differ, (path, differ, [(before[k], after[k]) for k in differ])


def fake_finished_run(job: jobs.Job, rho: list[float], threshold: float = 0.5) -> None:
    """The files a finished ``coadv test`` run leaves (every trial attacked and flipped), and its record."""
    import torch

    from lightning_modules.attack_metrics import COLUMNS, summarize

    rows = torch.tensor(
        [
            [
                i,
                i % 2,
                1,
                1,
                r,
                -20 * math.log10(r),
                r,
                nan,
                nan,
                3,
                10,
                0.1,
                0.9 if i % 2 else 0.1,
                0.1 if i % 2 else 0.9,
                nan,
            ]
            for i, r in enumerate(rho)
        ],
        dtype=torch.float64,
    )
    folder = job.folder / "attack"
    folder.mkdir(parents=True)
    (folder / "trials.csv").write_text(
        "\n".join([",".join(COLUMNS), *(",".join(map(str, row)) for row in rows.tolist())]) + "\n"
    )
    summary = {"domain": "waveform", "threshold": threshold, **summarize(dict(zip(COLUMNS, rows.T)), threshold)}
    (folder / "summary.json").write_text(json.dumps(summary))
    job.record_path.write_text(json.dumps(job.record))


def test_several_victims_reuse_finished_runs_and_decide_the_claim_per_victim(tmp_path, capsys):
    """No subprocess: every run is found finished (a run started here would fail: no victim checkpoint)."""
    ssr = [0.001 * (1 + i % 7) for i in range(24)]
    factor = {"ivector": 3.0, "ecapa": 1.0}  # DDN's rho / SSR's: SSR smaller on ivector, equal on ecapa
    for victim in factor:
        ssr_job, ddn_job = compare_attacks.plan(victim, ["ssr", "ddn"], ["10"], tmp_path / victim, 24, [])
        fake_finished_run(ssr_job, ssr)
        fake_finished_run(ddn_job, [factor[victim] * r for r in ssr])
    argv = [
        "--victim",
        "ivector",
        "ecapa",
        "--attacks",
        "ssr",
        "ddn",
        "--budgets",
        "10",
        "--trials",
        "24",
        "--resamples",
        "500",
        "--out",
        str(tmp_path),
    ]
    text = compare_attacks.main(argv)
    assert capsys.readouterr().out.count("reusing") == 4
    assert "## Attacks against ivector (24 trials" in text and "## Attacks against ecapa (24 trials" in text
    assert "| ddn | yes | 1 / 0.009 |" in text  # ivector: 3 x 0.003 (summary.json: the lower of the middle two)
    fair = "| equal budget and equal stopping rule (the fair comparison) |"
    assert f"{fair} holds | ssr vs ddn on ivector (B=10) | — |" in (tmp_path / "ivector" / "claims.md").read_text()
    assert f"{fair} does not hold | — | ssr vs ddn on ecapa (B=10) |" in (tmp_path / "ecapa" / "claims.md").read_text()
    overall = (tmp_path / "claims.md").read_text()
    assert f"{fair} mixed | ssr vs ddn on ivector (B=10) | ssr vs ddn on ecapa (B=10) |" in overall
    assert (
        "Reproduce: `coadv compare-attacks --victim ivector ecapa --budgets 10 --attacks ssr ddn --trials 24 "
        "--resamples 500`" in overall
    )
    assert "2000 resamples" not in overall and "500 resamples, seed 0)" in overall
    assert (tmp_path / "ivector" / "rho_budget.png").is_file() and (tmp_path / "ecapa" / "comparison.csv").is_file()


def test_a_failed_run_stops_the_comparison_or_is_skipped_with_keep_going(tmp_path, monkeypatch, capsys):
    import subprocess

    ssr_job, _ = compare_attacks.plan("ecapa", ["ssr", "ddn"], ["10"], tmp_path, 12, [])
    fake_finished_run(ssr_job, [0.001 * (1 + i) for i in range(12)])

    def crash(args, check):
        raise subprocess.CalledProcessError(3, args)

    monkeypatch.setattr(jobs.subprocess, "run", crash)
    argv = ["--victim", "ecapa", "--attacks", "ssr", "ddn", "--budgets", "10", "--trials", "12", "--out", str(tmp_path)]
    with pytest.raises(SystemExit, match=r"ecapa ddn B=10 failed \(exit 3\); rerun to continue"):
        compare_attacks.main(argv)
    capsys.readouterr()
    text = compare_attacks.main([*argv, "--keep-going"])
    out = capsys.readouterr().out
    assert "ecapa ddn B=10: FAILED (exit 3)" in out and "failed   ecapa ddn B=10" in out
    assert "| ssr | yes | 1 / 0.006 |" in text and "| ddn |" not in text


def test_reuse_key_follows_the_attack_code_and_the_victim_file(tmp_path, monkeypatch):
    victim = tmp_path / "victim.ckpt"
    victim.write_bytes(b"one")
    flag = f"--model.init_args.checkpoint={victim}"
    job = jobs.Job("ecapa", budgets.variant("fmn"), "10", tmp_path, 2, [flag])
    assert job.victim_checkpoint() == victim
    job.summary_path.parent.mkdir(parents=True)
    job.summary_path.write_text("{}")
    job.record_path.write_text(json.dumps(job.record))
    assert job.done()
    victim.write_bytes(b"two")  # a retrained victim
    assert not job.done()
    victim.write_bytes(b"one")
    assert job.done()
    monkeypatch.setattr(jobs, "code_hash", lambda text="", at_start=False: "an attack's source changed")
    assert not job.done()
    default = jobs.Job("ecapa", budgets.variant("fmn"), "10", tmp_path, 2, [])
    assert default.victim_checkpoint() == Path("checkpoints/victims/ecapa_synth.ckpt")  # the config's own


def test_tuning_grid_points_and_the_choice_rule():
    from coadv.compare import tuning

    assert tuning.points("ssr") == [
        {"eta": 0.0001, "rho0": 0.003},
        {"eta": 0.0001, "rho0": 0.01},
        {"eta": 0.001, "rho0": 0.003},
        {"eta": 0.001, "rho0": 0.01},
    ]
    assert tuning.point_flags({"eta": 0.1, "rho0": None}) == [
        "--model.init_args.attack.init_args.eta=0.1",
        "--model.init_args.attack.init_args.rho0=null",
    ]
    assert set(tuning.GRID) <= set(budgets.variant_names())
    for row in tuning.GRID:  # every knob is an argument of the attack its config names (the same effort: <= 6)
        cls, _ = budgets.effective_args("ecapa", budgets.variant(row), 30)
        assert set(tuning.GRID[row]) <= set(inspect.signature(cls).parameters) and len(tuning.points(row)) <= 6
    # a failure on half the trials (median ∞) loses to any finite median; ties go to the higher success
    ranked = sorted(
        [
            {"rho_median": math.inf, "success_rate": 0.5},
            {"rho_median": 0.02, "success_rate": 1.0},
            {"rho_median": 0.01, "success_rate": 0.6},
            {"rho_median": 0.01, "success_rate": 0.9},
        ],
        key=tuning.score,
    )
    assert [r["success_rate"] for r in ranked] == [0.9, 0.6, 1.0, 0.5]


def test_tuning_runs_on_the_offset_split_end_to_end(tmp_path, corpus, victim_checkpoints, monkeypatch):
    from coadv.compare import tuning

    monkeypatch.setattr(tuning, "GRID", {"fmn": {"alpha_init": [0.3, 1.0]}})
    text = tuning.main(
        [
            "--victim",
            "ecapa",
            "--budget",
            "4",
            "--trials",
            "2",
            "--offset",
            "3",
            "--out",
            str(tmp_path),
            "--in-process",
            "--",
            f"--model.init_args.checkpoint={victim_checkpoints['ecapa_synth']}",
            f"--data.init_args.root={corpus}",
            "--trainer.logger=false",
        ]
    )
    assert text.count("| fmn | alpha_init=") == 2 and text.count("**yes**") == 1
    record = json.loads((tmp_path / "fmn" / "alpha_init=0.3" / "budget_4" / "fmn" / "compare_args.json").read_text())
    assert (
        "--data.init_args.trial_offset=3" in record["args"]
        and "--model.init_args.attack.init_args.steps=4" in record["args"]
    )
    assert (tmp_path / "tuning.md").read_text() == text


def test_feature_domain_rows_wrap_the_attack_and_cap_it_one_level_deeper(tmp_path):
    """``--domain feature``: each search inside attacks.FeatureDomain, with its feature-unit overrides; MFCC-ivec as
    it is; the budget flags reach the wrapped attack."""
    job = jobs.Job("ivector", budgets.variant("bim+bs"), "30", tmp_path, None, [], feature=True)
    fragment = yaml.safe_load(job.fragment)["model"]["init_args"]["attack"]
    assert fragment["class_path"] == "attacks.FeatureDomain"
    inner = fragment["init_args"]["attack"]
    assert inner["class_path"] == "attacks.BoundarySearch"
    tuned = yaml.safe_load((budgets.FEATURE_UNITS / "bim.yaml").read_text())["epsilon"]
    assert inner["init_args"]["attack"]["init_args"]["epsilon"] == tuned  # configs/attack/feature/bim.yaml
    assert "--model.init_args.attack.init_args.attack.init_args.attack.init_args.steps=30" in job.args
    assert str(tmp_path / "budget_30" / "bim+bs" / "wrapper.yaml") in job.args
    plain = jobs.Job("ivector", budgets.variant("mfcc_ivec"), "default", tmp_path, None, [], feature=True)
    block = yaml.safe_load(plain.fragment)["model"]["init_args"]["attack"]  # its tuned values, not wrapped
    assert block["class_path"] == "attacks.MFCCIvec" and "epsilon" in block["init_args"]
    assert jobs.Job("ivector", budgets.variant("mfcc_ivec"), "default", tmp_path, None, []).fragment is None
    rows = [j.row.name for j in compare_attacks.plan("ivector", None, ["10"], tmp_path, None, [], feature=True)]
    assert (
        "mfcc_ivec" in rows and "qn_lbfgs" in rows and "fgsm" not in rows and "cw" not in rows and "qn_bfgs" not in rows
    )
    with pytest.raises(SystemExit, match="--domain feature needs a victim with an MFCC front-end"):
        compare_attacks.parse(["--victim", "ecapa", "--domain", "feature"])


@pytest.mark.slow  # several i-vector attack runs in this process
def test_feature_domain_comparison_end_to_end(tmp_path, corpus, victim_checkpoints):
    argv = [
        "--victim",
        "ivector",
        "--domain",
        "feature",
        "--trials",
        "2",
        "--attacks",
        "qn_lbfgs",
        "mfcc_ivec",
        "--budgets",
        "default",
        "--in-process",
        "--resamples",
        "100",
        "--out",
        str(tmp_path),
        "--",
        f"--model.init_args.checkpoint={victim_checkpoints['ivector_synth']}",
        f"--data.init_args.root={corpus}",
        "--trainer.logger=false",
    ]
    text = compare_attacks.main(argv)
    summary = json.loads((tmp_path / "qn_lbfgs" / "attack" / "summary.json").read_text())
    assert summary["domain"] == "mfcc"
    claims = (tmp_path / "claims.md").read_text()
    line = next(row for row in claims.splitlines() if "qn_lbfgs vs mfcc_ivec" in row)
    assert "not comparable" not in line and "n/a" not in line  # the same domain: a verdict, not "n/c"
    assert "qn_lbfgs [mfcc]" in text


def test_feature_domain_tuning_grid_reaches_the_wrapped_attack():
    from coadv.compare import tuning

    assert set(tuning.FEATURE_GRID) <= set(budgets.variant_names())
    for row in tuning.FEATURE_GRID:  # every knob is an argument of its attack, <= 6 points: the same effort
        cls, _ = budgets.effective_args("ivector", budgets.variant(row), 30)
        assert set(tuning.FEATURE_GRID[row]) <= set(inspect.signature(cls).parameters)
        assert len(tuning.points(row, tuning.FEATURE_GRID)) <= 6
    deep = "--model.init_args.attack.init_args.attack.init_args."
    assert tuning.point_flags({"c": 10.0}, "qn_lbfgs", feature=True) == [f"{deep}c=10.0"]
    assert tuning.point_flags({"epsilon": 0.5}, "bim+bs", feature=True) == [f"{deep}attack.init_args.epsilon=0.5"]
    assert tuning.point_flags({"epsilon": 0.3}, "mfcc_ivec", feature=True) == [
        "--model.init_args.attack.init_args.epsilon=0.3"
    ]
    with pytest.raises(SystemExit, match="--domain feature needs a victim with an MFCC front-end"):
        tuning.parse(["--victim", "ecapa", "--domain", "feature"])
    with pytest.raises(SystemExit, match="no feature-domain grid for cw"):
        tuning.parse(["--victim", "ivector", "--domain", "feature", "--attacks", "cw"])


def test_the_reuse_hash_covers_the_attack_a_run_names_and_what_it_imports():
    """A change to one attack's module reruns the runs that use it only: the hash reads the modules the config
    text names (a wrapper and the attack inside it) and their ``attacks`` imports (QN's Gauss-Newton warm start)."""
    qn = configs.text("qn_lbfgs", "ivector")
    assert jobs.attack_sources(qn) == [
        "attacks/base.py",
        "attacks/gauss_newton.py",
        "attacks/objective.py",
        "attacks/penalty_search.py",
        "attacks/quasi_newton.py",
    ]
    wrapped = "class_path: attacks.BoundarySearch\n  init_args:\n    attack:\n      class_path: attacks.PGD\n"
    assert jobs.attack_sources(wrapped) == [
        "attacks/base.py",
        "attacks/boundary_search.py",
        "attacks/objective.py",
        "attacks/pgd.py",
    ]
    ssr = configs.text("ssr", "ivector")
    assert "attacks/step_size_regularized.py" in jobs.attack_sources(ssr)
    assert jobs.code_hash(qn) != jobs.code_hash(ssr)
    assert jobs.code_hash(qn) == jobs.code_hash(qn.replace("ivector", "ecapa"))


def test_an_in_process_comparison_hashes_the_sources_it_imported_not_later_edits(tmp_path, monkeypatch):
    """In one process the attack code is imported once, at start: a source edited during a comparison must not
    stamp the runs made with the old code as the new code's (they would be reused after the edit). Run by child
    processes, each run reads the sources afresh."""
    from coadv import sources

    source = tmp_path / "attack.py"
    source.write_text("as imported")
    monkeypatch.setitem(sources.AT_START, source, source.read_bytes())
    source.write_text("edited during the comparison")
    assert sources.source_bytes(source) == b"edited during the comparison"  # child processes
    assert sources.source_bytes(source, at_start=True) == b"as imported"  # in-process runs
    job = jobs.Job("ivector", budgets.variant("ssr"), "30", tmp_path, 4, [])
    monkeypatch.setattr(jobs.Job, "run", lambda self, in_process=False: None)
    for in_process in (False, True):
        jobs.run_jobs([job], force=False, in_process=in_process)
        assert job.at_start is in_process  # the record then hashes the sources as imported
    first = sources.source_files(list(sources.ATTACK_CODE))[0]
    monkeypatch.setitem(sources.AT_START, first, b"another version")
    config = configs.text("ssr", "ivector")
    assert jobs.code_hash(config, at_start=True) != jobs.code_hash(config)


def test_the_reuse_hash_ignores_layout_and_docstrings_not_code():
    """A reformat or a docstring edit keeps finished runs reusable; a changed constant does not."""
    from coadv.sources import code_of

    base = b'def f(x):\n    """Doc."""\n    return x + 1  # why\n'
    assert code_of(base) == code_of(
        b'def f(x):\n    """Another doc, with a figure: 0.93."""\n\n    return (x\n            + 1)\n'
    )
    assert code_of(base) != code_of(b'def f(x):\n    """Doc."""\n    return x + 2\n')
    assert code_of(b"not python at all") == b"not python at all"


def test_a_comment_edit_in_a_config_keeps_a_finished_run_reusable_a_value_edit_does_not():
    from coadv.compare.jobs import uncommented

    record = {"args": ["test"], "config": "# about\nmodel:\n  init_args: {c: 1.0}  # why\n", "code": "h"}
    edited = {**record, "config": "# about, reworded\n\nmodel:\n  init_args: {c: 1.0}  # why\n"}
    changed = {**record, "config": "# about\nmodel:\n  init_args: {c: 2.0}  # why\n"}
    assert uncommented(record) == uncommented(edited)
    assert uncommented(record) != uncommented(changed)
