"""The attack LightningModule as users run it: every configs/attack file, written outputs, DDP sharding, errors.

Victims here have random weights saved in the training-checkpoint format with a threshold set at the median
clean score (plumbing, not attack strength: the measured claims come from compare_attacks.py on trained victims).
"""

from __future__ import annotations

import csv
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile
import torch
import yaml

from coadv.cli import cli_main
from datamodules.synth_speech import write_corpus
from datamodules.voxceleb import VoxCelebDataModule, read_wave
from lightning_modules.attack import COLUMNS, summarize

ROOT = Path(__file__).resolve().parents[1]
ATTACK_CONFIGS = sorted((ROOT / "configs" / "attack").glob("*.yaml"))
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", "--trainer.logger=false"]


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("attack_vox")
    write_corpus(root, n_speakers=8, videos=1, utts_per_video=2, seconds=(0.5, 0.8), n_trials=8, seed=3)
    return root


def build(spec: dict) -> torch.nn.Module:
    module, name = spec["class_path"].rsplit(".", 1)
    return getattr(importlib.import_module(module), name)(**spec.get("init_args", {}))


def save_victim(victim: torch.nn.Module, corpus: Path, path: Path, threshold: bool = True) -> Path:
    """A victim checkpoint as SpeakerEmbedding / IVectorSystem write it; threshold = median clean trial score."""
    torch.manual_seed(0)
    dm = VoxCelebDataModule(root=str(corpus))
    dm.setup("test")
    with torch.no_grad():
        scores = [victim.eval().score(read_wave(corpus / "wav" / t.enrol)[None], read_wave(corpus / "wav" / t.test)[None])
                  for t in dm.trials]  # fmt: skip
    checkpoint = {"state_dict": {f"victim.{k}": v for k, v in victim.state_dict().items()}}
    if threshold:
        checkpoint["verification"] = {"threshold": float(torch.cat(scores).median()), "p_target": 0.01}
    torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="session")
def victim_checkpoints(tmp_path_factory, corpus) -> dict[str, Path]:
    """One random-weight checkpoint per victim architecture used by configs/attack."""
    out, paths = tmp_path_factory.mktemp("victims"), {}
    for config in ATTACK_CONFIGS:
        spec = victim_spec(config)
        key = yaml.safe_dump(spec)
        if key not in paths:
            torch.manual_seed(0)
            paths[key] = save_victim(build(spec), corpus, out / f"victim{len(paths)}.ckpt")
    return paths


def victim_spec(config: Path) -> dict:
    return yaml.safe_load(config.read_text())["model"]["init_args"]["victim"]


def checkpoint_for(config: Path, checkpoints: dict[str, Path]) -> Path:
    return checkpoints[yaml.safe_dump(victim_spec(config))]


def attack_args(config: Path, tmp_path: Path, corpus: Path, checkpoint: Path, trials: int = 2) -> list[str]:
    return ["-c", str(config), f"--model.init_args.checkpoint={checkpoint}", f"--data.init_args.root={corpus}",
            f"--data.init_args.max_trials={trials}", f"--trainer.default_root_dir={tmp_path}", *QUIET]  # fmt: skip


