"""The study runner: a fixed budget per cell evaluated at its last step, paired seeds, tables with paired
differences and verdicts; restarts skip finished cells; bad names fail."""

import csv
import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from coadv.cli import cli_main
from coadv.study import cells as study_cells
from coadv.study import evaluation, report
from coadv.study import main as study
from coadv.study import tables as results
from datamodules import UnpairedDigitsDataModule
from lightning_modules import ACCR

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def tiny_preset(tmp_path, tiny_classifiers, monkeypatch) -> Path:
    """2 epochs of 2 steps with tiny nets (small validation and test sets), tiny probes; the project's classifier
    paths point at the session's tiny classifiers."""
    folder = tmp_path / "classifiers"
    folder.mkdir()
    for domain, path in tiny_classifiers.items():
        shutil.copy(path, folder / f"{domain}.ckpt")
    monkeypatch.setattr(evaluation, "ensure_classifier", lambda domain, extra=(): folder / f"{domain}.ckpt")
    flags = [
        "--trainer.max_epochs=2",
        "--data.init_args.batch_size=4",
        "--data.init_args.batches_per_epoch=2",
        "--data.init_args.val_size=24",
        "--data.init_args.test_limit=16",
        "--trainer.limit_val_batches=0",
        "--model.init_args.lr_constant_epochs=1",
        "--model.init_args.lr_decay_epochs=1",
        *[f"--model.init_args.{n}.init_args.width=8" for n in ("g_ab", "g_ba", "d_a", "d_b")],
    ]
    flags += [f"--model.init_args.classifier_{s}={folder}/{d}.ckpt" for s, d in (("a", "mnist"), ("b", "mnist_m"))]
    preset = tmp_path / "tiny.yaml"
    preset.write_text(
        json.dumps(
            {
                "methods": ["cyclegan", "accr"],
                "pairs": ["m2mm"],
                "seeds": [0, 1],
                "svhn": "syn_digits",
                "wandb": False,
                "probe_steps": 3,
                "joint_steps": 3,
                "judges_dir": str(folder),
                "flags": flags,
            }
        )
    )
    return preset


@pytest.mark.slow  # 47 s on 2 cores: the end-to-end study of tiny cells
def test_cells_are_evaluated_at_their_last_step_and_tabled_with_paired_differences(tmp_path, tiny_preset, capsys):
    out = tmp_path / "study"
    records = study.main(["--preset", str(tiny_preset), "--out", str(out)])
    printed = capsys.readouterr()
    assert re.search(r"\ncells +4 of 4 \(4 run now, 0 reused\)", printed.out)
    assert "study cells: 100%" in printed.err and "4/4" in printed.err  # the bar reached the end
    assert [(r["method"], r["seed"], r["steps"]) for r in records] == [
        ("cyclegan", 0, 4),
        ("accr", 0, 4),
        ("cyclegan", 1, 4),
        ("accr", 1, 4),
    ]
    # the record is the metrics of the last step's nets: recomputed from the cell's last checkpoint
    cell = out / "cells/base/accr_m2mm/seed1"
    last = next((cell / "checkpoints").glob("epoch=1-*.ckpt"))
    model = ACCR.load_from_checkpoint(last, map_location="cpu")
    dm = UnpairedDigitsDataModule("mnist", "mnist_m", batch_size=4, val_size=24, test_limit=16)
    dm.setup("fit")
    preset = json.loads(tiny_preset.read_text())
    again = evaluation.pair_metrics(dm, model.g_ab, model.g_ba, model.evaluator.paths, preset)
    assert again == pytest.approx({k: v for k, v in records[3].items() if k in again})
    assert {"tot_a2b", "judge_b2a", "joint_a2b", "real_b2a", "kid_a2b", "fid_b2a"} <= again.keys()
    reference = json.loads((out / "references" / "m2mm.json").read_text())
    assert {"tot_src_a2b", "tot_oracle_a2b", "judge_own_b2a", "informative_a2b", "kid_train_b2a"} <= reference.keys()

    text = (out / "results.md").read_text()
    assert "4 training steps per cell (fixed budget, last step, no selection)" in text
    assert "| base | ACCR | 2 |" in text and "| — | no translation (source images as they are) |" in text
    diff = [r["tot_a2b"] for r in records if r["method"] == "accr"], [r["tot_a2b"] for r in records[::2]]
    mean, low, high = results.t_interval([a - c for a, c in zip(*diff)])
    row = next(line for line in text.splitlines() if line.startswith("| ACCR − CycleGAN | train on translated"))
    assert f"{mean:+.4f} [{low:+.4f}, {high:+.4f}], n = 2: {results.interval_verdict(low, high, True)}" in row
    assert len(list(csv.DictReader(open(out / "cells.csv")))) == 4 and (out / "results.png").stat().st_size > 0

    stamps = {p: p.stat().st_mtime_ns for p in out.glob("cells/**/metrics.json")}
    shutil.rmtree(out / "cells" / "base" / "accr_m2mm" / "seed1")  # as if interrupted before this cell
    study.main(["--preset", str(tiny_preset), "--out", str(out)])
    assert re.search(r"\ncells +4 of 4 \(1 run now, 3 reused\)", capsys.readouterr().out)
    after = {p: p.stat().st_mtime_ns for p in out.glob("cells/**/metrics.json")}
    rerun = [p for p in after if stamps.get(p) != after[p]]
    assert [p.parent.name for p in rerun] == ["seed1"] and rerun[0].parent.parent.name == "accr_m2mm"
    assert (out / "results.md").read_text() == text  # the re-run cell reproduces its numbers (seeded)
    (out / "results.md").unlink()
    study.main(["--preset", str(tiny_preset), "--out", str(out), "--tables-only"])
    assert (out / "results.md").read_text() == text  # tables rebuilt from the finished cells alone


