"""`make demo`: fine-tune ACCR M <-> MM from the shipped start weights on the embedded digits for a fixed budget, and print, for both directions, the informative metric (train on
translated, test on real target) and the target judge, translated vs untranslated on the same test images with a
per-image paired 95 % interval and a verdict; then write a grid of translated test images. The two target judges
are shipped too (``configs/weights/judge_<domain>.pt``, the study's evaluation classifiers, weights only).

    coadv demo                      # the demo (configs/translation/demo.yaml; any `coadv fit` flag may follow)
    coadv demo --no-start           # the same steps from random weights (what the start weights are worth)
    coadv demo --export-start CKPT  # write configs/weights/accr_m2mm.pt from a translation checkpoint
    coadv demo --export-judges      # write configs/weights/judge_{mnist,mnist_m}.pt (trains the classifiers if absent)
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

import torch
from torchvision.utils import make_grid, save_image

from callbacks.markdown import markdown_table
from coadv.cli import cli_main
from coadv.constants import CONFIGS, QUIET, demo_files
from coadv.progress import minutes, summary
from coadv.study.evaluation import ensure_classifier, splits
from coadv.tracking import wandb_run_dirs
from lightning_modules.translation_metrics import Recipe, judge_informative, predict, probe_correct, translate
from nets.classifier import load_digit_net

START = CONFIGS / "weights" / "accr_m2mm.pt"
START_COMMAND = "coadv study --preset cpu --methods accr --pairs m2mm --seeds 0"
JUDGES = {d: CONFIGS / "weights" / f"judge_{d}.pt" for d in ("mnist", "mnist_m")}  # the judges the demo config names
PROBE_STEPS = 300
DOMAIN_NAMES = {"mnist": "MNIST", "mnist_m": "MNIST-M", "usps": "USPS", "svhn": "SVHN", "syn_digits": "syn_digits"}


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

    record = export_nets(checkpoint, str(START), trained_by=START_COMMAND, exported_from=checkpoint)
    size = START.stat().st_size / 2**20
    print(
        f"[demo] wrote {START} ({size:.1f} MiB): nets of {checkpoint} (epoch {record['epoch']}, "
        f"step {record['global_step']})"
    )


def classifier_command(domain: str) -> str:
    """The command that trains a domain's judge (what an exported judge names as its provenance)."""
    return f"coadv fit -c configs/classifier/base.yaml -c configs/classifier/{domain}.yaml"


def export_judges() -> None:
    from nets.classifier import export_digit_net

    for domain, out in JUDGES.items():
        checkpoint = ensure_classifier(domain)
        export_digit_net(checkpoint, out, trained_by=classifier_command(domain))
        print(f"[demo] wrote {out} ({out.stat().st_size / 2**20:.1f} MiB): the DigitNet of {checkpoint}")


def direction_rows(model, dm, recipe: Recipe) -> list[tuple[str, str, torch.Tensor, torch.Tensor, str]]:
    """Per direction, the informative metrics as per-image correctness, translated vs untranslated on the same test
    images: the train-on-translated probe (trained on G(source train) vs on raw source train, tested on real target
    test) and the target judge (on G(source test) vs on source test)."""
    a, b = splits(dm)
    names = {"a": dm.domain_a, "b": dm.domain_b}
    rows = []
    for src, tgt, net, s, t in ((a, b, model.g_ab, "a", "b"), (b, a, model.g_ba, "b", "a")):
        label = f"{DOMAIN_NAMES[names[s]]} -> {DOMAIN_NAMES[names[t]]}"
        oracle = probe_correct(tgt.train_x, tgt.train_y, tgt.test_x, tgt.test_y, recipe).mean()
        probe = [
            probe_correct(x, src.train_y, tgt.test_x, tgt.test_y, recipe)
            for x in (translate(net, src.train_x), src.train_x)
        ]
        # the probe can show a gain only where source-only sits below the oracle by more than its noise
        room = judge_informative(float(probe[1].mean()), float(oracle), len(tgt.test_y), len(tgt.test_y))
        metric = f"train on translated, test on real {DOMAIN_NAMES[names[t]]} (oracle {oracle:.3f})"
        rows.append((label, metric, *probe, "informative" if room else "uninformative"))
        judge = load_digit_net(model.evaluator.paths[t])
        judged = [(predict(judge, x).argmax(1) == src.test_y).float() for x in (translate(net, src.test_x), src.test_x)]
        own = float((predict(judge, tgt.test_x).argmax(1) == tgt.test_y).float().mean())
        state = (
            "informative"
            if judge_informative(float(judged[1].mean()), own, len(src.test_y), len(tgt.test_y))
            else "uninformative"
        )
        rows.append((label, f"{DOMAIN_NAMES[names[t]]} judge (own domain {own:.3f})", *judged, state))
    return rows


