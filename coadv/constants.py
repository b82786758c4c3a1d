"""Names several tools share: methods, directions, attacks, victims, quiet CLI flags, folders."""

from __future__ import annotations

from pathlib import Path

import configs as _configs

CONFIGS = Path(_configs.__file__).resolve().parent  # the shipped YAML experiments (package data when installed)

METHODS = {"cyclegan": "CycleGAN", "cr_cyclegan": "CR-CycleGAN", "accr": "ACCR"}
DIRECTIONS = {
    "m2mm": ("mnist", "mnist_m"),
    "mm2m": ("mnist_m", "mnist"),
    "m2s": ("mnist", "svhn"),
    "s2m": ("svhn", "mnist"),
    "m2u": ("mnist", "usps"),
    "u2m": ("usps", "mnist"),
}


def direction(domain_a: str, domain_b: str) -> str:
    """A translation direction's short name, ``mnist``, ``mnist_m`` -> ``m2mm`` (else ``<domain_a>2<domain_b>``): the
    configs' ``${direction:${data.init_args.domain_a},${data.init_args.domain_b}}`` (registered by ``cli_main``)."""
    names = {domains: name for name, domains in DIRECTIONS.items()}
    return names.get((domain_a, domain_b), f"{domain_a}2{domain_b}")


SPEAKER_MODELS = {"ECAPATDNN": "ecapa", "SEResNet34": "seresnet34", "IVector": "ivector"}  # victim class -> run name


def speaker_run(model, data) -> str:
    """A trained speaker victim's run name ``<model>_<corpus>`` (``ecapa_libri``), from the ``model`` and ``data``
    config nodes: the configs' ``${speaker_run:${model},${data}}`` (run folder, checkpoint name; see ``cli_main``).
    The corpus follows the data: LibriSpeech -> ``libri``, VoxCeleb with ``synthesize`` -> ``synth``, else ``vox1``."""
    name = str(((model.get("init_args") or {}).get("victim") or {}).get("class_path", "")).rsplit(".", 1)[-1]
    if name not in SPEAKER_MODELS:
        raise ValueError(
            f"model.init_args.victim={name or None!r}: the speaker configs' run name (${{speaker_run:...}}) knows "
            f"{', '.join(SPEAKER_MODELS)}; set trainer.default_root_dir and the checkpoint filename yourself"
        )
    victim = SPEAKER_MODELS[name]
    if str(data["class_path"]).endswith("LibriSpeechDataModule"):
        return f"{victim}_libri"
    return f"{victim}_synth" if data["init_args"].get("synthesize") else f"{victim}_vox1"


ARROWS = {"mnist": "M", "mnist_m": "MM", "svhn": "S", "usps": "U"}
ATTACKS = (
    "fgsm",
    "bim",
    "pgd_linf",
    "pgd_l2",
    "cw",
    "ddn",
    "fmn",
    "mfcc_ivec",
    "gauss_newton",
    "ssr",
    "ssr_lin",
    "qn_lbfgs",
    "qn_bfgs",
)
VICTIMS = ("ivector", "seresnet34", "ecapa", "ge2e")
# runs launched by a tool show the tool's own progress bar (one line per cell / attack / trial) instead
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def translation_files(method: str, pair: str) -> list[Path]:
    """A translation run's configs in merge order: ``translation/method/<method>.yaml`` (model, trainer), then
    ``translation/direction/<pair>.yaml`` (data); the judges and the run folder follow the direction."""
    root = CONFIGS / "translation"
    return [root / "method" / f"{method}.yaml", root / "direction" / f"{pair}.yaml"]


def translation_args(method: str, pair: str) -> list[str]:
    """``-c <file>`` for each of :func:`translation_files`."""
    return [arg for path in translation_files(method, pair) for arg in ("-c", str(path))]


def classifier_files(domain: str) -> list[Path]:
    """A domain's evaluation classifier configs in merge order: ``classifier/base.yaml``, then
    ``classifier/<domain>.yaml``; the checkpoint ``checkpoints/classifiers/<domain>.ckpt`` follows the domain."""
    root = CONFIGS / "classifier"
    return [root / "base.yaml", root / f"{domain}.yaml"]


def classifier_args(domain: str) -> list[str]:
    """``-c <file>`` for each of :func:`classifier_files`."""
    return [arg for path in classifier_files(domain) for arg in ("-c", str(path))]


def demo_files() -> list[Path]:
    """``coadv demo``'s configs in merge order: ACCR M -> MM (:func:`translation_files`), the small nets, then
    ``translation/demo.yaml`` (its budget, start weights and shipped judges)."""
    root = CONFIGS / "translation"
    return [*translation_files("accr", "m2mm"), root / "small_nets.yaml", root / "demo.yaml"]


# the trained speaker victims, <model>_<corpus> (configs/speaker/); the pretrained ones have one file each
SPEAKER_RUNS = tuple(f"{m}_{c}" for m in ("ecapa", "seresnet34", "ivector") for c in ("synth", "libri", "vox1"))


def speaker_files(run: str) -> list[Path]:
    """A speaker victim's configs in merge order, by run name (``ecapa_libri``): ``speaker/base.yaml``,
    ``speaker/model/<model>.yaml``, ``speaker/data/<corpus>.yaml``, then ``speaker/pair/<run>.yaml`` where it exists;
    the i-vector: ``speaker/ivector/base.yaml``, ``speaker/ivector/<corpus>.yaml``; a pretrained victim (``ge2e``):
    its one file ``speaker/<run>.yaml``."""
    root = CONFIGS / "speaker"
    if (root / f"{run}.yaml").is_file():
        return [root / f"{run}.yaml"]
    model, corpus = run.rsplit("_", 1)
    if model == "ivector":
        return [root / "ivector" / "base.yaml", root / "ivector" / f"{corpus}.yaml"]
    files = [root / "base.yaml", root / "model" / f"{model}.yaml", root / "data" / f"{corpus}.yaml"]
    pair = root / "pair" / f"{run}.yaml"
    return files + [pair] * pair.is_file()


def speaker_args(run: str) -> list[str]:
    """``-c <file>`` for each of :func:`speaker_files`."""
    return [arg for path in speaker_files(run) for arg in ("-c", str(path))]


def config_path(path: str | Path) -> Path:
    """``path`` as given when it exists; else the shipped config of that name (``configs/...`` from any folder)."""
    given = Path(path)
    if given.exists() or given.is_absolute():
        return given
    parts = given.parts[1:] if given.parts and given.parts[0] == "configs" else given.parts
    shipped = CONFIGS.joinpath(*parts)
    return shipped if shipped.exists() else given