def test_methods_of_a_seed_see_the_same_batches_and_start_from_the_same_nets(tmp_path, tiny_preset):
    preset = json.loads(tiny_preset.read_text())
    batches = {}
    nets = {}
    for method in ("cyclegan", "cr_cyclegan", "accr"):
        args = study_cells.cell_args(method, "m2mm", 3, None, preset, tmp_path / method)
        args = [a for a in args[1:] if not a.startswith("--trainer.logger=")]
        cli = cli_main([*args, "--trainer.logger=false"], run=False)
        dm = cli.datamodule
        dm.trainer = None
        dm.setup("fit")
        loader = dm.train_dataloader()
        batches[method] = [(b["a"][0], b["b"][0]) for b, *_ in loader]
        nets[method] = {
            k: v for k, v in cli.model.state_dict().items() if k.split(".")[0] in ("g_ab", "g_ba", "d_a", "d_b")
        }
    for method in ("cr_cyclegan", "accr"):
        assert len(batches[method]) == len(batches["cyclegan"]) == 2
        for (a, b), (a0, b0) in zip(batches[method], batches["cyclegan"]):
            assert torch.equal(a, a0) and torch.equal(b, b0)
        assert nets[method].keys() == nets["cyclegan"].keys()
        assert all(torch.equal(v, nets["cyclegan"][k]) for k, v in nets[method].items())
    other = study_cells.cell_args("cyclegan", "m2mm", 4, None, preset, tmp_path / "other")
    assert "--data.init_args.seed=4" in other and "--seed_everything=4" in other


@pytest.mark.slow  # several tiny study runs
def test_variants_run_as_their_own_rows_differenced_against_the_base(tmp_path, tiny_preset):
    out = tmp_path / "study"
    variant = ROOT / "configs/ablations/terms/rec_only.yaml"
    records = study.main(
        [
            "--preset",
            str(tiny_preset),
            "--out",
            str(out),
            "--methods",
            "accr",
            "--seeds",
            "0",
            "--variants",
            str(variant),
        ]
    )
    assert [r["variant"] for r in records] == ["rec_only"]
    config = next((out / "cells/rec_only/accr_m2mm/seed0").rglob("config.yaml")).read_text()
    assert "lambda_fake: 0.0" in config and "lambda_rec: 10.0" in config
    records.append({**records[0], "variant": "base", "tot_a2b": records[0]["tot_a2b"] - 0.1})
    assert ("rec_only", "accr", "base", "accr") in results.paired_arms(records)


@pytest.mark.parametrize(
    ("flag", "value", "listed"),
    [("--methods", "pix2pix", "cyclegan, cr_cyclegan, accr"), ("--pairs", "m2k", "m2mm, mm2m, m2s, s2m, m2u, u2m")],
)
def test_unknown_names_list_valid_ones(flag, value, listed):
    with pytest.raises(SystemExit, match=f"unknown .*'{value}'.*: {listed}"):
        study.main([flag, value])


