"""Scale and speed switches on CPU: the configs/trainer fragments compose with the experiment configs (bf16 mixed
precision for every module that trains by an optimizer, the translation speed preset, DDP with unused-parameter search on one machine,
SLURM detected by Lightning), channels_last and compile are wired in, and compiled steps keep the math."""

import pytest
import torch
from helpers import QUIET, tiny
from test_benchmarks import assert_same_gradients

from coadv.cli import cli_main
from coadv.constants import classifier_files, speaker_files, translation_files
from lightning_modules import CycleGAN, DigitClassifier, SpeakerEmbedding
from lightning_modules.acceleration import is_compiled

TINY_TRANSLATION = [f"--model.init_args.{n}.init_args.width=8" for n in ("g_ab", "g_ba", "d_a", "d_b")] + [
    "--model.init_args.g_ab.init_args.n_blocks=1",
    "--model.init_args.g_ba.init_args.n_blocks=1",
    "--model.init_args.classifier_a=null",
    "--model.init_args.classifier_b=null",
    "--data.init_args.batch_size=4",
]
TINY_CLASSIFIER = [
    "--model.init_args.net.init_args.width=8",
    "--model.init_args.net.init_args.feature_dim=16",
    "--data.init_args.batch_size=8",
]
TINY_SPEAKER = [
    "--model.init_args.victim.init_args.channels=16",
    "--model.init_args.victim.init_args.n_mels=24",
    "--model.init_args.victim.init_args.embedding_dim=16",
    "--data.init_args.batch_size=2",
    "--data.init_args.crop_seconds=0.3",
]


def fit(config, fragments, tmp_path, flags, run=True):
    """``coadv fit`` of ``config`` (a path, or a list of paths merged in order) + the configs/trainer fragments."""
    paths = [*([config] if isinstance(config, str) else config), *(f"configs/trainer/{f}.yaml" for f in fragments)]
    configs = [arg for path in paths for arg in ("-c", str(path))]
    args = [*configs, *QUIET, f"--trainer.default_root_dir={tmp_path}", *flags]
    return cli_main(["fit", *args, "--trainer.fast_dev_run=true"] if run else args, run=run)


def weights(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items() if v.is_floating_point()}


@pytest.fixture
def speaker_flags(corpus):
    return [f"--data.init_args.root={corpus}", *TINY_SPEAKER]


@pytest.mark.parametrize("family", ["translation", "classifier", "speaker"])
def test_bf16_fragment_trains_every_module_family(family, tmp_path, cache_dir, request):
    config, flags = {
        "translation": (
            translation_files("accr", "m2mm"),
            [*TINY_TRANSLATION, f"--data.init_args.cache_dir={cache_dir}"],
        ),
        "classifier": (
            classifier_files("mnist_m"),
            [*TINY_CLASSIFIER, f"--data.init_args.cache_dir={cache_dir}"],
        ),
        "speaker": (speaker_files("ecapa_synth"), request.getfixturevalue("speaker_flags")),
    }[family]
    before = weights(fit(config, ["bf16"], tmp_path, flags, run=False).model)
    cli = fit(config, ["bf16"], tmp_path, flags)
    assert cli.trainer.precision == "bf16-mixed" and cli.trainer.global_step >= 1
    after = weights(cli.model)
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in after.values())  # float32 master weights
    assert any(not torch.equal(before[k], after[k]) for k in before)  # it trained
    if family == "translation":
        assert cli.model.pool_a.images.dtype == torch.bfloat16  # fakes were made under autocast


def test_translation_speed_preset_switches_every_lever(tmp_path, cache_dir):
    flags = [*TINY_TRANSLATION, f"--data.init_args.cache_dir={cache_dir}", "--model.init_args.compile=false"]
    cli = fit(translation_files("cr_cyclegan", "m2mm"), ["fast_translation"], tmp_path, flags)
    model = cli.model
    trainer = cli.trainer
    assert trainer.precision == "bf16-mixed" and trainer.global_step == 2
    assert model.batched_passes and model.channels_last
    assert all(o.defaults["fused"] for o in trainer.optimizers)
    convs = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)


def test_channels_last_and_compile_are_wired_in_configure_model():
    model = tiny(CycleGAN, channels_last=True, compile=True)
    assert not any(is_compiled(n) for n in (model.g_ab, model.g_ba, model.d_a, model.d_b))
    model.configure_model()
    model.configure_model()  # every fit / validate / test calls it: converting twice must be harmless
    assert all(is_compiled(n) for n in (model.g_ab, model.g_ba, model.d_a, model.d_b))
    assert model.g_ab.model[1].weight.is_contiguous(memory_format=torch.channels_last)
    assert list(model.state_dict()) == list(tiny(CycleGAN).state_dict())  # checkpoints unchanged
    classifier = DigitClassifier(compile=True, channels_last=True)
    classifier.configure_model()
    assert is_compiled(classifier.net)
    speaker = SpeakerEmbedding(compile=True)
    speaker.configure_model()
    assert speaker._train_embed is not None and speaker._train_embed is not speaker.victim.embed


