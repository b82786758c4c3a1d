"""The attack LightningModule as users run it: every composed configs/attack run, written outputs, DDP sharding, errors.

Victims here are built from their configs/speaker files with random weights, validated on a tiny corpus (which
stores their EER threshold) and saved by the trainer (plumbing, not attack strength: the measured claims come from
coadv/compare/ on trained victims). The ``corpus`` and ``victim_checkpoints`` fixtures live in conftest.py.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import soundfile
import torch
from helpers import ATTACK_CONFIGS, QUIET, ROOT, victim_name

from attacks import PGD
from coadv.cli import cli_main
from coadv.compare import configs as attack_configs
from datamodules.voxceleb import read_wave
from lightning_modules.attack import COLUMNS, summarize


def checkpoint_for(config: str, checkpoints: dict[str, Path]) -> Path:
    name = victim_name(config)
    if name not in checkpoints:
        pytest.skip(f"victim {name} needs the optional extra: pip install 'coadv[resemblyzer]' (make test-all)")
    return checkpoints[name]


def attack_args(config: str, tmp_path: Path, corpus: Path, checkpoint: Path, trials: int = 2) -> list[str]:
    """The composed configs of run ``config`` (``<attack>_<victim>``) on the tiny corpus."""
    return [
        *attack_configs.args(*attack_configs.split(config)),
        f"--model.init_args.checkpoint={checkpoint}",
        f"--data.init_args.root={corpus}",
        f"--data.init_args.max_trials={trials}",
        f"--trainer.default_root_dir={tmp_path}",
        *QUIET,
    ]


def read_rows(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_every_attack_victim_pair_has_a_config():
    names = set(ATTACK_CONFIGS)
    for victim in ("ivector", "seresnet34", "ecapa", "ge2e"):
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
            "ddn",
            "fmn",
        ):
            assert f"{attack}_{victim}" in names
    assert "mfcc_ivec_ivector" in names  # MFCC-ivec applies to i-vector victims only


# every attack runs against the i-vector and ECAPA victims in the fast tier; the SE-ResNet-34 runs (the slowest
# victim, the same attack code) in make test-all
ATTACK_PARAMS = [
    pytest.param(p, marks=pytest.mark.slow if p.endswith(("seresnet34", "ge2e")) else (), id=p) for p in ATTACK_CONFIGS
]


@pytest.mark.parametrize("config", ATTACK_PARAMS)
def test_attack_config_runs_and_reports(config, tmp_path, corpus, victim_checkpoints):
    short = []  # attacks that keep minimising spend their whole budget: a small one keeps the run short
    if config.startswith(("ddn", "fmn")):
        short = ["--model.init_args.attack.init_args.steps=5"]
    elif config.startswith(("qn_", "ssr")):
        short = ["--model.init_args.attack.init_args.max_grad_evals=12"]
    cli = cli_main(["test", *attack_args(config, tmp_path, corpus, checkpoint_for(config, victim_checkpoints)), *short])
    report = tmp_path / "attack"
    rows = read_rows(report / "trials.csv")
    assert [int(r["index"]) for r in rows] == [0, 1] and list(rows[0]) == list(COLUMNS)
    has_features = config.endswith("ivector")  # the MFCC-domain rho: i-vector victims only
    assert all(math.isfinite(float(r["rho_feat"])) == has_features for r in rows)
    if config.startswith("mfcc_ivec"):  # a feature-domain attack: its rho is the feature rho
        assert all(float(r["rho_feat"]) == pytest.approx(float(r["rho"])) for r in rows)
    summary = json.loads((report / "summary.json").read_text())
    theta = summary["threshold"]
    stored = torch.load(checkpoint_for(config, victim_checkpoints), weights_only=True)["verification"]["threshold"]
    assert theta == stored and summary["trials"] == 2 and cli.trainer.callback_metrics["test/trials"] == 2
    assert (report / "rho.png").is_file() and len(list((report / "examples").glob("*.png"))) == 2
    for row in rows:  # one decision rule: accept <=> score >= theta; success = the decision flipped
        target = row["label"] == "1"
        assert (float(row["clean_correct"]) > 0) == ((float(row["score_before"]) >= theta) == target)
        assert (float(row["success"]) > 0) == ((float(row["score_after"]) >= theta) != target)
    attacked = [float(r["success"]) for r in rows if float(r["clean_correct"]) > 0]
    assert summary["attacked"] == len(attacked)
    if attacked:
        assert summary["success_rate"] == pytest.approx(sum(attacked) / len(attacked))
    else:
        assert math.isnan(summary["success_rate"])
    if summary["domain"] == "waveform":
        for row in rows:  # the written audio is the adversarial utterance: in range, and it scores as reported
            wave, rate = soundfile.read(
                report / "adversarial" / f"{int(row['index']):05d}_{row['label']}.wav", dtype="float32"
            )
            assert rate == 16000 and abs(wave).max() <= 1
            trial = cli.datamodule.trials[int(row["index"])]
            enrol = read_wave(corpus / "wav" / trial.enrol, preprocess=cli.datamodule.preprocess)[None]
            with torch.no_grad():
                score = float(cli.model.victim.score(enrol, torch.from_numpy(wave)[None]))
            # the saved file, scored alone, gives the reported decision (and the score, to float noise)
            assert (score >= theta) == (float(row["score_after"]) >= theta)
            assert score == pytest.approx(float(row["score_after"]), abs=1e-5)
    else:
        assert len(list((report / "adversarial").glob("*.pt"))) == 2


def test_budgets_hold_in_the_report(tmp_path, corpus, victim_checkpoints):
    config = "pgd_linf_ecapa"
    cli_main(["test", *attack_args(config, tmp_path, corpus, checkpoint_for(config, victim_checkpoints), trials=4)])
    eps = attack_configs.merged("pgd_linf", "ecapa")["model"]["init_args"]["attack"]["init_args"]["epsilon"]
    assert all(float(r["linf"]) <= eps + 1e-6 for r in read_rows(tmp_path / "attack" / "trials.csv"))


def test_predict_writes_adversarial_audio(tmp_path, corpus, victim_checkpoints):
    config = "gauss_newton_ecapa"
    cli = cli_main(["predict", *attack_args(config, tmp_path, corpus, checkpoint_for(config, victim_checkpoints))])
    predictions = cli.trainer.predict_loop.predictions
    assert sum(len(p["trials"]["index"]) for p in predictions) == 2
    assert len(list((tmp_path / "attack" / "adversarial").glob("*.wav"))) == 2


def rewrite(source: Path, target: Path, change) -> Path:
    """A copy of a checkpoint with ``change(checkpoint)`` applied."""
    checkpoint = torch.load(source, weights_only=True)
    change(checkpoint)
    torch.save(checkpoint, target)
    return target


def test_missing_threshold_is_named(tmp_path, corpus, victim_checkpoints):
    config = "fgsm_ecapa"
    checkpoint = rewrite(
        checkpoint_for(config, victim_checkpoints), tmp_path / "no_threshold.ckpt", lambda c: c.pop("verification")
    )
    with pytest.raises(ValueError, match=r"no_threshold.ckpt: no clean threshold"):
        cli_main(["test", *attack_args(config, tmp_path, corpus, checkpoint)])
    cli = cli_main(["test", *attack_args(config, tmp_path, corpus, checkpoint), "--model.init_args.threshold=0.5"])
    assert cli.model.threshold == 0.5  # an explicit threshold is accepted instead
    with pytest.raises(FileNotFoundError, match=r"absent.ckpt does not exist; train the victim first"):
        cli_main(["test", *attack_args(config, tmp_path, corpus, tmp_path / "absent.ckpt")])


class Executes:
    """Unpickling this object would create ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def test_corrupt_or_foreign_victim_checkpoint_is_one_clear_error(tmp_path, corpus, victim_checkpoints):
    config = "fgsm_ecapa"
    good = checkpoint_for(config, victim_checkpoints)
    expected = r"expected a speaker-verification checkpoint written by `coadv fit` of its configs/speaker files"
    (tmp_path / "garbage.ckpt").write_text("not a checkpoint")
    marker = tmp_path / "executed"
    torch.save({"state_dict": {}, "payload": Executes(marker)}, tmp_path / "code.ckpt")
    cli = cli_main(["test", *attack_args(config, tmp_path / "run", corpus, good)])
    cli.trainer.save_checkpoint(tmp_path / "attack.ckpt")  # a checkpoint of another module, with victim.* weights
    rewrite(good, tmp_path / "odd.ckpt", lambda c: c["hyper_parameters"]["victim"]["init_args"].update(channels=30))
    cases = {
        "odd.ckpt": r"its hyperparameters do not build .*SpeakerEmbedding \(channels=30: expected a positive multiple",
        "garbage.ckpt": r"unreadable as a torch checkpoint",
        "code.ckpt": r"it holds pickled Python objects \(io.open\), refused unread",
        "attack.ckpt": "it was written by lightning_modules.AdversarialAttack",
    }
    for name, reason in cases.items():
        with pytest.raises(ValueError, match=rf"{name}: not a coadv speaker checkpoint: {reason}.*; {expected}"):
            cli_main(["test", *attack_args(config, tmp_path, corpus, tmp_path / name)])
    assert not marker.exists()  # weights_only loading refused the payload without running it
    old = rewrite(good, tmp_path / "old.ckpt", lambda c: c.pop("hyper_parameters"))  # before checkpoints named nets
    with pytest.raises(ValueError, match=r"old.ckpt: .*does not name its architecture.*set model.init_args.victim"):
        cli_main(["test", *attack_args(config, tmp_path, corpus, old)])
    ecapa = {"class_path": "nets.speaker.ECAPATDNN", "init_args": {"channels": 128, "embedding_dim": 192}}
    cli = cli_main(
        ["test", *attack_args(config, tmp_path, corpus, old), f"--model.init_args.victim={json.dumps(ecapa)}"]
    )
    assert cli.model.summary["trials"] == 2  # the override names the architecture, the weights come from the file
    small = {"class_path": "nets.speaker.ECAPATDNN", "init_args": {"channels": 16, "embedding_dim": 8}}
    with pytest.raises(ValueError, match=r"old.ckpt: weights do not fit ECAPATDNN"):
        cli_main(["test", *attack_args(config, tmp_path, corpus, old), f"--model.init_args.victim={json.dumps(small)}"])