@pytest.mark.parametrize("name", ["ci", "cpu"])
def test_a_cell_composes_method_direction_and_the_presets_nets(name, tmp_path, capsys):
    """A cell is the method's and the direction's configs, then the preset's `configs` fragments (small nets), then
    its flags, in its own folder."""
    preset = {**study.load_preset(name), "stability": None}
    args = study_cells.cell_args("cr_cyclegan", "m2u", 3, None, preset, tmp_path / "cell")
    with pytest.raises(SystemExit):
        cli_main([*args, "--print_config"])
    cfg = yaml.safe_load(capsys.readouterr().out)
    nets = {net: cfg["model"]["init_args"][net]["init_args"] for net in ("g_ab", "g_ba", "d_a", "d_b")}
    assert [(nets[g]["width"], nets[g]["n_blocks"]) for g in ("g_ab", "g_ba")] == [(8, 2), (8, 2)]
    assert [(nets[d]["width"], nets[d]["n_layers"]) for d in ("d_a", "d_b")] == [(16, 2), (16, 2)]
    assert (
        cfg["model"]["class_path"] == "lightning_modules.CRCycleGAN" and cfg["model"]["init_args"]["lambda_real"] == 10
    )
    assert cfg["model"]["init_args"]["classifier_b"] == "checkpoints/classifiers/usps.ckpt"
    assert cfg["trainer"]["default_root_dir"] == str(tmp_path / "cell") and cfg["seed_everything"] == 3
    assert cfg["data"]["init_args"]["batch_size"] == {"ci": 16, "cpu": 32}[name]  # the flags come last


def test_verdict_table_by_hand():
    def rec(method, seed, tot, kid):
        return {"variant": "base", "method": method, "pair": "m2u", "seed": seed, "tot_a2b": tot, "kid_a2b": kid}

    records = [rec("cyclegan", s, 0.5, 2.0) for s in range(3)]
    records += [rec("accr", s, 0.5 + d, 2.0 + d) for s, d in enumerate((0.1, 0.2, 0.3))]
    text = results.verdict_table(records, {"informative_a2b": 1.0}, "m2u", "svhn")
    tot = next(line for line in text.splitlines() if "ACCR − CycleGAN | train on translated" in line)
    kid = next(line for line in text.splitlines() if "ACCR − CycleGAN | KID" in line)
    assert "| M→U | U→M |" in text and "+0.200 [-0.048, +0.448], n = 3: inconclusive" in kid
    assert "+0.2000 [-0.0484, +0.4484], n = 3: inconclusive" in tot  # t(0.975, 2) = 4.303, sd 0.1
    records[3:] = [rec("accr", s, 0.5 + d, 2.0 + d) for s, d in enumerate((0.1, 0.11, 0.12))]
    text = results.verdict_table(records, None, "m2u", "svhn")
    assert "n = 3: holds" in next(line for line in text.splitlines() if "| train on translated" in line)
    assert "n = 3: does not hold" in next(line for line in text.splitlines() if "| KID" in line)  # lower is better


@pytest.mark.slow  # several tiny study runs
def test_search_scores_each_methods_fragments_on_validation_images(tmp_path, tiny_preset, capsys):
    preset = json.loads(tiny_preset.read_text())
    preset.update(
        search={"accr": ["configs/ablations/lambda/lambda_1.yaml", "configs/ablations/lambda/lambda_10.yaml"]},
        search_seeds=[7],
    )
    tiny_preset.write_text(json.dumps(preset))
    out = tmp_path / "study"
    records = study.main(["--preset", str(tiny_preset), "--out", str(out), "--search"])
    assert [(r["variant"], r["seed"], r["evaluated_on"]) for r in records] == [
        ("lambda_1", 7, "val"),
        ("lambda_10", 7, "val"),
    ]
    table = (out / "search" / "search.md").read_text()
    scores = {r["variant"]: (r["tot_a2b"] + r["tot_b2a"]) / 2 for r in records}
    best = max(scores, key=scores.get)
    assert f"| ACCR | m2mm | `configs/ablations/lambda/{best}.yaml` | {scores[best]:.3f} | yes |" in table
    expected = "base" if best == "lambda_10" else best  # lambda 10 restates the configs: the base cells
    assert json.loads((out / "search" / "search.json").read_text()) == {"accr": {"m2mm": expected}}
    config = next((out / "search/cells/lambda_1/accr_m2mm/seed7").rglob("config.yaml")).read_text()
    assert "lambda_real: 1.0" in config and "seed: 7" in config
    dm = UnpairedDigitsDataModule("mnist", "mnist_m", batch_size=4, val_size=24, test_limit=16)
    dm.setup("fit")
    a, b = evaluation.splits(dm, "val")
    assert len(a.test_y) == len(b.test_y) == 24 and torch.equal(a.test_y, dm.val_a.labels)
    with pytest.raises(ValueError, match="evaluate_on='train' is not 'test' or 'val'"):
        evaluation.splits(dm, "train")


