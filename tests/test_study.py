"""The study runner: tables hold the test numbers each cell logged for its checkpoint chosen on validation,
restarts skip finished cells, bad names fail."""

import csv
import json
import re
import shutil
from pathlib import Path

import pytest
from conftest import quiet_trainer

from coadv import results, study
from datamodules import UnpairedDigitsDataModule
from lightning_modules import ACCR

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def tiny_preset(tmp_path, tiny_classifiers, monkeypatch) -> Path:
    """2 epochs of 2 steps with tiny nets (small validation and test sets); the project's classifier paths point at
    the session's tiny classifiers."""
    folder = tmp_path / "classifiers"
    folder.mkdir()
    for domain, path in tiny_classifiers.items():
        shutil.copy(path, folder / f"{domain}.ckpt")
    monkeypatch.setattr(study, "ensure_classifier", lambda domain, extra=(): folder / f"{domain}.ckpt")
    flags = ["--trainer.max_epochs=2", "--data.init_args.batch_size=4", "--data.init_args.batches_per_epoch=2",
             "--data.init_args.val_size=24", "--data.init_args.test_limit=16",
             *[f"--model.init_args.{n}.init_args.width=8" for n in ("g_ab", "g_ba", "d_a", "d_b")]]  # fmt: skip
    flags += [f"--model.init_args.classifier_{s}={folder}/{d}.ckpt" for s, d in (("a", "mnist"), ("b", "mnist_m"))]
    preset = tmp_path / "tiny.yaml"
    preset.write_text(json.dumps({"methods": ["accr"], "directions": ["m2mm"], "seeds": [0, 1], "both_ways": True,
                                  "svhn": "syn_digits", "wandb": False, "flags": flags}))  # fmt: skip
    return preset


def logged(cell: Path, key: str) -> list[float]:
    """Every value of ``key`` the cell's CSV log holds, in order (one per validation epoch for ``val/``)."""
    rows = list(csv.DictReader(open(next(cell.glob("csv/version_*/metrics.csv")))))
    return [float(r[key]) for r in rows if r.get(key)]


