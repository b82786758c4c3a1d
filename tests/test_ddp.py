"""Data-parallel training: 2 CPU processes (gloo) end with identical parameters.

`strategy="ddp"` re-launches the current command in child processes, so the CLI runs as a subprocess.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def ddp_fit(tmp_path: Path, config: str, strategy: str, cache_dir: str, extra=()) -> subprocess.CompletedProcess:
    args = [
        sys.executable, "main.py", "fit", "-c", config,
        "--trainer.accelerator=cpu", "--trainer.devices=2", f"--trainer.strategy={strategy}",
        "--trainer.max_steps=3", "--trainer.limit_val_batches=0", "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={tmp_path}", "--trainer.callbacks+=callbacks.ReplicaParity",
        f"--data.init_args.cache_dir={cache_dir}", "--data.init_args.batch_size=4",
        "--data.init_args.batches_per_epoch=4", "--model.init_args.classifier_a=null", "--model.init_args.classifier_b=null",
        *extra,
    ]  # fmt: skip
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


SMALL_NETS = [f"--model.init_args.{n}.init_args.width=8" for n in ("g_ab", "g_ba", "d_a", "d_b")]


@pytest.mark.parametrize("method", ["cyclegan", "accr"])
def test_two_process_ddp_replicas_identical(tmp_path, method, cache_dir):
    result = ddp_fit(tmp_path, f"configs/translation/{method}_m2mm.yaml", "ddp_find_unused_parameters_true",
                     cache_dir, SMALL_NETS)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads((tmp_path / "replica_parity" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in records] == [2, 2] and [r["global_step"] for r in records] == [6, 6]
    assert records[0]["sha256"] == records[1]["sha256"]  # gradients were averaged: replicas never diverged
