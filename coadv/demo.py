"""`make demo`: train the evaluation classifiers if absent, train ACCR M -> MM on the embedded digits, print a table."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from coadv.cli import cli_main
from coadv.constants import CONFIGS, QUIET
from coadv.progress import minutes, summary
from coadv.study import ensure_classifier, test_chosen_checkpoint
from coadv.tracking import wandb_run_dirs
from nets.classifier import load_digit_net


@torch.no_grad()
def source_only_accuracy(dataset, classifier: Path) -> float:
    """Accuracy of the target domain's classifier on untranslated source test images: the no-translation baseline."""
    judge = load_digit_net(classifier)
    x, y = dataset.images.float() / 127.5 - 1, dataset.labels
    return float((judge(x).argmax(1) == y).float().mean())


def main(args: list[str] | None = None) -> None:
    args = list(args or [])
    start = time.time()
    trained: list = []  # (what, LightningCLI) of every training this demo did
    classifier_a = ensure_classifier("mnist", trained=trained)
    classifier_b = ensure_classifier("mnist_m", trained=trained)
    print("[demo] training ACCR mnist -> mnist_m (configs/demo.yaml)", flush=True)
    cli = cli_main(["fit", "-c", str(CONFIGS / "demo.yaml"), *QUIET, *args])
    trained.append(("ACCR mnist -> mnist_m", cli))
    chosen = test_chosen_checkpoint(cli)  # test numbers of the checkpoint chosen on validation, never max-over-epochs
    best = cli.trainer.checkpoint_callback.best_model_path
    baseline_ab = source_only_accuracy(cli.datamodule.test_a, classifier_b)
    baseline_ba = source_only_accuracy(cli.datamodule.test_b, classifier_a)
    run_dir = Path(cli.trainer.default_root_dir)
    grids = sorted((run_dir / "grids").glob("*.png"))
    epochs = cli.trainer.current_epoch
    print(f"\ncheckpoint chosen on validation (held out of training): after epoch {chosen['selected_epoch'] + 1} of "
          f"{epochs}, {chosen['selected_on']} = {chosen['val_score']:.3f}; the numbers below are its test numbers")  # fmt: skip
    print("\n| ACCR mnist -> mnist_m (embedded digits) | test, checkpoint chosen on validation |")
    print("|---|---|")
    for key, name in (
        ("acc_a2b", "accuracy A->B"),
        ("acc_b2a", "accuracy B->A"),
        ("fid_b", "FID on B"),
        ("fid_a", "FID on A"),
    ):
        print(f"| {name} | {chosen[key]:.3f} |")
    print(f"\nno translation (target classifier on untranslated test images): A->B {baseline_ab:.3f}, "
          f"B->A {baseline_ba:.3f}; chance 0.100")  # fmt: skip
    runs = [
        (f"W&B run, {what}", ", ".join(wandb_run_dirs(c.trainer)) or "none (no WandbLogger)") for what, c in trained
    ]
    offline = [d for _, c in trained for d in wandb_run_dirs(c.trainer) if "offline-run-" in d]
    print(summary("coadv demo", [
        ("run directory", run_dir.resolve()),
        ("checkpoint chosen on validation", best),
        ("last grid", grids[-1] if grids else "none"),
        *runs,
        *([("upload (offline)", f"wandb sync {' '.join(offline)}")] if offline else []),
        ("wall time", minutes(time.time() - start)),
    ]))  # fmt: skip