def test_table_cells_are_test_numbers_of_the_checkpoint_chosen_on_validation(tmp_path, tiny_preset, capsys, cache_dir):
    out = tmp_path / "study"
    records = study.main(["--preset", str(tiny_preset), "--out", str(out)])
    printed = capsys.readouterr()
    assert re.search(r"\ncells +2 \(2 run now, 0 reused\)", printed.out) and re.search(r"\nW&B +disabled", printed.out)
    assert "study cells: 100%" in printed.err and "2/2" in printed.err  # the bar reached the end
    assert [(r["method"], r["seed"]) for r in records] == [("accr", 0), ("accr", 1)]
    chosen = []
    for r in records:
        cell = out / "cells" / "base" / f"{r['method']}_m2mm" / f"seed{r['seed']}"
        val = logged(cell, "val/acc_mean")  # one per epoch
        assert len(val) == 2 and r["selected_on"] == "val/acc_mean"
        assert r["selected_epoch"] == val.index(max(val)) and r["val_score"] == pytest.approx(max(val))
        for key in ("acc_a2b", "acc_b2a", "fid_b"):
            assert [r[key]] == pytest.approx(logged(cell, f"test/{key}"))  # the number a user sees = the test log
        chosen.append(r["selected_epoch"])
    assert min(chosen) == 0  # (these seeds) a cell chose its first epoch: the table is not last-epoch numbers

    # the chosen checkpoint, evaluated on its own on the test split, gives the record's numbers
    cell = out / "cells/base/accr_m2mm/seed0"
    best = next(p for p in (cell / "checkpoints").glob("epoch=*.ckpt"))
    assert best.name.startswith(f"epoch={records[0]['selected_epoch']}-")
    dm = UnpairedDigitsDataModule("mnist", "mnist_m", cache_dir=cache_dir, batch_size=4, val_size=24, test_limit=16)
    again = quiet_trainer().test(ACCR.load_from_checkpoint(best), dm, verbose=False)[0]
    assert again["test/acc_a2b"] == pytest.approx(records[0]["acc_a2b"])

    table = {(row["method"], row["direction"]): row for row in csv.DictReader(open(out / "results.csv"))}
    accr = [r["acc_a2b"] for r in records]
    assert float(table[("accr", "m2mm")]["test_acc_a2b_mean"]) == pytest.approx(sum(accr) / 2, abs=1e-4)
    text = (out / "results.md").read_text()
    assert (
        (out / "results.png").stat().st_size > 0 and "ACCR" in text and "chosen on validation (`val/acc_mean`" in text
    )
    # both ways: the MM->M column holds the same cells' F, and a no-translation row closes the accuracy table
    reverse = [r["acc_b2a"] for r in records]
    assert float(table[("accr", "mm2m")]["test_acc_a2b_mean"]) == pytest.approx(sum(reverse) / 2, abs=1e-4)
    assert "| variant | method | M→MM | MM→M |" in text and "Columns MM→M: the reverse generator F" in text
    row = next(line for line in text.splitlines() if line.startswith("| — | no translation"))
    assert row.split(" | ")[2:] == [f"{no_translation_by_hand('mnist', 'mnist_m', tiny_preset, cache_dir):.3f}",
                                    f"{no_translation_by_hand('mnist_m', 'mnist', tiny_preset, cache_dir):.3f} |"]  # fmt: skip
    assert (out / "curves.png").stat().st_size > 0
    assert all((r["epochs_run"], r["max_epochs"]) == (2, 2) for r in records)
    assert "Epochs trained per cell: 2, 2; 0 of 2 cells stopped when validation accuracy plateaued, 2 reached" in text
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("cells/**/metrics.json")}
    shutil.rmtree(out / "cells" / "base" / "accr_m2mm" / "seed1")  # as if interrupted before this cell
    study.main(["--preset", str(tiny_preset), "--out", str(out)])
    assert re.search(r"\ncells +2 \(1 run now, 1 reused\)", capsys.readouterr().out)
    after = {p: p.stat().st_mtime_ns for p in out.glob("cells/**/metrics.json")}
    rerun = [p for p in after if stamps.get(p) != after[p]]
    assert [p.parent.name for p in rerun] == ["seed1"] and rerun[0].parent.parent.name == "accr_m2mm"
    assert (out / "results.md").read_text() == text  # the re-run cell reproduces its numbers (seeded)


def no_translation_by_hand(source: str, target: str, preset: Path, cache_dir: str) -> float:
    """The target classifier's test accuracy on the source domain's test images (as RGB), through Trainer.test
    (the session's tiny classifiers: ``DigitNet(width=8, feature_dim=16)``, built in Python)."""
    from datamodules import DigitsDataModule
    from lightning_modules import DigitClassifier
    from nets import DigitNet

    judge = DigitClassifier.load_from_checkpoint(study.ensure_classifier(target), net=DigitNet(width=8, feature_dim=16))
    dm = DigitsDataModule(domain=source, cache_dir=cache_dir, test_limit=16, channels=3)
    return quiet_trainer().test(judge, dm, verbose=False)[0]["test/acc"]


def test_records_of_an_older_study_are_refused(tmp_path, tiny_preset):
    cell = tmp_path / "study" / "cells" / "base" / "accr_m2mm" / "seed0"
    cell.mkdir(parents=True)
    (cell / "metrics.json").write_text(json.dumps({"variant": "base", "method": "accr", "direction": "m2mm",
                                                   "seed": 0, "acc_a2b": 0.5}))  # fmt: skip
    with pytest.raises(SystemExit, match=f"{cell / 'metrics.json'} holds last-epoch validation numbers"):
        study.main(["--preset", str(tiny_preset), "--out", str(tmp_path / "study"), "--seeds", "0"])


