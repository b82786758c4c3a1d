"""A run stopped after epoch k resumes from its last checkpoint with the same LR schedule, pool and optimizer state."""

import lightning as L
import torch
from conftest import quiet_trainer, tiny
from lightning.pytorch.callbacks import ModelCheckpoint

from datamodules import UnpairedDigitsDataModule
from lightning_modules import ACCR


class StateAtEpochStart(L.Callback):
    def __init__(self):
        self.seen = {}

    def on_train_epoch_start(self, trainer, pl_module):
        opt_g, opt_d = trainer.optimizers
        steps = [s["step"].item() for s in opt_g.state.values()][:1]
        self.seen[trainer.current_epoch] = {
            "lr": (opt_g.param_groups[0]["lr"], opt_d.param_groups[0]["lr"]),
            "pool_a": None if pl_module.pool_a.images is None else pl_module.pool_a.images.clone(),
            "adam_step": steps[0] if steps else 0,
        }


def run(tmp_path, max_epochs, ckpt_path=None):
    L.seed_everything(0)
    model = tiny(ACCR, pool_size=4, lr_constant_epochs=1, lr_decay_epochs=3)
    dm = UnpairedDigitsDataModule("mnist", "mnist_m", cache_dir=str(tmp_path.parent / "cache"), batch_size=4,
                                  batches_per_epoch=3)  # fmt: skip
    watcher = StateAtEpochStart()
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    trainer = quiet_trainer(max_epochs=max_epochs, callbacks=[watcher, checkpoint], limit_val_batches=0)
    trainer.fit(model, dm, ckpt_path=ckpt_path)
    return watcher.seen, trainer


def test_resume_continues_schedule_pool_and_optimizer(tmp_path):
    uninterrupted, _ = run(tmp_path / "full", max_epochs=3)
    _, first = run(tmp_path / "part", max_epochs=2)
    last = tmp_path / "part" / "ckpt" / "last.ckpt"
    saved = torch.load(last, weights_only=False)
    assert saved["image_pools"]["a"]["images"].shape == (4, 3, 32, 32)
    assert saved["lr_schedulers"][0]["last_epoch"] == 2
    resumed, trainer = run(tmp_path / "part", max_epochs=3, ckpt_path=str(last))
    assert list(resumed) == [2] and trainer.current_epoch == 3
    at2 = resumed[2]
    assert at2["lr"] == uninterrupted[2]["lr"] == (2e-4 * (1 - 2 / 4), 2e-4 * (1 - 2 / 4))  # decay continues
    assert torch.equal(at2["pool_a"], saved["image_pools"]["a"]["images"])  # pool restored, not refilled
    assert at2["adam_step"] == uninterrupted[2]["adam_step"] == 6  # Adam moments continue from step 6


def test_cli_resumes_from_last_checkpoint(tmp_path, cache_dir):
    from coadv.cli import cli_main

    args = ["fit", "-c", "configs/demo.yaml", f"--trainer.default_root_dir={tmp_path}", "--trainer.logger=false",
            "--trainer.limit_val_batches=0", "--trainer.enable_progress_bar=false", f"--data.init_args.cache_dir={cache_dir}",
            "--data.init_args.batch_size=4", "--data.init_args.batches_per_epoch=2",
            "--model.init_args.classifier_a=null", "--model.init_args.classifier_b=null"]  # fmt: skip
    first = cli_main([*args, "--trainer.max_epochs=1"])
    assert first.trainer.global_step == 4 and (tmp_path / "checkpoints" / "last.ckpt").is_file()
    resumed = cli_main([*args, "--trainer.max_epochs=2", "--ckpt_path=last"])
    assert resumed.trainer.current_epoch == 2 and resumed.trainer.global_step == 8  # continued, not restarted
