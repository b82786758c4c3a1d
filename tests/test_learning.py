"""Learning checks on the embedded real digits."""

import lightning as L
import pytest
import torch
from conftest import quiet_trainer

from datamodules import DigitsDataModule, UnpairedDigitsDataModule
from lightning_modules import ACCR, DigitClassifier
from nets import DigitNet, PatchDiscriminator, ResnetGenerator, Translate


def train_classifier(domain, path, cache_dir, epochs=3):
    L.seed_everything(0)
    model = DigitClassifier(net=DigitNet(width=16, feature_dim=64), augment=Translate(0.1, padding="border"))
    trainer = quiet_trainer(max_epochs=epochs, enable_checkpointing=False)
    trainer.fit(model, DigitsDataModule(domain=domain, cache_dir=cache_dir, batch_size=64))
    trainer.save_checkpoint(path)
    return float(trainer.callback_metrics["val/acc"])


def test_classifier_learns_mnist_m(tmp_path, cache_dir):
    acc = train_classifier("mnist_m", tmp_path / "mm.ckpt", cache_dir, epochs=2)
    assert acc > 0.6  # chance is 0.1


@pytest.mark.slow
def test_short_accr_run_lifts_translated_accuracy(tmp_path, cache_dir):
    """A CI-sized ACCR run M -> MM: classifier accuracy on G(a) well above chance (0.1)."""
    paths = {d: tmp_path / f"{d}.ckpt" for d in ("mnist", "mnist_m")}
    for domain, path in paths.items():
        train_classifier(domain, path, cache_dir)
    L.seed_everything(0)
    model = ACCR(
        g_ab=ResnetGenerator(width=16, n_blocks=3), g_ba=ResnetGenerator(width=16, n_blocks=3),
        d_a=PatchDiscriminator(width=32), d_b=PatchDiscriminator(width=32),
        lr_constant_epochs=2, lr_decay_epochs=1, classifier_a=str(paths["mnist"]), classifier_b=str(paths["mnist_m"]),
    )  # fmt: skip
    dm = UnpairedDigitsDataModule("mnist", "mnist_m", cache_dir=cache_dir, batches_per_epoch=40, test_limit=500)
    trainer = quiet_trainer(max_epochs=3, enable_checkpointing=False)
    trainer.fit(model, dm)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    assert metrics["val/acc_a2b"] > 0.5 and metrics["val/acc_b2a"] > 0.5
    assert torch.isfinite(torch.tensor(metrics["val/fid_b"]))
