"""Every config under configs/ instantiates and survives fast_dev_run offline; CLI errors are clear."""

from pathlib import Path

import pytest
import torch
import yaml
from helpers import usps_root

from coadv.cli import cli_main
from coadv.constants import (
    DIRECTIONS,
    METHODS,
    SPEAKER_RUNS,
    classifier_files,
    demo_files,
    speaker_files,
    translation_args,
    translation_files,
)
from coadv.errors import root_cause
from lightning_modules import CycleGAN

ROOT = Path(__file__).resolve().parents[1]
FRAGMENTS = (
    "sweeps",
    "study",
    "ablations",
    "search",
    "attack",
    "loggers",
    "trainer",
    "translation",
    "classifier",
    "speaker",
)  # not fit configs on their own; tested on their own (attack: test_attack_module), composed runs below
# every fit run: one file, or the files merged in order (a translation method x a direction, the demo, a classifier's
# domain, a trained speaker victim); the pretrained speaker victims are evaluated, not trained: `validate` on them
# runs in test_pretrained / test_wespeaker / test_ge2e
RUNS = [
    *(
        (p,)
        for p in sorted((ROOT / "configs").rglob("*.yaml"))
        if p.name != "defaults.yaml" and not set(FRAGMENTS) & set(p.relative_to(ROOT).parts)
    ),
    *(tuple(translation_files(method, pair)) for method in METHODS for pair in DIRECTIONS),
    tuple(demo_files()),
    *(tuple(classifier_files(domain)) for domain in ("mnist", "mnist_m", "svhn", "syn_digits", "usps")),
    *(tuple(speaker_files(run)) for run in SPEAKER_RUNS),
]
ABLATIONS = sorted((ROOT / "configs" / "ablations").rglob("*.yaml"))


def covering(runs: list[tuple[Path, ...]]) -> list:
    """Every run, those that add no config file unseen by an earlier run marked slow: the fast tier still runs
    every file at least once, the slow tier every composition."""
    seen: set[Path] = set()
    out = []
    for run in runs:
        name = " + ".join(str(p.relative_to(ROOT / "configs")) for p in run)
        out.append(pytest.param(run, id=name, marks=() if set(run) - seen else pytest.mark.slow))
        seen |= set(run)
    return out


def usps_args(data: dict, classifiers: dict[str, str]) -> list[str]:
    """USPS read from the team's folder (never shipped); skipped where it is absent."""
    if "usps" not in (data.get("domain"), data.get("domain_a"), data.get("domain_b")):
        return []
    if "usps" not in classifiers:
        pytest.skip("USPS data absent: no ../shared/data/usps beside the repository and no $COADV_USPS_ROOT")
    return [f"--data.init_args.usps_root={usps_root()}"]


def merged(paths: tuple[Path, ...]) -> dict:
    """The files' YAML merged in order, mappings key by key (plain YAML: no defaults, no interpolation)."""

    def merge(into: dict, other: dict) -> dict:
        out = dict(into)
        for key, value in other.items():
            both = isinstance(value, dict) and isinstance(out.get(key), dict)
            out[key] = merge(out[key], value) if both else value
        return out

    cfg: dict = {}
    for path in paths:
        cfg = merge(cfg, yaml.safe_load(path.read_text()) or {})
    return cfg


def overrides(run: tuple[Path, ...], tmp_path: Path, classifiers: dict[str, str], cache_dir: str) -> list[str]:
    """Offline substitutions, each explicit: SVHN -> syn_digits, tiny classifiers, temporary run folder."""
    cfg = merged(run)
    data = cfg["data"]["init_args"]
    if cfg["data"]["class_path"].endswith("LibriSpeechDataModule"):  # the embedded real speech, as shipped
        args = [f"--trainer.default_root_dir={tmp_path}", "--data.init_args.batch_size=4"]
    elif cfg["data"]["class_path"].endswith("VoxCelebDataModule"):  # a small synthetic corpus stands in, explicitly
        args = [
            f"--trainer.default_root_dir={tmp_path}",
            f"--data.init_args.root={tmp_path}/vox",
            "--data.init_args.synthesize=true",
            "--data.init_args.synth_speakers=8",
            "--data.init_args.batch_size=4",
        ]
    if cfg["data"]["class_path"].endswith(("LibriSpeechDataModule", "VoxCelebDataModule")):
        if cfg["model"]["class_path"].endswith("IVectorSystem"):
            args += [
                "--model.init_args.ubm_iterations=1",
                "--model.init_args.tv_iterations=1",
                "--model.init_args.victim.init_args.n_components=4",
                "--model.init_args.victim.init_args.rank=4",
                "--model.init_args.victim.init_args.lda_dim=3",
            ]
        return args
    args = [
        f"--trainer.default_root_dir={tmp_path}",
        f"--data.init_args.cache_dir={cache_dir}",
        "--data.init_args.batch_size=4",
        "--data.init_args.test_limit=8",
    ]
    if data.get("data_root"):
        args.append("--data.init_args.data_root=null")  # real MNIST/SVHN folders are absent: embedded MNIST
    for key in ("domain", "domain_a", "domain_b"):
        if data.get(key) == "svhn":
            args.append(f"--data.init_args.{key}=syn_digits")  # SVHN has no offline copy here
    args += usps_args(data, classifiers)
    if "domain_a" in data:
        for side, key in (("a", "domain_a"), ("b", "domain_b")):
            domain = "syn_digits" if data[key] == "svhn" else data[key]
            args.append(f"--model.init_args.classifier_{side}={classifiers[domain]}")
    return args