def read_rows(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_every_attack_victim_pair_has_a_config():
    names = {p.stem for p in ATTACK_CONFIGS}
    for victim in ("ivector", "seresnet34", "ecapa"):
        for attack in (
            "fgsm",
            "bim",
            "pgd_linf",
            "pgd_l2",
            "cw",
            "gauss_newton",
            "qn_lbfgs",
            "qn_bfgs",
            "ssr",
            "ssr_lin",
        ):
            assert f"{attack}_{victim}" in names
    assert "mfcc_ivec_ivector" in names  # MFCC-ivec applies to i-vector victims only


@pytest.mark.parametrize("config", ATTACK_CONFIGS, ids=lambda p: p.stem)
def test_attack_config_runs_and_reports(config, tmp_path, corpus, victim_checkpoints):
    cli = cli_main(["test", *attack_args(config, tmp_path, corpus, checkpoint_for(config, victim_checkpoints))])
    report = tmp_path / "attack"
    rows = read_rows(report / "trials.csv")
    assert [int(r["index"]) for r in rows] == [0, 1] and list(rows[0]) == list(COLUMNS)
    summary = json.loads((report / "summary.json").read_text())
    assert summary["trials"] == 2 and 0 <= summary["success_rate"] <= 1
    assert cli.trainer.callback_metrics["test/trials"] == 2
    assert (report / "rho.png").is_file() and len(list((report / "examples").glob("*.png"))) == 2
    theta = summary["threshold"]
    for row in rows:  # success is the flip of the decision at the clean threshold
        sigma = 1 if row["label"] == "1" else -1
        assert (float(row["success"]) > 0) == (sigma * (float(row["score_after"]) - theta) <= 0)
    if summary["domain"] == "waveform":
        for row in rows:  # the written audio is the adversarial utterance: in range, and it scores as reported
            wave, rate = soundfile.read(report / "adversarial" / f"{int(row['index']):05d}_{row['label']}.wav",
                                        dtype="float32")  # fmt: skip
            assert rate == 16000 and abs(wave).max() <= 1
            trial = cli.datamodule.trials[int(row["index"])]
            enrol = read_wave(corpus / "wav" / trial.enrol)[None]
            with torch.no_grad():
                score = cli.model.victim.score(enrol, torch.from_numpy(wave)[None])
            assert float(score) == pytest.approx(float(row["score_after"]), abs=1e-4)
    else:
        assert len(list((report / "adversarial").glob("*.pt"))) == 2


def test_budgets_hold_in_the_report(tmp_path, corpus, victim_checkpoints):
    config = ROOT / "configs/attack/pgd_linf_ecapa.yaml"
    cli_main(["test", *attack_args(config, tmp_path, corpus, checkpoint_for(config, victim_checkpoints), trials=4)])
    eps = yaml.safe_load(config.read_text())["model"]["init_args"]["attack"]["init_args"]["epsilon"]
    assert all(float(r["linf"]) <= eps + 1e-6 for r in read_rows(tmp_path / "attack" / "trials.csv"))


def test_predict_writes_adversarial_audio(tmp_path, corpus, victim_checkpoints):
    config = ROOT / "configs/attack/gauss_newton_ecapa.yaml"
    cli = cli_main(["predict", *attack_args(config, tmp_path, corpus, checkpoint_for(config, victim_checkpoints))])
    predictions = cli.trainer.predict_loop.predictions
    assert sum(len(p["rows"]) for p in predictions) == 2
    assert len(list((tmp_path / "attack" / "adversarial").glob("*.wav"))) == 2


def test_missing_threshold_is_named(tmp_path, corpus):
    from nets.speaker import ECAPATDNN

    config = ROOT / "configs/attack/fgsm_ecapa.yaml"
    checkpoint = save_victim(build(victim_spec(config)), corpus, tmp_path / "no_threshold.ckpt", threshold=False)
    with pytest.raises(ValueError, match=r"no_threshold.ckpt: no clean threshold"):
        cli_main(["test", *attack_args(config, tmp_path, corpus, checkpoint)])
    # an explicit threshold is accepted instead
    cli_main(["test", *attack_args(config, tmp_path, corpus, checkpoint), "--model.init_args.threshold=0.5"])
    wrong = save_victim(ECAPATDNN(channels=16, embedding_dim=8), corpus, tmp_path / "small.ckpt")
    with pytest.raises(ValueError, match=r"small.ckpt: weights do not fit ECAPATDNN"):
        cli_main(["test", *attack_args(config, tmp_path, corpus, wrong)])
    (tmp_path / "garbage.ckpt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"garbage.ckpt: not a readable torch checkpoint"):
        cli_main(["test", *attack_args(config, tmp_path, corpus, tmp_path / "garbage.ckpt")])
    with pytest.raises(FileNotFoundError, match=r"absent.ckpt does not exist; train the victim first"):
        cli_main(["test", *attack_args(config, tmp_path, corpus, tmp_path / "absent.ckpt")])


def test_mfcc_ivec_on_a_neural_victim_is_refused(tmp_path, corpus, victim_checkpoints):
    config = ROOT / "configs/attack/fgsm_ecapa.yaml"
    args = attack_args(config, tmp_path, corpus, checkpoint_for(config, victim_checkpoints))
    with pytest.raises(TypeError, match="MFCC-ivec attacks i-vector victims.*ECAPATDNN"):
        cli_main(["test", *args, "--model.init_args.attack=attacks.MFCCIvec"])


def test_trial_with_missing_file_is_named(tmp_path, corpus, victim_checkpoints):
    broken = tmp_path / "trials.txt"
    first = (corpus / "veri_test.txt").read_text().splitlines()[0]
    broken.write_text(first + "\n1 id10099/vid00/00001.wav id10099/vid00/00002.wav\n")
    config = ROOT / "configs/attack/fgsm_ecapa.yaml"
    args = attack_args(config, tmp_path, corpus, checkpoint_for(config, victim_checkpoints))
    with pytest.raises(FileNotFoundError, match=r"trials.txt, line 2: .*id10099/vid00/00001.wav.* not found"):
        cli_main(["test", *args, f"--data.init_args.trial_list={broken}"])


def test_inference_mode_is_refused_with_the_fix(tmp_path, corpus, victim_checkpoints):
    config = ROOT / "configs/attack/fgsm_ecapa.yaml"
    args = attack_args(config, tmp_path, corpus, checkpoint_for(config, victim_checkpoints))
    with pytest.raises(RuntimeError, match="set trainer.inference_mode: false"):
        cli_main(["test", *args, "--trainer.inference_mode=true"])


def test_summary_over_correct_clean_trials():
    # index, label, clean_correct, success, rho, snr, linf, iters, evals, wall, before, after
    rows = torch.tensor([
        [0, 1, 1, 1, 0.01, 40, 0.1, 3, 4, 0.1, 0.9, 0.4],
        [1, 0, 1, 1, 0.03, 30, 0.1, 3, 4, 0.1, 0.2, 0.7],
        [2, 1, 1, 0, 0.05, 26, 0.1, 9, 10, 0.3, 0.9, 0.8],
        [3, 0, 0, 1, 0.00, float("inf"), 0.0, 0, 1, 0.0, 0.6, 0.6],  # wrongly accepted already: not attacked
    ], dtype=torch.float64)  # fmt: skip
    s = summarize(rows, threshold=0.5)
    assert s["attacked"] == 3 and s["success_rate"] == pytest.approx(2 / 3)
    assert s["rho_mean"] == pytest.approx(0.02) and s["rho_median"] == pytest.approx(0.01)
    assert s["clean_far"] == pytest.approx(0.5) and s["clean_frr"] == 0
    assert s["far"] == 1 and s["frr"] == pytest.approx(0.5)


def run_ddp(tmp_path: Path, corpus: Path, checkpoint: Path, devices: int) -> list[dict]:
    config = ROOT / "configs/attack/pgd_linf_ecapa.yaml"  # random start: per-trial seeds must survive sharding
    args = [sys.executable, "-m", "coadv", "test", *attack_args(config, tmp_path, corpus, checkpoint, trials=5),
            "--trainer.accelerator=cpu", f"--trainer.devices={devices}",
            f"--trainer.strategy={'ddp' if devices > 1 else 'auto'}"]  # fmt: skip
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    if devices > 1:
        assert "MEMBER: 2/2" in done.stdout + done.stderr  # really two processes
    return [{k: v for k, v in row.items() if k != "wall_s"} for row in read_rows(tmp_path / "attack" / "trials.csv")]


def test_two_processes_give_the_table_of_one(tmp_path, corpus, victim_checkpoints):
    checkpoint = checkpoint_for(ROOT / "configs/attack/pgd_linf_ecapa.yaml", victim_checkpoints)
    one = run_ddp(tmp_path / "one", corpus, checkpoint, 1)
    two = run_ddp(tmp_path / "two", corpus, checkpoint, 2)  # 5 trials: the sampler pads rank 1 with a repeat
    assert [int(r["index"]) for r in two] == [0, 1, 2, 3, 4]
    assert two == one
    assert len(list((tmp_path / "two" / "attack" / "adversarial").glob("*.wav"))) == 5


def test_wandb_receives_audio_images_and_tables(tmp_path, corpus, victim_checkpoints):
    config = ROOT / "configs/attack/gauss_newton_ecapa.yaml"
    args = [a for a in attack_args(config, tmp_path, corpus, checkpoint_for(config, victim_checkpoints))
            if a != "--trainer.logger=false"]  # the default WandbLogger, offline  # fmt: skip
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "coadv", "test", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    media = [p.relative_to(tmp_path).as_posix() for p in (tmp_path / "wandb").rglob("media/**/*") if p.is_file()]
    for kind in ("audio/attack/audio_", "images/attack/example_", "images/attack/rho", "table/attack/trials",
                 "table/attack/summary"):  # fmt: skip
        assert any(kind in m for m in media), (kind, media)


def test_comparison_command_prints_the_table_and_reuses_runs(tmp_path, corpus, victim_checkpoints, capsys):
    from coadv import compare_attacks

    checkpoint = checkpoint_for(ROOT / "configs/attack/fgsm_ecapa.yaml", victim_checkpoints)
    argv = ["--victim", "ecapa", "--trials", "2", "--attacks", "fgsm", "gauss_newton", "--reference", "gauss_newton",
            "--out", str(tmp_path), "--", f"--model.init_args.checkpoint={checkpoint}",
            f"--data.init_args.root={corpus}", "--trainer.logger=false"]  # fmt: skip
    text = compare_attacks.main(argv)
    assert "Attacks against ecapa (2 trials" in text and "| fgsm |" in text and "| gauss_newton |" in text
    assert "Paired with gauss_newton" in text
    assert (tmp_path / "comparison.csv").read_text().count("\n") == 3 and (tmp_path / "rho.png").is_file()
    capsys.readouterr()
    assert compare_attacks.main(argv) == text  # finished runs are reused, and the table rebuilt from their files
    assert capsys.readouterr().out.count("reusing") == 2
    compare_attacks.main([*argv[:3], "1", *argv[4:]])  # other flags: the stored runs do not answer them
    assert capsys.readouterr().out.count("reusing") == 0
    assert json.loads((tmp_path / "fgsm" / "attack" / "summary.json").read_text())["trials"] == 1
