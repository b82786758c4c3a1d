"""`make demo`: train the evaluation classifiers if absent, fine-tune ACCR M <-> MM from the shipped start weights
on the embedded digits, print test numbers of the checkpoint chosen on validation next to the no-translation
baselines, and write a grid of translated test images.

    coadv demo                      # the demo (configs/demo.yaml; any `coadv fit` flag may follow)
    coadv demo --no-start           # the same 2 epochs from random weights (what the start weights are worth)
    coadv demo --export-start CKPT  # write configs/weights/accr_m2mm.pt from a translation checkpoint
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

import torch
from torchvision.utils import make_grid, save_image

from coadv.cli import cli_main
from coadv.constants import CONFIGS, QUIET
from coadv.progress import minutes, summary
from coadv.study import ensure_classifier, judged_correct, test_chosen_checkpoint
from coadv.tracking import wandb_run_dirs

START = CONFIGS / "weights" / "accr_m2mm.pt"
START_COMMAND = "coadv study --preset cpu --methods accr --seeds 0"


@torch.no_grad()
def test_grid(model, datamodule, path: Path, n: int = 10) -> Path:
    """Rows a, G(a), b, F(b) for the first ``n`` test images of each domain (the images the table is tested on)."""
    model.eval()
    a = torch.stack([datamodule.test_a[i][0] for i in range(n)]).to(model.device)
    b = torch.stack([datamodule.test_b[i][0] for i in range(n)]).to(model.device)
    rows = [a, model.g_ab(a), b, model.g_ba(b)]
    rows = [r.expand(-1, 3, -1, -1) if r.shape[1] == 1 else r for r in rows]  # grey domains shown as RGB
    save_image(make_grid(torch.cat(rows).cpu(), nrow=n, normalize=True, value_range=(-1, 1), pad_value=1), path)
    return path


def recount(model, dm, device) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per test image, whether the model's own judge is right on the translated and on the untranslated image
    (``a2b``: the B judge on G(a) and on a; ``b2a``: the A judge on F(b) and on b): the same images, paired."""
    judges, batch = model.evaluator.paths, dm.batch_size
    model.to(device)
    pairs = {"a2b": (dm.test_a, judges["b"], model.g_ab), "b2a": (dm.test_b, judges["a"], model.g_ba)}
    return {
        key: (judged_correct(ds, judge, net, batch, device), judged_correct(ds, judge, None, batch, device))
        for key, (ds, judge, net) in pairs.items()
    }


def paired_difference(translated: torch.Tensor, untranslated: torch.Tensor) -> tuple[float, float, str]:
    """Mean per-image difference in correctness (translated - untranslated, the same test images), its 95 % normal
    interval half-width, and the verdict: "helps" / "hurts" when the interval excludes 0, else "level"."""
    if len(translated) != len(untranslated) or not len(translated):
        raise ValueError(f"paired difference of {len(translated)} and {len(untranslated)} images")
    d = translated - untranslated
    half = 1.96 * float(d.std()) / len(d) ** 0.5 if len(d) > 1 else float("inf")
    mean = float(d.mean())
    return mean, half, "helps" if mean - half > 0 else "hurts" if mean + half < 0 else "level"


def export_start(checkpoint: str) -> None:
    from lightning_modules.translation_io import export_nets

    record = export_nets(checkpoint, str(START), trained_by=START_COMMAND, chosen_from=checkpoint)
    size = START.stat().st_size / 2**20
    print(f"[demo] wrote {START} ({size:.1f} MiB): nets of {checkpoint} (epoch {record['epoch']}, "
          f"step {record['global_step']})")  # fmt: skip


