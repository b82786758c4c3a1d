"""Resume: a run stopped after epoch k continues its LR schedule, pool and optimizer state; a run killed with SIGKILL
mid-epoch and resumed with ``--ckpt_path last`` ends with the uninterrupted run's weights; checkpoints are atomic."""

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from helpers import merged_files, quiet_trainer, tiny
from lightning.pytorch.callbacks import ModelCheckpoint

from coadv.constants import SPEAKER_RUNS, classifier_files, demo_files, speaker_files
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
    dm = UnpairedDigitsDataModule(
        "mnist", "mnist_m", cache_dir=str(tmp_path.parent / "cache"), batch_size=4, batches_per_epoch=3
    )
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
    (pools,) = saved["image_pools_per_rank"]  # one process: one entry
    assert pools["a"]["images"].shape == (4, 3, 32, 32)
    assert saved["lr_schedulers"][0]["last_epoch"] == 2
    resumed, trainer = run(tmp_path / "part", max_epochs=3, ckpt_path=str(last))
    assert list(resumed) == [2] and trainer.current_epoch == 3
    at2 = resumed[2]
    assert at2["lr"] == uninterrupted[2]["lr"] == (2e-4 * (1 - 2 / 4), 2e-4 * (1 - 2 / 4))  # decay continues
    assert torch.equal(at2["pool_a"], pools["a"]["images"])  # pool restored, not refilled
    assert at2["adam_step"] == uninterrupted[2]["adam_step"] == 6  # Adam moments continue from step 6


def test_cli_resumes_from_last_checkpoint(tmp_path, cache_dir):
    from coadv.cli import cli_main

    args = [
        "fit",
        *(arg for path in demo_files() for arg in ("-c", str(path))),
        f"--trainer.default_root_dir={tmp_path}",
        "--trainer.logger=false",
        "--trainer.limit_val_batches=0",
        "--trainer.enable_progress_bar=false",
        f"--data.init_args.cache_dir={cache_dir}",
        "--data.init_args.batch_size=4",
        "--data.init_args.batches_per_epoch=2",
        "--model.init_args.classifier_a=null",
        "--model.init_args.classifier_b=null",
    ]
    first = cli_main([*args, "--trainer.max_epochs=1"])
    assert first.trainer.global_step == 4 and (tmp_path / "checkpoints" / "last.ckpt").is_file()
    resumed = cli_main([*args, "--trainer.max_epochs=2", "--ckpt_path=last"])
    assert resumed.trainer.current_epoch == 2 and resumed.trainer.global_step == 8  # continued, not restarted


ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}"}
COMMON = [
    "--trainer.accelerator=cpu",
    "--trainer.devices=1",
    "--trainer.deterministic=true",
    "--trainer.logger=false",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
]


def fit(root: Path, configs: list[str], flags: list[str], kill_at: int | None = None, resume: bool = False):
    """``coadv fit`` of ``configs`` (merged in order) in a subprocess with their callbacks, the ``ResumeCheckpoint``
    saving every 2 batches (4 GAN steps, 2 speaker steps) and every folder under ``root``; ``kill_at``: SIGKILL
    before that batch."""
    trees = [yaml.safe_load((ROOT / config).read_text()) for config in configs]
    callbacks = [tree["trainer"]["callbacks"] for tree in trees if "callbacks" in tree.get("trainer", {})][-1]
    translation = any("translation" in config for config in configs)
    for callback in callbacks:
        args = callback.get("init_args", {})
        if "dirpath" in args:
            args["dirpath"] = str(root / args["dirpath"].replace("${trainer.default_root_dir}/", ""))
        if "${" in args.get("filename", ""):  # the speaker victims' ${speaker_run:...}: not resolvable from a CLI value
            args["filename"] = "victim"
        if callback["class_path"] == "callbacks.ResumeCheckpoint":
            args["every_n_train_steps"] = 4 if translation else 2
    if kill_at is not None:
        callbacks.append({"class_path": "probes.KillAt", "init_args": {"batch": kill_at}})
    args = [
        sys.executable,
        "-m",
        "coadv",
        "fit",
        *(arg for config in configs for arg in ("-c", config)),
        *COMMON,
        *flags,
        f"--trainer.default_root_dir={root}",
        f"--trainer.callbacks={json.dumps(callbacks)}",
        *(["--ckpt_path=last"] if resume else []),
    ]
    return subprocess.run(args, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)