def test_attack_module_rebuilds_from_its_checkpoint(tmp_path, corpus, victim_checkpoints):
    """``load_from_checkpoint(path)`` alone: the attack, its arguments, the victim and the threshold, without the
    victim's file; the rebuilt module reproduces the table."""
    from lightning_modules import AdversarialAttack

    config = "pgd_linf_ecapa"
    victim = tmp_path / "victim.ckpt"
    victim.write_bytes(checkpoint_for(config, victim_checkpoints).read_bytes())
    args = attack_args(config, tmp_path / "first", corpus, victim)
    cli = cli_main(["test", *args, "--model.init_args.kappa=0.01", "--model.init_args.seed=5"])
    cli.trainer.save_checkpoint(tmp_path / "attack.ckpt")
    victim.unlink()
    model = AdversarialAttack.load_from_checkpoint(tmp_path / "attack.ckpt")
    assert isinstance(model.attack, PGD) and model.attack.init_args == cli.model.attack.init_args
    assert (model.kappa, model.seed, model.threshold) == (0.01, 5, cli.model.threshold)
    assert type(model.victim) is type(cli.model.victim)
    for key, value in cli.model.victim.state_dict().items():
        assert torch.equal(model.victim.state_dict()[key], value), key
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, inference_mode=False)
    trainer.test(model, datamodule=cli.datamodule)
    same = [name for name in COLUMNS if name != "wall_s"]
    rebuilt = {name: model.trials[name] for name in same}
    torch.testing.assert_close(rebuilt, {name: cli.model.trials[name] for name in same}, rtol=0, atol=0, equal_nan=True)


