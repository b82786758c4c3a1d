"""Learning checks on the embedded real digits."""

import lightning as L
import pytest
import torch
from helpers import quiet_trainer

from datamodules import DigitsDataModule, UnpairedDigitsDataModule
from lightning_modules import ACCR, DigitClassifier
from nets import DigitNet, PatchDiscriminator, ResnetGenerator, Translate

pytestmark = pytest.mark.slow  # learning checks train for minutes on 2 cores: make test-all


def train_classifier(domain, path, cache_dir, epochs=3):
    L.seed_everything(0)
    # sub-pixel (bilinear) shifts: a judge that has seen slightly blurred digits reads generated ones (A->B 0.74
    # here, 0.37 with whole-pixel shifts for the same ACCR run)
    augment = Translate(0.1, padding="border", integer=False)
    model = DigitClassifier(net=DigitNet(width=16, feature_dim=64), augment=augment)
    trainer = quiet_trainer(max_epochs=epochs, enable_checkpointing=False)
    trainer.fit(model, DigitsDataModule(domain=domain, cache_dir=cache_dir, batch_size=64))
    trainer.save_checkpoint(path)
    return float(trainer.callback_metrics["val/acc"])


def test_classifier_learns_mnist_m(tmp_path, cache_dir):
    acc = train_classifier("mnist_m", tmp_path / "mm.ckpt", cache_dir, epochs=2)
    assert acc > 0.6  # chance is 0.1


def test_short_accr_run_lifts_translated_accuracy(tmp_path, cache_dir):
    """A CI-sized ACCR run M -> MM (240 steps of batch 32): the judges read translated digits far better than the
    untrained generator's and well above chance (0.1). Measured with the Ganin-style MNIST-M and the calibrated CR
    terms: A->B 0.09 -> 0.48, B->A 0.08 -> 0.50 (the earlier MNIST-M gave 0.77 / 0.38). Whether translation helps
    is the study's question (informative metrics); this only checks that the generators learn to keep the digit."""
    paths = {d: tmp_path / f"{d}.ckpt" for d in ("mnist", "mnist_m")}
    for domain, path in paths.items():
        train_classifier(domain, path, cache_dir)
    L.seed_everything(0)
    model = ACCR(
        g_ab=ResnetGenerator(width=16, n_blocks=3),
        g_ba=ResnetGenerator(width=16, n_blocks=3),
        d_a=PatchDiscriminator(width=32),
        d_b=PatchDiscriminator(width=32),
        lr_constant_epochs=2,
        lr_decay_epochs=1,
        classifier_a=str(paths["mnist"]),
        classifier_b=str(paths["mnist_m"]),
    )
    dm = UnpairedDigitsDataModule(
        "mnist", "mnist_m", cache_dir=cache_dir, batch_size=32, batches_per_epoch=80, test_limit=500
    )
    trainer = quiet_trainer(max_epochs=3, enable_checkpointing=False)
    before = trainer.validate(model, dm, verbose=False)[0]
    trainer = quiet_trainer(max_epochs=3, enable_checkpointing=False)
    trainer.fit(model, dm)
    after = {k: float(v) for k, v in trainer.callback_metrics.items()}
    print({k: (round(before[f"val/{k}"], 3), round(after[f"val/{k}"], 3)) for k in ("acc_a2b", "acc_b2a")})
    assert after["val/acc_a2b"] > 0.35 and after["val/acc_a2b"] > before["val/acc_a2b"] + 0.2
    assert after["val/acc_b2a"] > 0.35 and after["val/acc_b2a"] > before["val/acc_b2a"] + 0.2
    assert torch.isfinite(torch.tensor(after["val/fid_b"]))
