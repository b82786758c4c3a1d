"""``Module.load_from_checkpoint(path)``, with no other argument, rebuilds a CLI-trained module, nets included."""

import shutil

import pytest
import torch
from helpers import ROOT, quiet_trainer

from coadv.cli import cli_main
from coadv.constants import classifier_args, translation_args
from datamodules import UnpairedDigitsDataModule
from lightning_modules import ACCR, CRCycleGAN, CycleGAN, DigitClassifier
from lightning_modules.hparams import is_plain
from nets import DigitNet, PatchDiscriminator, ResnetGenerator, Rotate, load_digit_net

# nets unlike the defaults (and unlike each other), so a module rebuilt with default nets cannot load the weights
TINY_NETS = [
    "--model.init_args.g_ab.init_args.width=8",
    "--model.init_args.g_ab.init_args.n_blocks=1",
    "--model.init_args.g_ba.init_args.width=4",
    "--model.init_args.g_ba.init_args.n_blocks=2",
    "--model.init_args.d_a.init_args.width=8",
    "--model.init_args.d_b.init_args.width=16",
    "--model.init_args.d_b.init_args.n_layers=1",
]
TRANSLATION = {CycleGAN: "cyclegan", CRCycleGAN: "cr_cyclegan", ACCR: "accr"}


def fit(configs: list[str], tmp_path, cache_dir, *extra: str):
    """One fast_dev_run step through the CLI (``-c`` each of ``configs``), then a checkpoint of the trained module."""
    cli = cli_main(
        [
            "fit",
            *configs,
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.fast_dev_run=true",
            "--trainer.logger=false",
            "--trainer.enable_progress_bar=false",
            f"--data.init_args.cache_dir={cache_dir}",
            "--data.init_args.batch_size=4",
            "--data.init_args.test_limit=8",
            *extra,
        ]
    )
    assert cli.trainer.global_step >= 1
    path = tmp_path / "trained.ckpt"
    cli.trainer.save_checkpoint(path)
    return cli, path


def assert_same_module(trained, loaded, inputs: dict[str, torch.Tensor]) -> None:
    assert type(loaded) is type(trained)
    want = trained.state_dict()
    got = loaded.state_dict()
    assert list(got) == list(want) and all(torch.equal(got[k], want[k]) for k in want)
    trained.eval()
    loaded.eval()
    for net, x in inputs.items():
        assert torch.equal(getattr(loaded, net)(x), getattr(trained, net)(x)), net
    assert dict(loaded.hparams) == dict(trained.hparams)  # saving the rebuilt module stays self-contained


def judge_copies(tiny_classifiers, tmp_path) -> list[str]:
    """Classifier checkpoints that the test may delete (the fixture's are shared)."""
    (tmp_path / "judges").mkdir()
    copies = [str(shutil.copy(tiny_classifiers[d], tmp_path / "judges" / f"{d}.ckpt")) for d in ("mnist", "mnist_m")]
    return [f"--model.init_args.classifier_a={copies[0]}", f"--model.init_args.classifier_b={copies[1]}"]


@pytest.mark.parametrize("cls", list(TRANSLATION), ids=lambda c: c.__name__)
def test_cli_trained_translation_module_rebuilds_from_checkpoint_alone(cls, tmp_path, tiny_classifiers, cache_dir):
    extra = (
        ["-c", str(ROOT / "configs/ablations/augment/rotate.yaml"), "-c", str(ROOT / "configs/ablations/cross/gd.yaml")]
        if cls is ACCR
        else []
    )
    cli, path = fit(
        translation_args(TRANSLATION[cls], "m2mm"),
        tmp_path,
        cache_dir,
        *TINY_NETS,
        *extra,
        *judge_copies(tiny_classifiers, tmp_path),
    )
    loaded = cls.load_from_checkpoint(path)
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert_same_module(cli.model, loaded, {net: x for net in ("g_ab", "g_ba", "d_a", "d_b")})
    assert torch.equal(loaded(x), cli.model(x))
    assert all(is_plain(v) for v in torch.load(path, weights_only=True)["hyper_parameters"].values())
    if cls is ACCR:  # the ablation's T and cross term came back too, not the defaults
        assert isinstance(loaded.augment, Rotate) and loaded.augment.max_degrees == 15.0
        assert loaded.cross.lambda_gd == 1.0 and loaded.cross.lambda_dd == 0.0


def judge_weights(module, domain: str) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.evaluator.judges[domain].state_dict().items()}