def test_mfcc_ivec_on_a_neural_victim_is_refused(tmp_path, corpus, victim_checkpoints):
    config = "fgsm_ecapa"
    args = attack_args(config, tmp_path, corpus, checkpoint_for(config, victim_checkpoints))
    with pytest.raises(TypeError, match="MFCC-ivec attacks i-vector victims.*ECAPATDNN"):
        cli_main(["test", *args, "--model.init_args.attack=attacks.MFCCIvec"])


def test_trial_with_missing_file_is_named(tmp_path, corpus, victim_checkpoints):
    broken = tmp_path / "trials.txt"
    first = (corpus / "veri_test.txt").read_text().splitlines()[0]
    broken.write_text(first + "\n1 id10099/vid00/00001.wav id10099/vid00/00002.wav\n")
    config = "fgsm_ecapa"
    args = attack_args(config, tmp_path, corpus, checkpoint_for(config, victim_checkpoints))
    with pytest.raises(FileNotFoundError, match=r"trials.txt, line 2: .*id10099/vid00/00001.wav.* not found"):
        cli_main(["test", *args, f"--data.init_args.trial_list={broken}"])


def test_inference_mode_is_refused_with_the_fix(tmp_path, corpus, victim_checkpoints):
    config = "fgsm_ecapa"
    args = attack_args(config, tmp_path, corpus, checkpoint_for(config, victim_checkpoints))
    with pytest.raises(RuntimeError, match="set trainer.inference_mode: false"):
        cli_main(["test", *args, "--trainer.inference_mode=true"])