@pytest.mark.slow  # several tiny study runs
def test_stability_and_robustness_come_from_the_same_runs(tmp_path, tiny_preset, capsys):
    preset = json.loads(tiny_preset.read_text())
    out = tmp_path / "study"
    records = study.main(["--preset", str(tiny_preset), "--out", str(out), "--seeds", "0"])
    assert "rob_mean_a2b" not in records[0] and "curve_a2b" not in records[0]
    # robustness asked for later: computed from each finished cell's last nets, no second training
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("cells/**/last.ckpt")}
    tiny_preset.write_text(json.dumps({**preset, "robustness": True}))
    again = study.main(["--preset", str(tiny_preset), "--out", str(out), "--seeds", "0"])
    assert stamps == {p: p.stat().st_mtime_ns for p in out.glob("cells/**/last.ckpt")}
    assert {k: v for k, v in again[0].items() if not k.startswith("rob_")} == records[0]
    assert 0 <= again[0]["rob_mean_a2b"] <= 1 and "rob_blur_3_b2a" in again[0]
    text = (out / "results.md").read_text()
    assert "**Robustness to corrupted inputs**" in text and "| no translation | — |" in text
    assert (out / "robustness.png").stat().st_size > 0
    # stability: the curves are logged during the cell's own training, every n batches
    flags = [*preset["flags"], "--trainer.log_every_n_steps=1"]
    stability = {"every_n_steps": 2, "until_step": 4}
    tiny_preset.write_text(json.dumps({**preset, "robustness": True, "stability": stability, "flags": flags}))
    fresh = study.main(["--preset", str(tiny_preset), "--out", str(tmp_path / "fresh"), "--seeds", "0"])
    assert [b for b, _ in fresh[0]["curve_a2b"]] == [0, 2, 4] and [b for b, _ in fresh[0]["loss_d"]] == [1, 2, 3, 4]
    assert {k: v for k, v in fresh[0].items() if k in records[0] and k not in ("train_s", "wall_s")} == {
        k: v for k, v in records[0].items() if k not in ("train_s", "wall_s")
    }  # the probe changes no number
    text = (tmp_path / "fresh" / "results.md").read_text()
    assert "**Early stability**" in text and "collapses" in text
    assert (tmp_path / "fresh" / "stability.png").stat().st_size > 0


def test_tables_hold_every_finished_cell_of_the_folder(tmp_path):
    """A run of some variants (or the base alone) still tabulates every finished cell: base first, variants by
    name, then pair, seed and method order; unfinished cells (no metrics.json) are left out."""
    cells = [
        ("lambda_1", "accr", "m2mm", 0),
        ("base", "accr", "m2mm", 1),
        ("base", "cyclegan", "m2mm", 1),
        ("base", "accr", "m2mm", 0),
        ("base", "cyclegan", "m2u", 0),
        ("cross_all", "accr", "m2mm", 0),
    ]
    for variant, method, pair, seed in cells:
        folder = tmp_path / "cells" / variant / f"{method}_{pair}" / f"seed{seed}"
        folder.mkdir(parents=True)
        record = {"variant": variant, "method": method, "pair": pair, "seed": seed, "tot_a2b": 0.5}
        (folder / "metrics.json").write_text(json.dumps(record))
    (tmp_path / "cells" / "base" / "cr_cyclegan_m2mm" / "seed0").mkdir(parents=True)  # interrupted: no metrics
    order = [(r["variant"], r["method"], r["pair"], r["seed"]) for r in study_cells.finished_records(tmp_path)]
    assert order == [
        ("base", "accr", "m2mm", 0),
        ("base", "cyclegan", "m2mm", 1),
        ("base", "accr", "m2mm", 1),
        ("base", "cyclegan", "m2u", 0),
        ("cross_all", "accr", "m2mm", 0),
        ("lambda_1", "accr", "m2mm", 0),
    ]


