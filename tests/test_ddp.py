"""Data-parallel training: 2 CPU processes (gloo) end with identical parameters.

`strategy="ddp"` re-launches the current command in child processes, so the CLI runs as a subprocess.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # two processes each: make test-all
ROOT = Path(__file__).resolve().parents[1]


def ddp_fit(tmp_path: Path, config: str, strategy: str, cache_dir: str, extra=()) -> subprocess.CompletedProcess:
    args = [
        sys.executable, "-m", "coadv", "fit", "-c", config,
        "--trainer.accelerator=cpu", "--trainer.devices=2", f"--trainer.strategy={strategy}",
        "--trainer.max_steps=6", "--trainer.limit_val_batches=0", "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={tmp_path}", "--trainer.callbacks+=callbacks.ReplicaParity",
        f"--data.init_args.cache_dir={cache_dir}", "--data.init_args.batch_size=4",
        "--data.init_args.batches_per_epoch=4", "--model.init_args.classifier_a=null", "--model.init_args.classifier_b=null",
        *extra,
    ]  # fmt: skip
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


SMALL_NETS = [f"--model.init_args.{n}.init_args.width=8" for n in ("g_ab", "g_ba", "d_a", "d_b")]


def replica_records(folder: Path) -> list[dict]:
    return [json.loads((folder / "replica_parity" / f"rank{r}.json").read_text()) for r in (0, 1)]


def test_plain_ddp_trips_the_unused_parameter_check(tmp_path, cache_dir):
    result = ddp_fit(tmp_path, "configs/translation/cyclegan_m2mm.yaml", "ddp", cache_dir, SMALL_NETS)
    assert result.returncode != 0 and "not used in producing the loss" in result.stderr


def test_both_fixes_keep_replicas_identical_and_agree(tmp_path, cache_dir):
    digests = {}
    for strategy in ("ddp_grad_sync", "ddp_find_unused_parameters_true"):
        out = tmp_path / strategy
        result = ddp_fit(out, "configs/translation/accr_m2mm.yaml", strategy, cache_dir, SMALL_NETS)
        assert result.returncode == 0, result.stderr[-3000:]
        records = replica_records(out)
        assert [r["world_size"] for r in records] == [2, 2] and [r["global_step"] for r in records] == [6, 6]
        assert records[0]["sha256"] == records[1]["sha256"]  # ranks saw different data, yet stayed identical
        digests[strategy] = records[0]["sha256"]
    # per-optimizer averaging computes the same update as DDP's reducer, so both runs end bit-identical
    assert digests["ddp_grad_sync"] == digests["ddp_find_unused_parameters_true"]