def test_compile_refuses_without_a_c_compiler(monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(RuntimeError, match="model.init_args.compile=true needs a C compiler"):
        tiny(CycleGAN, compile=True).configure_model()


def test_gpus_fragment_uses_ddp_that_finds_unused_parameters(tmp_path, cache_dir):
    from lightning.pytorch.strategies import DDPStrategy

    flags = [
        *TINY_TRANSLATION,
        f"--data.init_args.cache_dir={cache_dir}",
        "--trainer.accelerator=cpu",
        "--trainer.devices=1",
    ]
    cli = fit(translation_files("cyclegan", "m2mm"), ["gpus"], tmp_path, flags, run=False)
    strategy = cli.trainer.strategy
    assert isinstance(strategy, DDPStrategy) and strategy._ddp_kwargs["find_unused_parameters"] is True


def test_slurm_fragment_lets_lightning_detect_slurm(tmp_path, cache_dir, monkeypatch):
    from lightning.fabric.utilities.rank_zero import rank_zero_only as fabric_rank_zero
    from lightning.pytorch.plugins.environments import SLURMEnvironment
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    # the Trainer sets the process-wide rank from SLURM_PROCID=1: restore rank 0 afterwards, or every later test's
    # rank_zero_warn stays silent
    monkeypatch.setattr(rank_zero_only, "rank", rank_zero_only.rank)
    monkeypatch.setattr(fabric_rank_zero, "rank", fabric_rank_zero.rank)
    for key in ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE", "GLOBAL_RANK"):
        monkeypatch.delenv(key, raising=False)  # Lightning derives these from SLURM; conftest restores os.environ

    slurm = {
        "SLURM_NTASKS": "2",
        "SLURM_NTASKS_PER_NODE": "1",
        "SLURM_PROCID": "1",
        "SLURM_LOCALID": "0",
        "SLURM_NODEID": "1",
        "SLURM_NODELIST": "node[3-4]",
        "SLURM_JOB_ID": "77",
        "SLURM_JOB_NAME": "coadv",
    }
    for key, value in slurm.items():
        monkeypatch.setenv(key, value)
    flags = [
        *TINY_TRANSLATION,
        f"--data.init_args.cache_dir={cache_dir}",
        "--trainer.accelerator=cpu",
        "--trainer.devices=1",
    ]
    trainer = fit(translation_files("cyclegan", "m2mm"), ["slurm"], tmp_path, flags, run=False).trainer
    env = trainer.strategy.cluster_environment
    assert isinstance(env, SLURMEnvironment) and not env.auto_requeue
    assert (trainer.num_nodes, trainer.world_size, trainer.global_rank, trainer.node_rank) == (2, 2, 1, 1)
    assert env.main_address == "node3"


@pytest.mark.slow
def test_compiled_steps_keep_the_math():
    """A compiled CycleGAN step gives the eager step's gradients (to float rounding); about a minute of compiling."""
    from benchmarks.translation_throughput import Trainerless

    torch.manual_seed(0)
    eager = tiny(CycleGAN)
    compiled = tiny(CycleGAN, compile=True)
    compiled.load_state_dict(eager.state_dict())
    runs = [Trainerless(m) for m in (eager, compiled)]
    batch = {k: (torch.rand(4, 3, 32, 32) * 2 - 1, None) for k in "ab"}
    grads = []
    for run in runs:
        seen = []
        for opt in run.opts:
            opt.register_step_pre_hook(
                lambda o, *_, seen=seen: seen.append([p.grad.clone() for p in o.param_groups[0]["params"]])
            )
        run.step(batch)
        grads.append(seen)
    assert all(is_compiled(n) for n in (compiled.g_ab, compiled.d_a))
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0  # it really compiled
    assert_same_gradients(grads[1], grads[0])


@pytest.mark.slow
@pytest.mark.parametrize("family", ["classifier", "speaker"])
def test_compile_fragment_trains_the_classifier_and_the_speaker_victims(family, tmp_path, cache_dir, request):
    config, flags = {
        "classifier": (classifier_files("mnist"), [*TINY_CLASSIFIER, f"--data.init_args.cache_dir={cache_dir}"]),
        "speaker": (speaker_files("ecapa_synth"), request.getfixturevalue("speaker_flags")),
    }[family]
    cli = fit(config, ["compile"], tmp_path, [*flags, "--trainer.limit_val_batches=0"])
    assert cli.trainer.global_step == 1
    compiled = is_compiled(cli.model.net) if family == "classifier" else cli.model._train_embed is not None
    assert compiled and torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0