def test_each_method_is_compared_at_the_weights_its_search_chose(tmp_path):
    """The searched comparison copies the chosen fragment's cells per method (a pair the search did not cover takes
    the method's one choice) beside CycleGAN's base cells, and the claims are differenced within it; a method whose
    chosen cells are not there yet is left out, and CycleGAN is not differenced against its own copy."""

    def rec(variant, method, pair, seed, tot):
        return {"variant": variant, "method": method, "pair": pair, "seed": seed, "tot_a2b": tot}

    records = [rec("base", m, "m2mm", s, 0.5) for m in ("cyclegan", "cr_cyclegan", "accr") for s in range(3)]
    records += [rec("cr_lambda_1", "cr_cyclegan", "m2mm", s, 0.6 + 0.01 * s) for s in range(3)]
    records += [rec("lambda_1", "accr", "m2mm", s, 0.7) for s in range(3)]
    records += [rec("base", "cyclegan", "m2u", 0, 0.4), rec("cr_lambda_1", "cr_cyclegan", "m2u", 0, 0.45)]
    (tmp_path / "search").mkdir()
    (tmp_path / "search" / "search.json").write_text(
        json.dumps({"cr_cyclegan": {"m2mm": "cr_lambda_1"}, "accr": {"m2mm": "lambda_1"}})
    )
    copies = study.searched_records(records, tmp_path)
    got = sorted((r["pair"], r["method"], r["seed"], r["tot_a2b"]) for r in copies)
    assert {r["variant"] for r in copies} == {results.SEARCHED}
    assert got == sorted(
        [("m2mm", "cyclegan", s, 0.5) for s in range(3)]
        + [("m2mm", "accr", s, 0.7) for s in range(3)]
        + [("m2mm", "cr_cyclegan", s, 0.6 + 0.01 * s) for s in range(3)]
        + [("m2u", "cyclegan", 0, 0.4), ("m2u", "cr_cyclegan", 0, 0.45)]
    )
    comparisons = results.paired_arms(records + copies)
    assert (results.SEARCHED, "accr", results.SEARCHED, "cyclegan") in comparisons
    assert (results.SEARCHED, "accr", "base", "accr") not in comparisons  # the same as lambda_1 vs base
    assert ("lambda_1", "accr", "base", "accr") in comparisons
    assert (results.SEARCHED, "cyclegan", "base", "cyclegan") not in comparisons
    text = results.verdict_table([r for r in records + copies if r["pair"] == "m2mm"], None, "m2mm", "svhn")
    line = next(x for x in text.splitlines() if "ACCR [λ searched] − CycleGAN [λ searched] | train on" in x)
    assert "+0.2000 [+0.2000, +0.2000], n = 3: holds" in line
    assert study.searched_records(records, tmp_path / "nowhere") == []
    assert {r["searched_from"] for r in copies if r["method"] == "accr"} == {"lambda_1"}
    report.write_csv(records + copies, tmp_path)
    assert len((tmp_path / "cells.csv").read_text().splitlines()) == 1 + len(records)  # copies not listed twice


def test_a_search_point_equal_to_the_base_config_is_the_base_cells(tmp_path, capsys):
    """λ = 10 restates every config's value: choosing it means the base cells; a choice with no cells is reported."""
    assert study.leaves_base("configs/ablations/lambda/lambda_10.yaml", "accr", "m2mm")
    assert study.leaves_base("configs/search/cr_lambda_10.yaml", "cr_cyclegan", "m2u")
    assert not study.leaves_base("configs/ablations/lambda/lambda_1.yaml", "accr", "m2mm")
    records = [
        {"variant": "base", "method": m, "pair": "m2mm", "seed": 0, "tot_a2b": 0.5} for m in ("cyclegan", "accr")
    ]
    (tmp_path / "search").mkdir()
    (tmp_path / "search" / "search.json").write_text(
        json.dumps({"accr": {"m2mm": "base"}, "cr_cyclegan": {"m2mm": "x"}})
    )
    copies = study.searched_records(records, tmp_path)
    assert sorted(r["method"] for r in copies) == ["accr", "cyclegan"]
    assert "cr_cyclegan m2mm at x: no finished cells yet" in capsys.readouterr().err