def killed_resumed_and_uninterrupted(
    tmp_path: Path, configs: list[str], flags: list[str], family: str, epochs: int, per_epoch: int
) -> tuple[dict, dict]:
    """Final checkpoints of a run killed at a seeded random batch and resumed, and of the uninterrupted run."""
    full = fit(tmp_path / "full", configs, flags)
    assert full.returncode == 0, full.stderr[-3000:]
    kill_at = random.Random(f"{family}-3").randrange(3, epochs * per_epoch)  # seed 3: a kill that resumes mid-epoch
    killed = fit(tmp_path / "part", configs, flags, kill_at=kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    interrupted = torch.load(tmp_path / "part" / "checkpoints" / "last.ckpt", weights_only=True)
    position = [s["batches"] for s in interrupted["loops"]["fit_loop"]["state_dict"]["combined_loader"]]
    assert 0 < position[0] < per_epoch and interrupted["global_step"] > 0  # mid-epoch: resumes at the next batch
    resumed = fit(tmp_path / "part", configs, flags, resume=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    last = "checkpoints/last.ckpt"
    return torch.load(tmp_path / "part" / last, weights_only=True), torch.load(
        tmp_path / "full" / last, weights_only=True
    )


def test_training_configs_keep_a_resumable_last_checkpoint():
    """Every CLI run writes checkpoints atomically; every config that trains by an optimizer writes last.ckpt through
    ResumeCheckpoint under its run folder."""
    plugins = yaml.safe_load((ROOT / "configs" / "defaults.yaml").read_text())["trainer"]["plugins"]
    assert {"class_path": "callbacks.AtomicCheckpointIO"} in plugins
    trained = [
        *([p] for p in (ROOT / "configs").glob("translation/method/*.yaml")),
        demo_files(),
        classifier_files("mnist"),
        *(
            speaker_files(run) for run in SPEAKER_RUNS if not run.startswith("ivector")
        ),  # the i-vector: EM, no optimizer
    ]
    assert len(trained) == 11  # 3 translation methods, the demo, the classifiers (any domain), 6 speaker victims
    for config in trained:
        callbacks = merged_files(config)["trainer"]["callbacks"]
        resume = [c for c in callbacks if c["class_path"] == "callbacks.ResumeCheckpoint"]
        assert len(resume) == 1 and resume[0]["init_args"]["dirpath"] == "${trainer.default_root_dir}/checkpoints"
        others = [c.get("init_args", {}) for c in callbacks if c["class_path"].endswith(".ModelCheckpoint")]
        assert not any(c.get("save_last") for c in others), config  # one writer of last.ckpt


def equal(x: torch.Tensor, y: torch.Tensor) -> bool:
    """``torch.equal``, with NaN equal to NaN (a speaker module's threshold is NaN until it is validated)."""
    return torch.equal(x, y) or (x.is_floating_point() and torch.equal(x.nan_to_num(7.0), y.nan_to_num(7.0)))


def assert_same_training_state(a: dict, b: dict) -> None:
    assert a["global_step"] == b["global_step"] and a["epoch"] == b["epoch"]
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for name, tensor in a["state_dict"].items():
        assert equal(tensor, b["state_dict"][name]), name
    for opt_a, opt_b in zip(a["optimizer_states"], b["optimizer_states"], strict=True):
        assert opt_a["state"].keys() == opt_b["state"].keys()
        for key, state in opt_a["state"].items():
            for k, v in state.items():
                assert equal(v, opt_b["state"][key][k]), (key, k)
    assert a["lr_schedulers"] == b["lr_schedulers"]


@pytest.mark.slow
@pytest.mark.parametrize("devices", [1, 2])
def test_translation_killed_mid_epoch_resumes_to_the_same_weights(devices, tmp_path, cache_dir, tiny_classifiers):
    nets = [f"--model.init_args.{n}.init_args.width=8" for n in ("g_ab", "g_ba", "d_a", "d_b")]
    flags = [
        *nets,
        "--model.init_args.g_ab.init_args.n_blocks=1",
        "--model.init_args.g_ba.init_args.n_blocks=1",
        "--model.init_args.pool_size=4",
        "--model.init_args.lr_constant_epochs=1",
        "--model.init_args.lr_decay_epochs=2",
        "--trainer.max_epochs=3",
        "--trainer.limit_val_batches=1",
        f"--model.init_args.classifier_a={tiny_classifiers['mnist']}",
        f"--model.init_args.classifier_b={tiny_classifiers['mnist_m']}",
        f"--data.init_args.cache_dir={cache_dir}",
        "--data.init_args.batch_size=4",
        f"--data.init_args.batches_per_epoch={5 * devices}",
        "--data.init_args.val_size=8",
    ]
    if devices > 1:  # each rank's RNG states, pools and 5 of the 10 batches per epoch
        flags += [f"--trainer.devices={devices}", "--trainer.strategy=ddp_find_unused_parameters_true"]
    configs = ["configs/translation/method/accr.yaml", "configs/translation/direction/m2mm.yaml"]
    resumed, full = killed_resumed_and_uninterrupted(tmp_path, configs, flags, "translation", 3, 5)
    assert full["global_step"] == 30 and len(full["rng_states"]) == devices
    assert_same_training_state(resumed, full)
    pools = resumed["image_pools_per_rank"]
    full_pools = full["image_pools_per_rank"]
    assert len(pools) == len(full_pools) == devices
    for rank in range(devices):
        for domain in ("a", "b"):
            assert torch.equal(pools[rank][domain]["images"], full_pools[rank][domain]["images"]), (rank, domain)
    if devices > 1:  # each rank keeps its own pool (its own batches, its own fakes)
        assert not torch.equal(full_pools[0]["a"]["images"], full_pools[1]["a"]["images"])


@pytest.mark.slow
def test_speaker_victim_killed_mid_epoch_resumes_to_the_same_weights(tmp_path, corpus):
    flags = [
        f"--data.init_args.root={corpus}",
        "--data.init_args.crop_seconds=0.3",
        "--data.init_args.batch_size=2",
        "--model.init_args.victim.init_args.channels=16",
        "--model.init_args.victim.init_args.n_mels=24",
        "--model.init_args.victim.init_args.embedding_dim=16",
        "--trainer.max_epochs=2",
        "--trainer.limit_val_batches=0",
    ]
    resumed, full = killed_resumed_and_uninterrupted(
        tmp_path, [str(path) for path in speaker_files("ecapa_synth")], flags, "speaker", 2, 6
    )
    assert full["global_step"] == 12  # 6 training speakers x 2 utterances, batches of 2, 2 epochs
    assert_same_training_state(resumed, full)


class _Killed(BaseException):
    """Stands for a kill inside the process: nothing after the raise point runs (no cleanup is relied on)."""


def test_atomic_checkpoint_keeps_the_previous_file_when_a_save_is_interrupted(tmp_path, monkeypatch):
    from callbacks import AtomicCheckpointIO

    target = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": 1, "w": torch.ones(1000)}, target)

    def half_written(obj, f):
        f.write(b"\x80\x02 truncated")
        raise _Killed

    def killed_before_rename(*args):
        raise _Killed

    for where, replacement in (("torch.save", half_written), ("os.replace", killed_before_rename)):
        with monkeypatch.context() as m:
            m.setattr(where, replacement)
            with pytest.raises(_Killed):
                io.save_checkpoint({"step": 2, "w": torch.zeros(1000)}, target)
        saved = torch.load(target, weights_only=True)
        assert saved["step"] == 1 and torch.equal(saved["w"], torch.ones(1000))
        assert (tmp_path / ".last.ckpt.partial").is_file()  # the interrupted bytes went elsewhere
    io.save_checkpoint({"step": 3}, target)
    assert torch.load(target, weights_only=True)["step"] == 3 and not (tmp_path / ".last.ckpt.partial").exists()


@pytest.mark.slow
def test_atomic_checkpoint_survives_sigkill_while_saving(tmp_path):
    """Real processes SIGKILLed with half the bytes written, and just before the rename."""
    from callbacks import AtomicCheckpointIO

    target = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"step": 1, "w": torch.ones(1000)}, target)
    script = """
import os, signal, sys
import torch
from callbacks import AtomicCheckpointIO

target, where = sys.argv[1], sys.argv[2]
if where == "write":
    real_save = torch.save
    def half_then_die(obj, f):
        real_save(obj, f)
        f.flush()
        f.truncate(f.tell() // 2)
        os.kill(os.getpid(), signal.SIGKILL)
    torch.save = half_then_die
else:
    os.replace = lambda *args: os.kill(os.getpid(), signal.SIGKILL)
AtomicCheckpointIO().save_checkpoint({"step": 2, "w": torch.zeros(1000)}, target)
"""
    for where in ("write", "rename"):
        result = subprocess.run([sys.executable, "-c", script, str(target), where], cwd=ROOT, env=ENV, timeout=120)
        assert result.returncode == -signal.SIGKILL
        saved = torch.load(target, weights_only=True)
        assert saved["step"] == 1 and torch.equal(saved["w"], torch.ones(1000))
