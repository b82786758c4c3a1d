"""Verification checkpoints rebuild their module with ``load_from_checkpoint(path)`` alone (architecture from the
hyperparameters, weights, head size, threshold), whether the module came from ``coadv fit`` or from Python."""

from pathlib import Path

import lightning as L
import pytest
import torch
from helpers import QUIET, quiet_trainer

from coadv.cli import cli_main
from coadv.constants import speaker_args
from datamodules import VoxCelebDataModule
from datamodules.synth_speech import write_corpus
from lightning_modules import SpeakerEmbedding
from nets.speaker import ECAPATDNN

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vox")
    write_corpus(root, n_speakers=8, videos=1, utts_per_video=2, seconds=(0.5, 0.8), n_trials=8, seed=3)
    return root


def assert_same_module(rebuilt: L.LightningModule, original: L.LightningModule) -> None:
    assert type(rebuilt.victim) is type(original.victim) and rebuilt.victim.init_args == original.victim.init_args
    state = original.state_dict()
    rebuilt_state = rebuilt.state_dict()
    assert state.keys() == rebuilt_state.keys()
    for key, value in state.items():
        assert torch.equal(rebuilt_state[key], value), key
    assert float(rebuilt.threshold) == float(original.threshold) and torch.isfinite(rebuilt.threshold)
    wave = torch.rand(2, 8000) - 0.5
    with torch.no_grad():
        assert torch.equal(
            rebuilt.victim.eval().score(wave, wave.flip(0)), original.victim.eval().score(wave, wave.flip(0))
        )


@pytest.mark.parametrize(
    "config, extra",
    [
        ("ecapa_synth", ["--model.init_args.victim.init_args.channels=16"]),
        (
            "ivector_synth",
            [
                "--model.init_args.ubm_iterations=1",
                "--model.init_args.tv_iterations=1",
                "--model.init_args.victim.init_args.n_components=4",
                "--model.init_args.victim.init_args.rank=4",
                "--model.init_args.victim.init_args.lda_dim=3",
            ],
        ),
    ],
)
def test_cli_built_module_rebuilds_from_its_checkpoint(config, extra, corpus, tmp_path):
    cli = cli_main(
        [
            "fit",
            *speaker_args(config),
            "--trainer.fast_dev_run=true",
            f"--data.init_args.root={corpus}",
            "--data.init_args.batch_size=4",
            f"--trainer.default_root_dir={tmp_path}",
            *QUIET,
            *extra,
        ]
    )
    path = tmp_path / "victim.ckpt"
    cli.trainer.save_checkpoint(path)
    cls = type(cli.model)
    rebuilt = cls.load_from_checkpoint(path)  # weights_only=True by default: the hyperparameters are plain data
    assert_same_module(rebuilt, cli.model)
    # the rebuilt module names its classes by their defining modules (nets.speaker.encoders.ECAPATDNN), the CLI
    # by the configs' short paths: the same classes, the same values
    paths = ("_class_path", "victim")
    assert {k: v for k, v in rebuilt.hparams.items() if k not in paths} == {
        k: v for k, v in cli.model.hparams.items() if k not in paths
    }
    if cls is SpeakerEmbedding:  # the head was sized from the DataModule at setup, and the checkpoint says so
        assert rebuilt.hparams["num_speakers"] == cli.datamodule.num_speakers
        assert rebuilt.head.weight.shape == cli.model.head.weight.shape


def test_python_built_module_rebuilds_from_its_checkpoint(corpus, tmp_path):
    L.seed_everything(0)
    model = SpeakerEmbedding(ECAPATDNN(channels=16, embedding_dim=8, scale=2), margin=0.1)
    trainer = quiet_trainer(max_steps=1, limit_val_batches=0, enable_checkpointing=False)
    dm = VoxCelebDataModule(root=str(corpus), batch_size=4, eval_batch_size=4)
    trainer.fit(model, dm)
    quiet_trainer().validate(model, dm)  # stores the threshold
    trainer.save_checkpoint(tmp_path / "python.ckpt")
    rebuilt = SpeakerEmbedding.load_from_checkpoint(tmp_path / "python.ckpt")
    assert_same_module(rebuilt, model)
    assert rebuilt.margin == 0.1 and rebuilt.head.weight.shape == (model.hparams["num_speakers"], 8)
