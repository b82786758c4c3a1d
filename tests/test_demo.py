"""`coadv demo` reports test numbers of the checkpoint chosen on validation, and says so."""

import csv
import re
import shutil

import pytest
import torch

from coadv import demo


@pytest.mark.parametrize("start", [False, pytest.param(True, marks=pytest.mark.slow)])  # True: two demo runs
def test_demo_table_is_the_test_of_the_checkpoint_chosen_on_validation(start, tmp_path, tiny_classifiers, cache_dir,
                                                                         monkeypatch, capsys):  # fmt: skip
    paths = {d: shutil.copy(tiny_classifiers[d], tmp_path / f"{d}.ckpt") for d in ("mnist", "mnist_m")}
    monkeypatch.setattr(demo, "ensure_classifier", lambda domain, trained=None: paths[domain])
    run = tmp_path / "demo"
    if start:  # start weights of these tiny nets, exported from a first (from-scratch) demo run's chosen checkpoint
        monkeypatch.setattr(demo, "START", tmp_path / "weights" / "start.pt")
        demo.START.parent.mkdir()
        first = tmp_path / "first"
        demo.main(["--no-start", *tiny_flags(first, cache_dir, paths)])
        chosen = next((first / "checkpoints").glob("epoch=*.ckpt"))
        demo.main(["--export-start", str(chosen)])
        saved = torch.load(demo.START, weights_only=True)
        assert saved["trained_by"] == demo.START_COMMAND and saved["chosen_from"] == str(chosen)
        assert {k.split(".")[0] for k in saved["state_dict"]} == {"g_ab", "g_ba", "d_a", "d_b"}
        capsys.readouterr()
    demo.main([*([] if start else ["--no-start"]), *tiny_flags(run, cache_dir, paths)])
    out = capsys.readouterr().out
    rows = list(csv.DictReader(open(next(run.glob("lightning_logs/version_*/metrics.csv")))))
    val = [float(r["val/acc_mean"]) for r in rows if r.get("val/acc_mean")]
    chosen = val.index(max(val))
    assert re.search(rf"checkpoint chosen on validation \(held out of training\): after epoch {chosen + 1} of 2, "
                     rf"val/acc_mean = {max(val):.3f}", out)  # fmt: skip
    assert ("start.pt (trained by `coadv study --preset cpu" in out) == start and (
        "from random weights" in out
    ) != start
    test = {k: float(v) for r in rows for k, v in r.items() if k.startswith("test/") and v}
    for key, name in (("acc_a2b", "MNIST -> MNIST-M: MNIST-M classifier accuracy"),
                      ("acc_b2a", "MNIST-M -> MNIST: MNIST classifier accuracy")):  # fmt: skip
        number = r"[+-]\d\.\d{3}"
        row = (
            rf"\| {re.escape(name)} \| {test[f'test/{key}']:.3f} \| \d\.\d{{3}} \| {number} \[{number}, {number}\] \| "
        )
        assert re.search(row + r"(helps|level|hurts) \|", out), out
    assert f"FID (classifier features): on MNIST-M {test['test/fid_b']:.1f}" in out and "(test)" not in out
    assert (run / "translations_test.png").stat().st_size > 0


def test_paired_difference_by_hand():
    mean, half, verdict = demo.paired_difference(torch.tensor([1.0, 1, 0, 1]), torch.tensor([0.0, 1, 0, 0]))
    assert (mean, verdict) == (0.5, "level") and half == pytest.approx(1.96 * (1 / 3) ** 0.5 / 2)  # d = 1, 0, 0, 1
    assert demo.paired_difference(torch.ones(5), torch.zeros(5)) == (1.0, 0.0, "helps")
    assert demo.paired_difference(torch.zeros(5), torch.ones(5))[2] == "hurts"
    with pytest.raises(ValueError, match="paired difference of 0 and 0 images"):
        demo.paired_difference(torch.zeros(0), torch.zeros(0))


def test_demo_without_its_start_weights_says_how_to_make_them(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "START", tmp_path / "missing.pt")
    monkeypatch.setattr(demo, "ensure_classifier", lambda domain, trained=None: tmp_path / f"{domain}.ckpt")
    with pytest.raises(SystemExit, match=r"start weights .*missing.pt are missing; make them with `coadv study"):
        demo.main([])


def tiny_flags(run, cache_dir, paths) -> list[str]:
    return [f"--trainer.default_root_dir={run}", "--trainer.max_epochs=2",
               "--trainer.logger=false",  # drops the default W&B logger's init_args before the switch to CSV
               f"--trainer.logger={{'class_path': 'lightning.pytorch.loggers.CSVLogger', 'init_args': {{'save_dir': '{run}'}}}}",
               f"--data.init_args.cache_dir={cache_dir}", "--data.init_args.batch_size=4",
               "--data.init_args.batches_per_epoch=2", "--data.init_args.val_size=24", "--data.init_args.test_limit=16",
               f"--model.init_args.classifier_a={paths['mnist']}", f"--model.init_args.classifier_b={paths['mnist_m']}",
               *[f"--model.init_args.{n}.init_args.width=8" for n in ("g_ab", "g_ba", "d_a", "d_b")]]  # fmt: skip
