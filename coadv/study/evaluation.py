"""What the study measures on a trained pair: the evaluation classifiers and the joint judge (trained once, cached),
the domains' tensors, every metric of both directions, and robustness to corrupted inputs."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from tqdm import tqdm

from callbacks.stability import load_joint_judge
from coadv.cli import cli_main
from coadv.constants import QUIET, classifier_args
from lightning_modules.translation_metrics import (
    Recipe,
    Split,
    direction_metrics,
    fit_joint_judge,
    reference_metrics,
    robustness_metrics,
)


def ensure_classifier(domain: str, extra: list[str] = (), trained: list | None = None) -> Path:
    """The evaluation classifier of ``domain`` (trained with its config when absent; its CLI appended to
    ``trained`` when given)."""
    path = Path("checkpoints") / "classifiers" / f"{domain}.ckpt"
    if not path.is_file():
        tqdm.write(f"[study] training the {domain} evaluation classifier -> {path}")
        cli = cli_main(["fit", *classifier_args(domain), *QUIET, *extra])
        score = cli.trainer.checkpoint_callback.best_model_score
        tqdm.write(f"[study] {domain} classifier: chosen on held-out val/acc = {float(score):.3f}")
        if trained is not None:
            trained.append((f"{domain} classifier", cli))
    return path


@torch.no_grad()
def judged_correct(dataset, classifier: Path | str, translate=None, batch: int = 500, device="cpu") -> torch.Tensor:
    """Per image of ``dataset`` (a ``DigitDataset``, scaled as it feeds a model): 1.0 where ``classifier`` gives the
    image's label, after ``translate`` when given."""
    from nets.classifier import load_digit_net

    judge = load_digit_net(classifier).to(device)
    x, y = as_tensors(dataset)
    out = []
    for chunk in x.split(batch):
        chunk = chunk.to(device)
        out.append(judge(translate(chunk) if translate is not None else chunk).argmax(1).cpu())
    return (torch.cat(out) == y).float()


def as_tensors(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """A ``DigitDataset``'s images as the nets read them (float in [-1, 1], its channels) and its labels."""
    x = dataset.images.float() / 127.5 - 1
    return (x.mean(1, keepdim=True) if dataset.channels == 1 else x), dataset.labels


def splits(dm, evaluate_on: str = "test") -> tuple[Split, Split]:
    """Domain A and B of a set-up ``UnpairedDigitsDataModule``: training tensors (validation held out) and the
    evaluation tensors: the test split, or with ``evaluate_on="val"`` the held-out validation images (searches)."""
    if evaluate_on not in ("test", "val"):
        raise ValueError(f"evaluate_on={evaluate_on!r} is not 'test' or 'val'")
    out = []
    for side in "ab":
        train = getattr(dm, f"train_{side}")
        held = getattr(dm, f"{evaluate_on}_{side}")
        out.append(Split(*as_tensors(train), *as_tensors(held)))
    return out[0], out[1]


def joint_judge_file(dm, a: Split, b: Split, steps: int, folder: str = "checkpoints/classifiers") -> Path:
    """The pair's 20-class joint judge, trained once (``Recipe(steps=steps)``) and cached as
    ``<folder>/joint_<a>_<b>-<digest>.pt``, the digest naming the data and recipe it was made from."""
    key = json.dumps(
        [
            dm.domain_a,
            dm.domain_b,
            dm.mnist_m_recipe,
            dm.image_size,
            dm.val_size,
            len(a.train_y),
            len(b.train_y),
            steps,
            data_digest(a.train_x),
            data_digest(b.train_x),
        ]
    )
    path = Path(folder) / f"joint_{dm.domain_a}_{dm.domain_b}-{hashlib.sha1(key.encode()).hexdigest()[:8]}.pt"
    if not path.is_file():
        tqdm.write(f"[study] training the joint judge {dm.domain_a} x {dm.domain_b} ({steps} steps) -> {path}")
        net = fit_joint_judge(a.train_x, a.train_y, b.train_x, b.train_y, Recipe(steps=steps))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")  # atomic, and one per process: workers never share a file
        torch.save({"config": net.config, "state_dict": net.state_dict(), "key": key}, tmp)
        tmp.replace(path)
    return path


def data_digest(x: torch.Tensor) -> str:
    """SHA-1 of a tensor's bytes: names its data exactly (a float sum would depend on the thread count, so the
    main process and its 1-thread workers would name one judge twice and train it twice)."""
    return hashlib.sha1(x.detach().cpu().contiguous().numpy()).hexdigest()


def joint_judge_of(dm, preset: dict) -> Path:
    a, b = splits(dm)
    return joint_judge_file(
        dm, a, b, preset.get("joint_steps", 1500), preset.get("judges_dir", "checkpoints/classifiers")
    )


def pair_metrics(dm, g_ab, g_ba, judges: dict[str, str], preset: dict, evaluate_on: str = "test") -> dict[str, float]:
    """Every metric of both directions of a trained pair (``g_ab`` / ``g_ba``; ``None``: the reference rows instead),
    keys ``<metric>_a2b`` / ``<metric>_b2a``, on the test split (or the validation split: ``evaluate_on="val"``)."""
    from nets.classifier import load_digit_net

    a, b = splits(dm, evaluate_on)
    joint = load_joint_judge(str(joint_judge_of(dm, preset)))
    recipe = Recipe(steps=preset.get("probe_steps", 500))
    out = {}
    for key, net, src, tgt, judge, index in (("a2b", g_ab, a, b, judges["b"], 1), ("b2a", g_ba, b, a, judges["a"], 0)):
        judge = load_digit_net(judge)
        if net is None and g_ab is None:
            metrics = reference_metrics(src, tgt, judge, joint, index, recipe)
        else:
            metrics = direction_metrics(net, src, tgt, judge, joint, index, recipe)
        out.update({f"{k}_{key}": v for k, v in metrics.items()})
    return out


def pair_robustness(dm, model, preset: dict) -> dict[str, float]:
    """``robustness_metrics`` of both directions (``rob_<kind>_<severity>_<a2b|b2a>``, ``rob_mean_...``): the
    joint judge on translations of corrupted test images, the same corrupted images for every cell."""
    a, b = splits(dm)
    joint = load_joint_judge(str(joint_judge_of(dm, preset)))
    out = {}
    for key, net, src, index in (("a2b", model.g_ab, a, 1), ("b2a", model.g_ba, b, 0)):
        out.update({f"{k}_{key}": v for k, v in robustness_metrics(net, src, joint, index).items()})
    return out