def same_weights(x: dict[str, torch.Tensor], y: dict[str, torch.Tensor]) -> bool:
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def test_judges_come_from_the_configured_files_not_the_checkpoint(tmp_path, tiny_classifiers, cache_dir):
    cli, path = fit(
        translation_args("cyclegan", "m2mm"), tmp_path, cache_dir, *TINY_NETS, *judge_copies(tiny_classifiers, tmp_path)
    )
    saved = torch.load(path, weights_only=True)
    assert not any(k.startswith("evaluator.") for k in saved["state_dict"])  # no judge weights, not even once
    assert saved["judges"]["b"]["path"] == str(tmp_path / "judges" / "mnist_m.ckpt")

    dm = UnpairedDigitsDataModule("mnist", "mnist_m", cache_dir=cache_dir, batch_size=4, test_limit=8)
    before = quiet_trainer(limit_val_batches=1).validate(cli.model, dm)[0]
    loaded = CycleGAN.load_from_checkpoint(path)  # alone: the judges are read from the configured paths
    assert quiet_trainer(limit_val_batches=1).validate(loaded, dm)[0] == pytest.approx(before)

    # a changed classifier_b is the judge used, even for a checkpoint that still holds other judge weights (as
    # older versions stored them): and the change is reported
    other = tiny_classifiers["syn_digits"]
    stale = {
        **saved,
        "state_dict": {
            **saved["state_dict"],
            **{f"evaluator.judges.b.{k}": v for k, v in judge_weights(cli.model, "b").items()},
        },
    }
    torch.save(stale, tmp_path / "stale.ckpt")
    changed = CycleGAN.load_from_checkpoint(tmp_path / "stale.ckpt", classifier_b=other)
    with pytest.warns(UserWarning, match=f"classifier_b='{other}' holds other weights than the judge this checkpoint"):
        after = quiet_trainer(limit_val_batches=1).validate(changed, dm)[0]
    assert same_weights(judge_weights(changed, "b"), load_digit_net(other).state_dict())
    assert after["val/acc_a2b"] != before["val/acc_a2b"] or after["val/fid_b"] != before["val/fid_b"]

    # resuming a fit: the restored state dict cannot replace the configured judge either
    resumed = CycleGAN.load_from_checkpoint(path, classifier_b=other)
    train_dm = UnpairedDigitsDataModule(
        "mnist", "mnist_m", cache_dir=cache_dir, batch_size=4, batches_per_epoch=1, test_limit=8
    )
    trainer = quiet_trainer(max_steps=4, limit_val_batches=1, enable_checkpointing=False)
    with pytest.warns(UserWarning, match="holds other weights than the judge"):
        trainer.fit(resumed, train_dm, ckpt_path=path)
    assert trainer.global_step == 4 and same_weights(judge_weights(resumed, "b"), load_digit_net(other).state_dict())

    shutil.rmtree(tmp_path / "judges")
    with pytest.raises(FileNotFoundError, match=f"classifier_a: .*'{tmp_path / 'judges' / 'mnist.ckpt'}' does not"):
        quiet_trainer(limit_val_batches=1).validate(CycleGAN.load_from_checkpoint(path), dm)


def test_cli_trained_classifier_rebuilds_from_checkpoint_alone(tmp_path, cache_dir):
    cli, path = fit(
        classifier_args("mnist_m"),
        tmp_path,
        cache_dir,
        "--model.init_args.net.init_args.width=4",
        "--model.init_args.net.init_args.feature_dim=8",
    )
    loaded = DigitClassifier.load_from_checkpoint(path, weights_only=True)
    assert loaded.net.config["width"] == 4 and loaded.net.config["feature_dim"] == 8
    torch.manual_seed(0)
    assert_same_module(cli.model, loaded, {"net": torch.rand(2, 3, 32, 32) * 2 - 1})


def test_python_built_module_names_the_nets_to_pass(tmp_path, cache_dir):
    def nets():
        return dict(
            g_ab=ResnetGenerator(width=8, n_blocks=1),
            g_ba=ResnetGenerator(width=8, n_blocks=1),
            d_a=PatchDiscriminator(width=8),
            d_b=PatchDiscriminator(width=8),
        )

    # a lambda optimizer cannot be pickled: it must stay out of the hyperparameters
    model = ACCR(**nets(), generator_optimizer=lambda p: torch.optim.SGD(p, lr=0.1), lambda_rec=3.0)
    dm = UnpairedDigitsDataModule("mnist", "mnist_m", cache_dir=cache_dir, batch_size=4, batches_per_epoch=1)
    trainer = quiet_trainer(max_steps=1, limit_val_batches=0, enable_checkpointing=False)
    trainer.fit(model, dm)
    trainer.save_checkpoint(tmp_path / "python.ckpt")
    saved = torch.load(tmp_path / "python.ckpt", weights_only=True)["hyper_parameters"]
    assert saved["lambda_rec"] == 3.0 and saved["augment"] is None  # plain values stay
    assert not {"g_ab", "g_ba", "d_a", "d_b", "generator_optimizer", "discriminator_optimizer"} & set(saved)
    message = r"g_ab, g_ba, d_a, d_b differ .*built in Python.*ACCR.load_from_checkpoint\(path, g_ab=..., g_ba=..."
    with pytest.raises(ValueError, match=message):
        ACCR.load_from_checkpoint(tmp_path / "python.ckpt")
    loaded = ACCR.load_from_checkpoint(tmp_path / "python.ckpt", **nets())
    assert loaded.lambda_rec == 3.0 and torch.equal(
        loaded.state_dict()["g_ab.model.1.weight"], model.state_dict()["g_ab.model.1.weight"]
    )


