"""On a CUDA device: each translation method trains a few steps with every speed lever (bf16-mixed, channels_last,
batched passes, torch.compile, fused Adam) through the Trainer and the CLI fragments; the classifier and a speaker
victim train with bf16 + compile. Losses finite, every player's weights moved, levers really on."""

import pytest
import torch
from helpers import QUIET

from coadv.cli import cli_main
from coadv.constants import classifier_args, speaker_args, translation_args
from lightning_modules import ACCR, CRCycleGAN, CycleGAN
from lightning_modules.acceleration import is_compiled

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

TINY = [f"--model.init_args.{n}.init_args.width=16" for n in ("g_ab", "g_ba", "d_a", "d_b")] + [
    "--model.init_args.g_ab.init_args.n_blocks=2",
    "--model.init_args.g_ba.init_args.n_blocks=2",
    "--data.init_args.batch_size=16",
    "--data.init_args.batches_per_epoch=4",
    "--trainer.max_epochs=1",
    "--trainer.limit_val_batches=2",
    "--trainer.accelerator=gpu",
    "--trainer.devices=1",
    "--trainer.log_every_n_steps=1",
]


def float_weights(module):
    return {k: v.detach().float().cpu().clone() for k, v in module.state_dict().items() if v.is_floating_point()}


@pytest.mark.parametrize(("method", "cls"), [("cyclegan", CycleGAN), ("cr_cyclegan", CRCycleGAN), ("accr", ACCR)])
def test_translation_trains_with_every_lever(method, cls, tmp_path, cache_dir, tiny_classifiers):
    args = [
        *translation_args(method, "m2mm"),
        "-c",
        "configs/trainer/fast_translation.yaml",
        *QUIET,
        *TINY,
        f"--trainer.default_root_dir={tmp_path}",
        f"--data.init_args.cache_dir={cache_dir}",
        f"--model.init_args.classifier_a={tiny_classifiers['mnist']}",
        f"--model.init_args.classifier_b={tiny_classifiers['mnist_m']}",
    ]
    before = float_weights(cli_main(args, run=False).model)
    cli = cli_main(["fit", *args])
    model = cli.model
    trainer = cli.trainer
    assert isinstance(model, cls) and model.device.type == "cuda" and trainer.global_step == 8
    assert trainer.precision == "bf16-mixed" and all(o.defaults["fused"] for o in trainer.optimizers)
    nets = (model.g_ab, model.g_ba, model.d_a, model.d_b)
    assert all(is_compiled(n) for n in nets) and torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0
    assert model.g_ab.model[1].weight.is_contiguous(memory_format=torch.channels_last)
    after = float_weights(model)
    for net in ("g_ab", "g_ba", "d_a", "d_b"):
        keys = [k for k in before if k.startswith(f"{net}.")]
        assert all(torch.isfinite(after[k]).all() for k in keys)
        assert any(not torch.equal(before[k], after[k]) for k in keys), net
    metrics = trainer.callback_metrics
    assert torch.isfinite(metrics["train/g_loss"]) and torch.isfinite(metrics["train/d_loss"])
    assert 0 <= float(metrics["val/acc_mean"]) <= 1


@pytest.mark.parametrize(
    ("configs", "flags"),
    [
        (classifier_args("mnist"), ["--model.init_args.channels_last=true"]),
        (speaker_args("ecapa_synth"), ["--model.init_args.victim.init_args.channels=64"]),
    ],
)
def test_classifier_and_speaker_victim_train_with_bf16_and_compile(configs, flags, tmp_path, cache_dir, corpus):
    classifier = any("classifier" in arg for arg in configs)
    data = [f"--data.init_args.cache_dir={cache_dir}"] if classifier else [f"--data.init_args.root={corpus}"]
    cli = cli_main(
        [
            "fit",
            *configs,
            "-c",
            "configs/trainer/bf16.yaml",
            "-c",
            "configs/trainer/compile.yaml",
            *QUIET,
            *flags,
            *data,
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.accelerator=gpu",
            "--trainer.devices=1",
            "--trainer.fast_dev_run=3",
        ]
    )  # no checkpoint written into the repo
    assert cli.trainer.global_step == 3 and cli.model.device.type == "cuda"
    assert torch.isfinite(cli.trainer.callback_metrics["train/loss"])