def test_summary_over_correct_clean_trials():
    nan = float("nan")
    # index, label, clean_correct, success, rho, snr, linf, pesq, stoi, iters, evals, wall, before, after, rho_feat
    rows = torch.tensor(
        [
            [0, 1, 1, 1, 0.01, 40, 0.1, 4.0, 0.9, 3, 4, 0.1, 0.9, 0.4, 0.2],
            [1, 0, 1, 1, 0.03, 30, 0.1, nan, 0.7, 3, 4, 0.1, 0.2, 0.7, 0.1],  # PESQ undefined: left out of its mean
            [2, 1, 1, 0, 0.05, 26, 0.1, 2.0, 0.5, 9, 10, 0.3, 0.9, 0.8, 0.3],  # failed: not in the perturbation means
            [3, 0, 0, 1, 0.00, float("inf"), 0.0, 4.6, 1.0, 0, 1, 0.0, 0.6, 0.6, 0.0],  # wrongly accepted already
            [4, 0, 1, 0, 0.02, 34, 0.1, 3.0, 0.8, 9, 10, 0.3, 0.1, 0.3, 0.4],  # non-target still rejected
            [5, 1, 0, 1, 0.00, float("inf"), 0.0, 4.6, 1.0, 0, 1, 0.0, 0.5 - 1e-9, 0.5 - 1e-9, 0.0],  # wrongly rejected
        ],
        dtype=torch.float64,
    )
    s = summarize(dict(zip(COLUMNS, rows.T)), threshold=0.5)
    assert s["trials"] == 6 and s["attacked"] == 4 and s["success_rate"] == pytest.approx(2 / 4)
    assert s["rho_feat_median"] == 0.2  # lower median of 0.2, 0.1, inf, inf (two failures count as inf)
    rows[:, -1] = nan  # no feature front-end
    assert math.isnan(summarize(dict(zip(COLUMNS, rows.T)), threshold=0.5)["rho_feat_median"])
    assert s["rho_mean"] == pytest.approx(0.02) and s["rho_median_successes"] == pytest.approx(0.01)
    # every attacked trial, a failure as ρ = ∞: [0.01, 0.03, ∞, ∞] -> the lower median 0.03
    assert s["rho_median"] == pytest.approx(0.03)
    assert s["snr_db_mean"] == pytest.approx(35) and s["pesq_mean"] == pytest.approx(4.0)
    assert s["stoi_mean"] == pytest.approx(0.8) and s["iterations_mean"] == pytest.approx(6)
    # non-target 1, 3, 4: accepted when clean 3 only, after the attack 1 and 3; target 0, 2, 5: rejected 5, then 0, 5
    assert s["clean_far"] == pytest.approx(1 / 3) and s["clean_frr"] == pytest.approx(1 / 3)
    assert s["far"] == pytest.approx(2 / 3) and s["frr"] == pytest.approx(2 / 3)
    assert "eer" not in s  # after an attack that pushes both classes across, EER says nothing
    only_target = summarize(dict(zip(COLUMNS, rows[rows[:, 1] == 1].T)), threshold=0.5)
    assert math.isnan(only_target["far"]) and math.isnan(only_target["clean_far"])
    none_won = summarize(dict(zip(COLUMNS, rows[[2, 4]].T)), threshold=0.5)
    assert none_won["success_rate"] == 0 and none_won["rho_median"] == math.inf
    assert math.isnan(none_won["rho_median_successes"]) and math.isnan(none_won["pesq_mean"])


