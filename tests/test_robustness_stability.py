"""Corruptions for robustness (severity 0 is the identity, the same images for every method), the area under an
early-training curve and collapse counts pinned by hand, and the stability probe leaves training unchanged."""

import lightning as L
import pytest
import torch

from callbacks import EarlyStability
from lightning_modules.translation_metrics import area_under_curve, collapsed
from nets.corruptions import KINDS, SEVERITIES, Corruption


@pytest.mark.parametrize("kind", KINDS)
def test_severity_0_is_the_identity_and_draws_are_fixed_by_the_seed(kind):
    x = torch.rand(6, 3, 32, 32) * 2 - 1
    assert torch.equal(Corruption(kind, 0)(x), x)
    torch.manual_seed(1)
    first = Corruption(kind, 2, seed=5)(x)
    torch.manual_seed(2)  # the global RNG plays no part: every method sees the same corrupted images
    assert torch.equal(Corruption(kind, 2, seed=5)(x), first)
    assert first.shape == x.shape and first.min() >= -1 - 1e-6 and first.max() <= 1 + 1e-6
    assert not torch.equal(first, x)


def test_severities_grow():
    i = torch.arange(32.0)
    x = (torch.sin(0.5 * i).view(-1, 1) * torch.cos(0.4 * i).view(1, -1)).expand(64, 3, 32, 32)  # smooth, varied
    for kind in KINDS:
        change = [float((Corruption(kind, s, seed=0)(x) - x).abs().mean()) for s in (1, 2, 3)]
        assert change[0] < change[1] < change[2], (kind, change)
    assert len(SEVERITIES["blur"]) == 3
    with pytest.raises(ValueError, match="severity must be in \\[0, 3\\], got 4"):
        Corruption("blur", 4)
    with pytest.raises(ValueError, match="kind='fog' is not one of"):
        Corruption("fog", 1)


def test_contrast_and_shift_by_hand():
    x = torch.tensor([-1.0, 1.0]).repeat(8).view(1, 1, 4, 4)  # mean 0
    assert torch.allclose(Corruption("contrast", 2)(x), 0.5 * x)
    y = torch.arange(16.0).view(1, 1, 4, 4)
    shifted = Corruption("shift", 1, seed=0)(y)
    assert set(shifted.flatten().tolist()) <= set(y.flatten().tolist())  # whole pixels, border padding


def test_area_under_curve_and_collapses_by_hand():
    assert area_under_curve([0, 50, 100], [0.0, 0.4, 0.2]) == pytest.approx((50 * 0.2 + 50 * 0.3) / 100)
    assert area_under_curve([0, 100], [0.5, 0.5]) == 0.5
    with pytest.raises(ValueError, match="needs >= 2 points"):
        area_under_curve([0], [1.0])
    assert collapsed([0.0, 0.2, 0.3, 0.01], baseline=0.01)  # rose above 0.06, fell back to the baseline
    assert not collapsed([0.0, 0.2, 0.3, 0.05], baseline=0.01)  # dipped, not to the baseline
    assert not collapsed([0.0, 0.03, 0.0], baseline=0.0)  # never rose by the margin


def test_stability_probe_logs_every_n_batches_and_does_not_change_training(tmp_path, cache_dir):
    from datamodules import UnpairedDigitsDataModule
    from lightning_modules import ACCR
    from nets import DigitNet, PatchDiscriminator, ResnetGenerator

    judge = DigitNet(3, 20, width=4, feature_dim=8).eval()
    torch.save({"config": judge.config, "state_dict": judge.state_dict()}, tmp_path / "joint.pt")

    def run(callbacks):
        L.seed_everything(0)
        model = ACCR(
            g_ab=ResnetGenerator(width=4, n_blocks=1),
            g_ba=ResnetGenerator(width=4, n_blocks=1),
            d_a=PatchDiscriminator(width=4),
            d_b=PatchDiscriminator(width=4),
            lr_constant_epochs=1,
            lr_decay_epochs=0,
        )
        dm = UnpairedDigitsDataModule(cache_dir=cache_dir, batch_size=4, batches_per_epoch=6, val_size=24)
        logger = L.pytorch.loggers.CSVLogger(tmp_path, name=str(len(callbacks)))
        trainer = L.Trainer(
            max_epochs=1,
            logger=logger,
            callbacks=callbacks,
            limit_val_batches=0,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        trainer.fit(model, dm)
        return model, logger

    plain, _ = run([])
    probed, logger = run([EarlyStability(str(tmp_path / "joint.pt"), every_n_steps=2, until_step=4, max_images=10)])
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), probed.state_dict().values()))
    import csv

    rows = [r for r in csv.DictReader(open(f"{logger.log_dir}/metrics.csv")) if r.get("stability/joint_a2b")]
    assert [int(float(r["stability/batch"])) for r in rows] == [0, 2, 4]
    assert all(0 <= float(r["stability/joint_b2a"]) <= 1 for r in rows)


def test_cross_variants_join_the_stability_and_robustness_tables():
    """ACCR with cross-network terms is its own row, paired with CycleGAN by seed; other ablations are not rows."""
    from coadv.study import stability as results
    from nets.corruptions import KINDS

    def cell(method, variant, seed, level):
        rob = {f"rob_{k}_{s}_{side}": level for k in KINDS for s in (1, 2, 3) for side in ("a2b", "b2a")}
        rob.update({f"rob_{x}_{side}": level for x in ("clean", "mean") for side in ("a2b", "b2a")})
        curve = [[50, level], [100, level]]
        return {
            "variant": variant,
            "method": method,
            "pair": "m2mm",
            "seed": seed,
            "curve_a2b": curve,
            "curve_b2a": curve,
            **rob,
        }

    records = [cell("cyclegan", "base", s, 0.5) for s in (0, 1)]
    records += [cell("accr", "cross_all", s, 0.5 + d) for s, d in ((0, 0.1), (1, 0.2))]
    records += [cell("accr", "idt_0", s, 0.9) for s in (0, 1)]
    text = results.stability_tables(records, None, "m2mm", "svhn")
    assert "| ACCR [cross_all] | 2 |" in text and "idt_0" not in text
    # AUC of a flat curve is its level: differences 0.1 and 0.2, mean 0.15
    assert "ACCR [cross_all] − CycleGAN, area under the curve: +0.1500" in text
    robust = results.robustness_tables(records, None, "m2mm", "svhn")
    assert "ACCR [cross_all] − CycleGAN, mean over corruptions: +0.1500" in robust and "idt_0" not in robust
    # the drop from clean is a column without a verdict: doing nothing (a low clean level) would win it
    assert "drop from clean:" not in robust and "| 0.000 ± 0.000 |" in robust
    records[2]["rob_mean_a2b"] = 0.5  # clean 0.6, mean 0.5 on seed 0: drops 0.1, 0 on seed 1
    robust = results.robustness_tables(records, None, "m2mm", "svhn")
    assert "| 0.600 ± 0.141 | 0.050 ± 0.071 |" in robust  # mean over corruptions, drop from clean
    # with ACCR itself present, the cross variant is also paired with it (the ablation question)
    records += [cell("accr", "base", s, 0.55) for s in (0, 1)]
    text = results.stability_tables(records, None, "m2mm", "svhn")
    assert "ACCR [cross_all] − ACCR, area under the curve: +0.1000" in text  # 0.6 - 0.55, 0.7 - 0.55
    records.append({**cell("accr", "cross_all", 2, 0.5), "curve_b2a": [[50, 0.5]]})  # one point: not a curve
    assert "| ACCR [cross_all] | 2 |" in results.stability_tables(records, None, "m2mm", "svhn")