@pytest.mark.parametrize("run", covering(RUNS))
def test_config_fast_dev_run(run, tmp_path, tiny_classifiers, cache_dir):
    cli = cli_main(
        [
            "fit",
            *(arg for path in run for arg in ("-c", str(path))),
            "--trainer.fast_dev_run=true",
            *overrides(run, tmp_path, tiny_classifiers, cache_dir),
        ]
    )
    assert cli.trainer.state.finished
    if cli.model.automatic_optimization or isinstance(cli.model, CycleGAN):
        assert cli.trainer.global_step >= 1
    else:  # the i-vector system trains by EM at fit start and has no optimizer steps
        assert torch.isfinite(cli.trainer.callback_metrics["val/eer"])
        assert cli.trainer.checkpoint_callback.best_model_path == ""  # fast_dev_run must not overwrite a victim


# the fast tier runs the first fragment of each ablation folder; the rest run in make test-all
FIRST_OF_FOLDER = {min(p for p in ABLATIONS if p.parent == folder) for folder in {p.parent for p in ABLATIONS}}
ABLATION_PARAMS = [
    pytest.param(
        p, marks=() if p in FIRST_OF_FOLDER else pytest.mark.slow, id=str(p.relative_to(ROOT / "configs" / "ablations"))
    )
    for p in ABLATIONS
]


@pytest.mark.parametrize("fragment", ABLATION_PARAMS)
def test_ablation_fragment_applies_and_runs(fragment, tmp_path, tiny_classifiers, cache_dir):
    base = tuple(translation_files("accr", "m2mm"))
    cli = cli_main(
        [
            "fit",
            *translation_args("accr", "m2mm"),
            "-c",
            str(fragment),
            "--trainer.fast_dev_run=true",
            *overrides(base, tmp_path, tiny_classifiers, cache_dir),
        ]
    )
    assert cli.trainer.state.finished
    wanted = yaml.safe_load(fragment.read_text())["model"]["init_args"]
    for key, value in wanted.items():
        got = getattr(cli.model, key)
        if isinstance(value, dict):  # an augmentation: the configured class was built
            assert type(got).__name__ == value["class_path"].split(".")[-1]
        else:
            assert got == value


def test_help_documents_arguments(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", "--model.help", "lightning_modules.ACCR"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for arg in ("lambda_fake", "lambda_rec", "fake_source", "lambda_real", "lambda_cyc", "pool_size", "classifier_b"):
        assert f"--model.{arg}" in text
    assert "weight of the reconstructed-image consistency" in text


def test_print_config_resolves_interpolation(capsys):
    with pytest.raises(SystemExit):
        cli_main(["fit", *translation_args("accr", "m2u"), "--print_config"])
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["trainer"]["default_root_dir"] == "runs/accr_m2u"  # the method's name, ${direction:...} of the domains
    assert cfg["trainer"]["logger"]["init_args"]["save_dir"] == "runs/accr_m2u"
    assert cfg["trainer"]["callbacks"][1]["init_args"]["dirpath"] == "runs/accr_m2u/checkpoints"
    assert cfg["model"]["class_path"] == "lightning_modules.ACCR"
    assert cfg["model"]["init_args"]["classifier_b"] == "checkpoints/classifiers/usps.ckpt"  # the direction's judges


def test_unknown_config_key_is_named(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  class_path: lightning_modules.ACCR\n  init_args:\n    lambda_fkae: 1.0\n")
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", *translation_args("accr", "m2mm"), "-c", str(bad)])
    assert exit_info.value.code != 0
    assert "lambda_fkae" in capsys.readouterr().err


def test_unknown_domain_from_cli_is_named():
    with pytest.raises(ValueError) as info:
        cli_main(["fit", *translation_args("accr", "m2mm"), "--data.init_args.domain_b=kmnist"])
    # Python callers get jsonargparse's exception; its root cause is the DataModule's own message
    assert str(root_cause(info.value)).startswith("unknown digit domain 'kmnist'; valid domains: mnist")


def quick_fit_args(tmp_path, cache_dir):
    return [
        "fit",
        *(arg for path in demo_files() for arg in ("-c", str(path))),
        f"--trainer.default_root_dir={tmp_path}",
        "--trainer.max_steps=2",
        "--trainer.limit_val_batches=0",
        "--trainer.enable_progress_bar=false",
        f"--data.init_args.cache_dir={cache_dir}",
        "--data.init_args.batch_size=4",
        "--model.init_args.classifier_a=null",
        "--model.init_args.classifier_b=null",
    ]


def test_wrong_channel_count_from_config_is_named(tmp_path, cache_dir):
    with pytest.raises(ValueError, match=r"domain A images have shape \(4, 1, 32, 32\).*expects 3 channels"):
        cli_main([*quick_fit_args(tmp_path, cache_dir), "--data.init_args.channels=1"])


def test_second_run_in_same_folder_does_not_abort(tmp_path, cache_dir):
    for _ in range(2):
        cli = cli_main([*quick_fit_args(tmp_path, cache_dir), "--trainer.logger=false"])
        assert cli.trainer.state.finished
    assert (tmp_path / "config.yaml").is_file()