def run_ddp(tmp_path: Path, corpus: Path, checkpoint: Path, devices: int) -> list[dict]:
    config = "pgd_linf_ecapa"  # random start: per-trial seeds must survive sharding
    # one trial at a time: batched, a trial's equal-length group follows the shard (bit-exact only unbatched)
    args = [
        sys.executable,
        "-m",
        "coadv",
        "test",
        *attack_args(config, tmp_path, corpus, checkpoint, trials=5),
        "--trainer.accelerator=cpu",
        f"--trainer.devices={devices}",
        f"--trainer.strategy={'ddp' if devices > 1 else 'auto'}",
        "--model.init_args.batch_trials=false",
    ]
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    if devices > 1:
        assert "MEMBER: 2/2" in done.stdout + done.stderr  # really two processes
    return [{k: v for k, v in row.items() if k != "wall_s"} for row in read_rows(tmp_path / "attack" / "trials.csv")]


@pytest.mark.slow  # two processes: ~45 s on 2 cores
def test_two_processes_give_the_table_of_one(tmp_path, corpus, victim_checkpoints):
    checkpoint = checkpoint_for("pgd_linf_ecapa", victim_checkpoints)
    one = run_ddp(tmp_path / "one", corpus, checkpoint, 1)
    two = run_ddp(tmp_path / "two", corpus, checkpoint, 2)  # 5 trials: the sampler pads rank 1 with a repeat
    assert [int(r["index"]) for r in two] == [0, 1, 2, 3, 4]
    assert two == one
    assert len(list((tmp_path / "two" / "attack" / "adversarial").glob("*.wav"))) == 5


def test_wandb_receives_audio_images_and_tables(tmp_path, corpus, victim_checkpoints):
    config = "gauss_newton_ecapa"
    args = [
        a
        for a in attack_args(config, tmp_path, corpus, checkpoint_for(config, victim_checkpoints))
        if a != "--trainer.logger=false"
    ]  # the default WandbLogger, offline
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "coadv", "test", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    media = [p.relative_to(tmp_path).as_posix() for p in (tmp_path / "wandb").rglob("media/**/*") if p.is_file()]
    for kind in (
        "audio/attack/audio_",
        "images/attack/example_",
        "images/attack/rho",
        "table/attack/trials",
        "table/attack/summary",
    ):
        assert any(kind in m for m in media), (kind, media)


@pytest.mark.slow  # four attack runs: ~55 s on 2 cores
def test_comparison_command_prints_the_table_and_reuses_runs(tmp_path, corpus, victim_checkpoints, capsys):
    from coadv.compare import main as compare_attacks

    checkpoint = checkpoint_for("fgsm_ecapa", victim_checkpoints)
    argv = [
        "--victim",
        "ecapa",
        "--trials",
        "2",
        "--attacks",
        "fgsm",
        "gauss_newton",
        "--reference",
        "gauss_newton",
        "--out",
        str(tmp_path),
        "--",
        f"--model.init_args.checkpoint={checkpoint}",
        f"--data.init_args.root={corpus}",
        "--trainer.logger=false",
    ]
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
