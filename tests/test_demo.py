"""`coadv demo` reports, for both directions, the last step's informative metrics with paired intervals."""

import re
import shutil
from pathlib import Path

import pytest
import torch

from coadv import demo
from datamodules import UnpairedDigitsDataModule
from lightning_modules import ACCR
from lightning_modules.translation_metrics import Recipe


@pytest.mark.parametrize("start", [False, pytest.param(True, marks=pytest.mark.slow)])  # True: two demo runs
def test_demo_prints_both_directions_at_the_last_step_with_paired_intervals(
    start, tmp_path, tiny_classifiers, cache_dir, monkeypatch, capsys
):
    paths = {d: Path(shutil.copy(tiny_classifiers[d], tmp_path / f"{d}.ckpt")) for d in ("mnist", "mnist_m")}
    monkeypatch.setattr(demo, "JUDGES", paths)
    monkeypatch.setattr(demo, "PROBE_STEPS", 5)
    run = tmp_path / "demo"
    if start:  # start weights of these tiny nets, exported from a first (from-scratch) demo run's last checkpoint
        monkeypatch.setattr(demo, "START", tmp_path / "weights" / "start.pt")
        demo.START.parent.mkdir()
        first = tmp_path / "first"
        demo.main(["--no-start", *tiny_flags(first, cache_dir, paths)])
        last = first / "checkpoints" / "last.ckpt"
        demo.main(["--export-start", str(last)])
        saved = torch.load(demo.START, weights_only=True)
        assert saved["trained_by"] == demo.START_COMMAND and saved["exported_from"] == str(last)
        assert {k.split(".")[0] for k in saved["state_dict"]} == {"g_ab", "g_ba", "d_a", "d_b"}
        capsys.readouterr()
    demo.main([*([] if start else ["--no-start"]), *tiny_flags(run, cache_dir, paths)])
    out = capsys.readouterr().out
    assert "ACCR after 4 training steps (fixed budget, last step)" in out
    assert ("start.pt (trained by `coadv study --preset cpu" in out) == start and (
        "from random weights" in out
    ) != start
    # the printed rows are the metrics of the last step's nets, recomputed from the run's last checkpoint
    model = ACCR.load_from_checkpoint(
        run / "checkpoints" / "last.ckpt",
        map_location="cpu",
        classifier_a=str(paths["mnist"]),
        classifier_b=str(paths["mnist_m"]),
    )
    model.evaluator.setup()
    dm = UnpairedDigitsDataModule("mnist", "mnist_m", cache_dir=cache_dir, batch_size=4, val_size=24, test_limit=16)
    dm.setup("fit")
    for label, metric, translated, untranslated, _ in demo.direction_rows(model.eval(), dm, Recipe(steps=5)):
        mean, half, verdict = demo.paired_difference(translated, untranslated)
        row = (
            f"| {label} | {metric} | {float(translated.mean()):.3f} | {float(untranslated.mean()):.3f} | "
            f"{mean:+.3f} [{mean - half:+.3f}, {mean + half:+.3f}] | {verdict}"
        )
        assert row in out, (row, out)
    assert "MNIST -> MNIST-M | train on translated, test on real MNIST-M (oracle" in out
    assert "MNIST-M -> MNIST | MNIST judge (own domain" in out
    assert re.search(r"Translation helps \(per-image paired interval, informative metrics only\): ", out)
    for _label, metric, translated, untranslated, state in demo.direction_rows(model.eval(), dm, Recipe(steps=5)):
        verdict = demo.paired_difference(translated, untranslated)[2]
        claim = f"{metric.split(' (')[0]} {'holds' if verdict == 'helps' else 'does not hold'}"
        assert (claim in out.split("informative metrics only): ")[1]) == (state == "informative"), (claim, out)
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
    with pytest.raises(SystemExit, match=r"start weights .*missing.pt are missing; make them with `coadv study"):
        demo.main([])
    monkeypatch.setattr(demo, "JUDGES", {"mnist": tmp_path / "judge.pt"})
    with pytest.raises(
        SystemExit, match=r"mnist judge .*judge.pt is missing; make it with `coadv demo --export-judges`"
    ):
        demo.main([])


def test_shipped_judges_are_the_study_judges_weights(tmp_path, tiny_classifiers):
    """An exported judge predicts exactly as its checkpoint and loads with weights_only=True."""
    from nets.classifier import export_digit_net, load_digit_net

    out = tmp_path / "judge.pt"
    export_digit_net(tiny_classifiers["mnist"], out, trained_by="by hand")
    assert torch.load(out, weights_only=True)["trained_by"] == "by hand"
    net = load_digit_net(out)
    full = load_digit_net(tiny_classifiers["mnist"])
    x = torch.rand(4, 3, 32, 32) * 2 - 1  # the digit nets read RGB
    assert torch.equal(net(x), full(x))
    assert out.stat().st_size < Path(tiny_classifiers["mnist"]).stat().st_size / 2  # no optimizer states
    for domain, judge in demo.JUDGES.items():  # the shipped files name the command that trained them
        assert torch.load(judge, weights_only=True)["trained_by"] == demo.classifier_command(domain)


def tiny_flags(run, cache_dir, paths) -> list[str]:
    return [
        f"--trainer.default_root_dir={run}",
        "--trainer.max_epochs=2",
        "--trainer.logger=false",  # drops the default W&B logger's init_args before the switch to CSV
        f"--trainer.logger={{'class_path': 'lightning.pytorch.loggers.CSVLogger', 'init_args': {{'save_dir': '{run}'}}}}",
        f"--data.init_args.cache_dir={cache_dir}",
        "--data.init_args.batch_size=4",
        "--data.init_args.batches_per_epoch=2",
        "--data.init_args.val_size=24",
        "--data.init_args.test_limit=16",
        "--model.init_args.lr_constant_epochs=1",
        "--model.init_args.lr_decay_epochs=1",
        f"--model.init_args.classifier_a={paths['mnist']}",
        f"--model.init_args.classifier_b={paths['mnist_m']}",
        *[f"--model.init_args.{n}.init_args.width=8" for n in ("g_ab", "g_ba", "d_a", "d_b")],
    ]