def test_search_choices_merge_across_calls(tmp_path, monkeypatch):
    """A search of one method keeps the other methods' earlier choices; λ = 10 is recorded as the base cells."""
    import argparse

    scores = {"lambda_1": 0.6, "lambda_10": 0.7, "cr_lambda_1": 0.8, "cr_lambda_10": 0.5}

    def fake_cells(cells, preset, out, evaluate_on="test"):
        assert evaluate_on == "val"
        records = [
            {"method": m, "pair": p, "seed": s, "variant": f.stem, "tot_a2b": scores[f.stem], "tot_b2a": scores[f.stem]}
            for m, p, s, f in cells
        ]
        return records, 0

    monkeypatch.setattr(study_cells, "run_cells", fake_cells)
    preset = {
        "pairs": ["m2mm"],
        "search_seeds": [7],
        "search": {
            "accr": ["configs/ablations/lambda/lambda_1.yaml", "configs/ablations/lambda/lambda_10.yaml"],
            "cr_cyclegan": ["configs/search/cr_lambda_1.yaml", "configs/search/cr_lambda_10.yaml"],
        },
    }
    for methods in (["cr_cyclegan"], ["accr"]):
        study.search(preset, argparse.Namespace(methods=methods, pairs=None, out=tmp_path))
    chosen = json.loads((tmp_path / "search" / "search.json").read_text())
    assert chosen == {"cr_cyclegan": {"m2mm": "cr_lambda_1"}, "accr": {"m2mm": "base"}}


@pytest.mark.slow
def test_cells_trained_by_parallel_workers_give_the_sequential_tables(tmp_path, tiny_preset, capsys):
    """``--jobs 2`` trains the cells in two 1-thread processes; every cell is seeded, so the tables equal those of
    the sequential run (and the summary counts the cells as run now, not reused)."""
    sequential = tmp_path / "sequential"
    parallel = tmp_path / "parallel"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the workers run: float reductions then agree
    try:
        study.main(["--preset", str(tiny_preset), "--out", str(sequential), "--seeds", "0"])
    finally:
        torch.set_num_threads(threads)
    capsys.readouterr()
    study.main(["--preset", str(tiny_preset), "--out", str(parallel), "--jobs", "2", "--seeds", "0"])
    printed = capsys.readouterr().out
    assert "study: 2 worker processes" in printed and re.search(r"\ncells +2 of 2 \(2 run now, 0 reused\)", printed)
    # each worker trained its own cell (every 2nd in the seed-major order): the parent only read them back
    logs = [(parallel / f"worker_{i}.log").read_text() for i in (0, 1)]
    assert "cyclegan_m2mm/seed0" in logs[0] and "accr_m2mm/seed0" in logs[1] and "accr_m2mm" not in logs[0]
    assert (parallel / "results.md").read_text() == (sequential / "results.md").read_text()


def test_the_joint_judge_is_named_by_its_data_bytes_at_any_thread_count(tmp_path, monkeypatch):
    """The judge's file is named from its data exactly: the parent (2 threads) and its 1-thread workers find one
    file, trained once; one changed pixel names another."""
    from types import SimpleNamespace

    from lightning_modules.translation_metrics import Split
    from nets import DigitNet

    trained = []
    monkeypatch.setattr(
        evaluation, "fit_joint_judge", lambda *args: trained.append(1) or DigitNet(3, num_classes=20, width=4)
    )
    dm = SimpleNamespace(domain_a="mnist", domain_b="mnist_m", mnist_m_recipe="ganin", image_size=32, val_size=10)
    x = torch.rand(512, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    y = torch.zeros(512, dtype=torch.long)
    a, b = Split(x, y, x[:1], y[:1]), Split(-x, y, x[:1], y[:1])
    threads = torch.get_num_threads()
    paths = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            paths.append(evaluation.joint_judge_file(dm, a, b, steps=5, folder=str(tmp_path)))
    finally:
        torch.set_num_threads(threads)
    assert paths[0] == paths[1] and len(trained) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [paths[0].name]  # no temporary file left
    bumped = x.clone()
    bumped[7, 1, 3, 4] += 1e-3
    assert evaluation.joint_judge_file(dm, Split(bumped, y, x[:1], y[:1]), b, 5, str(tmp_path)) != paths[0]
    assert evaluation.data_digest(x) == hashlib.sha1(x.numpy().tobytes()).hexdigest()