def test_variants_run_as_their_own_rows(tmp_path, tiny_preset):
    out = tmp_path / "study"
    variant = ROOT / "configs/ablations/terms/rec_only.yaml"
    records = study.main(["--preset", str(tiny_preset), "--out", str(out), "--methods", "accr", "--seeds", "0",
                          "--variants", str(variant)])  # fmt: skip
    assert [r["variant"] for r in records] == ["rec_only"]
    config = next((out / "cells/rec_only/accr_m2mm/seed0").rglob("config.yaml")).read_text()
    assert "lambda_fake: 0.0" in config and "lambda_rec: 10.0" in config


@pytest.mark.parametrize(("flag", "value", "listed"), [("--methods", "pix2pix", "cyclegan, cr_cyclegan, accr"),
                                                       ("--directions", "m2u", "m2mm, mm2m, m2s, s2m")])  # fmt: skip
def test_unknown_names_list_valid_ones(flag, value, listed):
    with pytest.raises(SystemExit, match=f"unknown .*'{value}'.*: {listed}"):
        study.main([flag, value])


def test_markdown_mean_and_std():
    records = [{"variant": "base", "method": "accr", "direction": "m2s", "seed": s, "acc_a2b": a, "fid_b": 1.0}
               for s, a in ((0, 0.5), (1, 0.7))]  # fmt: skip
    text = results.markdown(records, "acc_a2b", "t", "syn_digits", 3)
    assert "| base | ACCR | 0.600 ± 0.141 |" in text and "M→S*" in text


def test_both_ways_and_baselines_in_the_tables():
    records = [{"variant": "base", "method": "accr", "direction": "m2mm", "seed": s, "acc_a2b": a, "acc_b2a": b,
                "fid_b": 10.0, "fid_a": 30.0 + s, "base_a2b": 0.9, "base_b2a": 0.25} for s, a, b in ((0, 0.5, 0.2), (1, 0.7, 0.4))]  # fmt: skip
    both = results.both_ways(records)
    assert [(r["direction"], r["acc_a2b"], r.get("from_cell")) for r in both] == [
        ("m2mm", 0.5, None), ("mm2m", 0.2, "m2mm"), ("m2mm", 0.7, None), ("mm2m", 0.4, "m2mm")]  # fmt: skip
    text = results.markdown(both, "acc_a2b", "t", "svhn", 3, "base_a2b")
    assert "| base | ACCR | 0.600 ± 0.141 | 0.300 ± 0.141 |" in text
    assert text.endswith("| — | no translation (target classifier on untranslated source images) | 0.900 | 0.250 |")
    assert "| base | ACCR | 10.0 ± 0.0 | 30.5 ± 0.7 |" in results.markdown(both, "fid_b", "t", "svhn", 1)
    assert results.reverse("m2s") == "s2m"
    fewer = results.markdown([*both, {**records[0], "method": "cyclegan"}], "acc_a2b", "t", "svhn", 3)
    assert "| base | CycleGAN | 0.500 ± 0.000 (n = 1) | — |" in fewer and "| base | ACCR | 0.600 ± 0.141 |" in fewer


def test_curves_read_every_launch_of_a_resumed_cell(tmp_path):
    for version, rows in ((0, [(0, 0.1), (1, 0.2)]), (1, [(1, 0.25), (2, 0.3)]), (10, [(3, 0.35)])):
        folder = tmp_path / "csv" / f"version_{version}"
        folder.mkdir(parents=True)
        lines = ["epoch,step,val/acc_mean,train/g_loss", *[f"{e},{e},{v},\n{e},{e},,1.0" for e, v in rows]]
        (folder / "metrics.csv").write_text("\n".join(lines) + "\n")
    assert results.read_curve(tmp_path) == [(0, 0.1), (1, 0.25), (2, 0.3), (3, 0.35)]
