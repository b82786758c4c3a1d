"""W&B sweep files: valid against W&B's schema, usable offline end to end."""

import csv
import json
import re
import sys
from pathlib import Path

import pytest
import yaml

from coadv import sweep

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = sorted((ROOT / "configs" / "sweeps").glob("*.yaml"))


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_sweep_file_is_valid_wandb_config(path):
    config = yaml.safe_load(path.read_text())
    sweep.validate(config, str(path))
    assert config["command"][-1] == "${args}" and all("." in name for name in config["parameters"])  # flat dotted


def test_invalid_sweep_is_rejected_with_reasons():
    bad = {"method": "bayesian", "parameters": {"model.init_args.lambda_real": {"min": 1.0}}}
    with pytest.raises(ValueError, match="not a valid W&B sweep configuration") as info:
        sweep.validate(bad, "bad.yaml")
    assert "method" in str(info.value)


def test_command_macros_expand_like_the_agent():
    cmd = sweep.expand(
        ["${env}", "python", "${program}", "fit", "${args}"], "main.py", {"model.init_args.lambda_rec": 2.5}
    )
    assert cmd == [sys.executable, "main.py", "fit", "--model.init_args.lambda_rec=2.5"]


def test_one_sweep_trial_runs_offline(tmp_path, tiny_classifiers, capsys):
    flags = [
        "--trainer.max_epochs=1",
        "--data.init_args.batch_size=4",
        "--data.init_args.batches_per_epoch=2",
        "--data.init_args.test_limit=16",
        f"--model.init_args.classifier_a={tiny_classifiers['mnist']}",
        f"--model.init_args.classifier_b={tiny_classifiers['mnist_m']}",
    ]
    flags += [f"--model.init_args.{n}.init_args.width=8" for n in ("g_ab", "g_ba", "d_a", "d_b")]
    preset = tmp_path / "tiny.yaml"
    preset.write_text(json.dumps({"flags": flags}))
    rows = sweep.main(
        [
            str(ROOT / "configs/sweeps/accr_lambdas.yaml"),
            "--trials",
            "1",
            "--preset",
            str(preset),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert len(rows) == 1 and 0 <= rows[0]["val/acc_b2a"] <= 1
    printed = capsys.readouterr()
    assert re.search(rf"\nbest +trial 0: val/acc_b2a = {rows[0]['val/acc_b2a']:.4f}\n", printed.out)
    assert "sweep trials: 100%" in printed.err and "1/1" in printed.err
    config = next((tmp_path / "out" / "trial_000").rglob("config.yaml")).read_text()
    assert f"lambda_rec: {rows[0]['model.init_args.lambda_rec']}" in config  # the suggested value reached the run
    logged = list(csv.DictReader(open(next((tmp_path / "out").glob("trial_000/csv/version_*/metrics.csv")))))
    assert float([r for r in logged if r["val/acc_b2a"]][-1]["val/acc_b2a"]) == rows[0]["val/acc_b2a"]