def main(args: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if args is None else args)
    if args[:1] == ["--export-start"]:
        if len(args) != 2:
            raise SystemExit("usage: coadv demo --export-start CHECKPOINT")
        return export_start(args[1])
    from_scratch = "--no-start" in args
    args = [a for a in args if a != "--no-start"]
    start = time.time()
    trained: list = []  # (what, LightningCLI) of every training this demo did
    for domain in ("mnist", "mnist_m"):  # the judges demo.yaml names
        ensure_classifier(domain, trained=trained)
    if from_scratch:
        init = ["--model.init_args.init_from=null"]
        what = "from random weights"
    else:
        if not START.is_file():
            raise SystemExit(f"the demo's start weights {START} are missing; make them with `{START_COMMAND}` and "
                             "`coadv demo --export-start <its chosen checkpoint>`, or run `coadv demo --no-start`")  # fmt: skip
        init = [f"--model.init_args.init_from={START}"]
        shown = START.relative_to(CONFIGS.parent) if START.is_relative_to(CONFIGS.parent) else START
        what = f"fine-tuning {shown} (trained by `{START_COMMAND}`)"
    print(f"[demo] ACCR mnist <-> mnist_m, {what} (configs/demo.yaml)", flush=True)
    cli = cli_main(["fit", "-c", str(CONFIGS / "demo.yaml"), *QUIET, *init, *args])
    trained.append(("ACCR mnist <-> mnist_m", cli))
    chosen = test_chosen_checkpoint(cli)  # test numbers of the checkpoint chosen on validation, never max-over-epochs
    best = cli.trainer.checkpoint_callback.best_model_path
    run_dir = Path(cli.trainer.default_root_dir)
    model = type(cli.model).load_from_checkpoint(best, map_location="cpu").eval()
    dm = cli.datamodule
    correct = recount(model, dm, cli.trainer.strategy.root_device)
    for key, (translated, _) in correct.items():  # must agree with the logged test metric (2 images: GPU float order)
        if abs(float(translated.mean()) - chosen[f"acc_{key}"]) > 2 / len(translated) + 1e-6:
            raise RuntimeError(f"recounted acc_{key} {translated.mean():.4f} != logged {chosen[f'acc_{key}']:.4f}")
    model.cpu()
    grid = test_grid(model, dm, run_dir / "translations_test.png")
    epochs = cli.trainer.current_epoch
    print(f"\ncheckpoint chosen on validation (held out of training): after epoch {chosen['selected_epoch'] + 1} of "
          f"{epochs}, {chosen['selected_on']} = {chosen['val_score']:.3f}; the numbers below are its test numbers")  # fmt: skip
    print(f"\n| ACCR, MNIST <-> MNIST-M (embedded digits, {len(dm.test_a)} / {len(dm.test_b)} test images) | "
          "translated | no translation | difference [95 % CI] | translation |")  # fmt: skip
    print("|---|---|---|---|---|")
    for key, name in (("a2b", "MNIST -> MNIST-M: MNIST-M classifier accuracy"),
                      ("b2a", "MNIST-M -> MNIST: MNIST classifier accuracy")):  # fmt: skip
        translated, untranslated = correct[key]
        mean, half, verdict = paired_difference(translated, untranslated)
        print(f"| {name} | {float(translated.mean()):.3f} | {float(untranslated.mean()):.3f} | "
              f"{mean:+.3f} [{mean - half:+.3f}, {mean + half:+.3f}] | {verdict} |")  # fmt: skip
    print(f"\nFID (classifier features): on MNIST-M {chosen['fid_b']:.1f}, on MNIST {chosen['fid_a']:.1f}; chance "
          "accuracy 0.100")  # fmt: skip
    runs = [
        (f"W&B run, {what}", ", ".join(wandb_run_dirs(c.trainer)) or "none (no WandbLogger)") for what, c in trained
    ]
    offline = [d for _, c in trained for d in wandb_run_dirs(c.trainer) if "offline-run-" in d]
    print(summary("coadv demo", [
        ("translated test images", f"{grid} (rows: MNIST, G(MNIST), MNIST-M, F(MNIST-M))"),
        ("run directory", run_dir.resolve()),
        ("checkpoint chosen on validation", best),
        ("validation grids", run_dir / "grids"),
        *runs,
        *([("upload (offline)", f"wandb sync {' '.join(offline)}")] if offline else []),
        ("wall time", minutes(time.time() - start)),
        ("same run again", shlex.join(["coadv", "demo", *(["--no-start"] if from_scratch else []), *args])),
    ]))  # fmt: skip