def test_python_built_classifier_names_the_net_to_pass(tiny_classifiers):
    with pytest.raises(ValueError, match=r"net differ.*DigitClassifier.load_from_checkpoint\(path, net=...\)"):
        DigitClassifier.load_from_checkpoint(tiny_classifiers["mnist"])
    loaded = DigitClassifier.load_from_checkpoint(tiny_classifiers["mnist"], net=DigitNet(width=8, feature_dim=16))
    assert loaded.net.config["width"] == 8


class FirstWeights(__import__("lightning").Callback):
    """The four nets' weights as training starts (after ``init_from`` and after a resume's restore)."""

    def on_train_start(self, trainer, pl_module) -> None:
        self.state = {k: v.clone() for k, v in pl_module.state_dict().items() if k.split(".")[0] in NETS}


NETS = ("g_ab", "g_ba", "d_a", "d_b")


@pytest.mark.slow  # five tiny fits: ~25 s on 2 cores
def test_init_from_starts_a_fit_and_a_resume_keeps_its_own_weights(tmp_path, cache_dir):
    from helpers import tiny

    from lightning_modules.translation_io import export_nets

    dm = lambda: UnpairedDigitsDataModule(cache_dir=cache_dir, batch_size=4, batches_per_epoch=2, val_size=24)  # noqa: E731

    def trainer(steps, *cb):
        return quiet_trainer(
            max_steps=steps,
            limit_val_batches=0,
            callbacks=list(cb),
            enable_checkpointing=False,
            default_root_dir=tmp_path,
        )

    source = tiny(ACCR)
    first = trainer(2)
    first.fit(source, dm())
    first.save_checkpoint(tmp_path / "source.ckpt")
    export_nets(str(tmp_path / "source.ckpt"), str(tmp_path / "start.pt"), trained_by="test")
    want = {k: v for k, v in source.state_dict().items() if k.split(".")[0] in NETS}

    probe = FirstWeights()
    tuned = tiny(ACCR, init_from=str(tmp_path / "start.pt"))
    run = trainer(2, probe)  # global steps count optimizer steps: 2 per batch (G, D)
    run.fit(tuned, dm())
    assert probe.state.keys() == want.keys() and all(torch.equal(probe.state[k], want[k]) for k in want)
    run.save_checkpoint(tmp_path / "tuned.ckpt")
    after_one = {k: v.clone() for k, v in tuned.state_dict().items() if k.split(".")[0] in NETS}
    assert not all(torch.equal(after_one[k], want[k]) for k in want)  # the fine-tune step moved them

    probe = FirstWeights()  # a resumed fine-tune continues from its checkpoint, not from the start file again
    trainer(4, probe).fit(tiny(ACCR, init_from=str(tmp_path / "start.pt")), dm(), ckpt_path=tmp_path / "tuned.ckpt")
    assert all(torch.equal(probe.state[k], after_one[k]) for k in after_one)

    with pytest.raises(FileNotFoundError, match="model.init_from='nowhere.pt': no such file"):
        trainer(1).fit(tiny(ACCR, init_from="nowhere.pt"), dm())
    wide = ACCR(
        g_ab=ResnetGenerator(width=16, n_blocks=1),
        g_ba=ResnetGenerator(width=8, n_blocks=1),
        d_a=PatchDiscriminator(width=8),
        d_b=PatchDiscriminator(width=8),
        init_from=str(tmp_path / "start.pt"),
    )
    with pytest.raises(ValueError, match=r"start.pt': g_ab differ in architecture"):
        trainer(1).fit(wide, dm())
    (tmp_path / "notes.txt").write_text("not weights")
    with pytest.raises(ValueError, match=r"notes.txt' is not a weights file"):
        trainer(1).fit(tiny(ACCR, init_from=str(tmp_path / "notes.txt")), dm())