def main(args: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if args is None else args)
    if args[:1] == ["--export-start"]:
        if len(args) != 2:
            raise SystemExit("usage: coadv demo --export-start CHECKPOINT")
        return export_start(args[1])
    if args[:1] == ["--export-judges"]:
        return export_judges()
    from_scratch = "--no-start" in args
    args = [a for a in args if a != "--no-start"]
    start = time.time()
    trained: list = []  # (what, LightningCLI) of every training this demo did
    for domain, judge in JUDGES.items():
        if not judge.is_file():
            raise SystemExit(f"the demo's {domain} judge {judge} is missing; make it with `coadv demo --export-judges`")
    if from_scratch:
        init = ["--model.init_args.init_from=null"]
        what = "from random weights"
    else:
        if not START.is_file():
            raise SystemExit(
                f"the demo's start weights {START} are missing; make them with `{START_COMMAND}` and "
                "`coadv demo --export-start <its last checkpoint>`, or run `coadv demo --no-start`"
            )
        init = [f"--model.init_args.init_from={START}"]
        shown = START.relative_to(CONFIGS.parent) if START.is_relative_to(CONFIGS.parent) else START
        what = f"fine-tuning {shown} (trained by `{START_COMMAND}`)"
    print(f"[demo] ACCR mnist <-> mnist_m, {what} (configs/translation/demo.yaml)", flush=True)
    configs = [arg for path in demo_files() for arg in ("-c", str(path))]
    cli = cli_main(["fit", *configs, *QUIET, *init, *args])
    trained.append(("ACCR mnist <-> mnist_m", cli))
    model = cli.model.cpu().eval()
    dm = cli.datamodule
    run_dir = Path(cli.trainer.default_root_dir)
    rows = direction_rows(model, dm, Recipe(steps=PROBE_STEPS))
    grid = test_grid(model, dm, run_dir / "translations_test.png")
    steps = cli.trainer.global_step // 2  # two optimizer steps per batch
    print(
        f"\nACCR after {steps} training steps (fixed budget, last step), {len(dm.test_a)} / {len(dm.test_b)} test "
        f"images; probes: LeNet, {PROBE_STEPS} steps of Adam, seed 0"
    )
    header = ["direction", "metric", "translated", "no translation", "difference [95 % CI]", "translation"]
    table = []
    verdicts: dict[str, list[str]] = {}
    for label, metric, translated, untranslated, state in rows:
        mean, half, verdict = paired_difference(translated, untranslated)
        why = "source-only within noise of the oracle" if metric.startswith("train") else "reads the source as well"
        shown = verdict if state == "informative" else f"{verdict} (uninformative: {why})"
        interval = f"{mean:+.3f} [{mean - half:+.3f}, {mean + half:+.3f}]"
        table.append(
            [label, metric, f"{float(translated.mean()):.3f}", f"{float(untranslated.mean()):.3f}", interval, shown]
        )
        if state == "informative":
            verdicts.setdefault(label, []).append(
                f"{metric.split(' (')[0]} {'holds' if verdict == 'helps' else 'does not hold'}"
            )
    print("\n" + markdown_table(header, table), end="")
    print(
        "\nTranslation helps (per-image paired interval, informative metrics only): "
        + "; ".join(f"{label}: {', '.join(v)}" for label, v in verdicts.items())
    )
    runs = [
        (f"W&B run, {what}", ", ".join(wandb_run_dirs(c.trainer)) or "none (no WandbLogger)") for what, c in trained
    ]
    offline = [d for _, c in trained for d in wandb_run_dirs(c.trainer) if "offline-run-" in d]
    print(
        summary(
            "coadv demo",
            [
                ("translated test images", f"{grid} (rows: MNIST, G(MNIST), MNIST-M, F(MNIST-M))"),
                ("run directory", run_dir.resolve()),
                *runs,
                *([("upload (offline)", f"wandb sync {' '.join(offline)}")] if offline else []),
                ("wall time", minutes(time.time() - start)),
                ("same run again", shlex.join(["coadv", "demo", *(["--no-start"] if from_scratch else []), *args])),
            ],
        )
    )
