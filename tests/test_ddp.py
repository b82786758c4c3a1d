"""Data-parallel training: 2 CPU processes (gloo) end with identical parameters, draw the single-process data, and
average gradients that only some ranks computed.

`strategy="ddp"` re-launches the current command in child processes, so the CLI runs as a subprocess.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from coadv.constants import translation_args

pytestmark = pytest.mark.slow  # two processes each: make test-all
ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}"}


def ddp_fit(
    tmp_path: Path, method: str, strategy: str, cache_dir: str, extra=(), devices=2, max_steps=6
) -> subprocess.CompletedProcess:
    """``coadv fit`` of ``method`` on MNIST -> MNIST-M in ``devices`` CPU processes, tiny and without judges."""
    args = [
        sys.executable,
        "-m",
        "coadv",
        "fit",
        *translation_args(method, "m2mm"),
        "--trainer.accelerator=cpu",
        f"--trainer.devices={devices}",
        f"--trainer.strategy={strategy}",
        f"--trainer.max_steps={max_steps}",
        "--trainer.limit_val_batches=0",
        "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={tmp_path}",
        "--trainer.callbacks+=callbacks.ReplicaParity",
        f"--data.init_args.cache_dir={cache_dir}",
        "--data.init_args.batch_size=4",
        "--data.init_args.batches_per_epoch=4",
        "--model.init_args.classifier_a=null",
        "--model.init_args.classifier_b=null",
        *extra,
    ]
    return subprocess.run(args, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)


SMALL_NETS = [f"--model.init_args.{n}.init_args.width=8" for n in ("g_ab", "g_ba", "d_a", "d_b")]


def replica_records(folder: Path) -> list[dict]:
    return [json.loads((folder / "replica_parity" / f"rank{r}.json").read_text()) for r in (0, 1)]


def test_plain_ddp_trips_the_unused_parameter_check(tmp_path, cache_dir):
    result = ddp_fit(tmp_path, "cyclegan", "ddp", cache_dir, SMALL_NETS)
    assert result.returncode != 0 and "not used in producing the loss" in result.stderr


def test_find_unused_parameters_keeps_replicas_identical(tmp_path, cache_dir):
    result = ddp_fit(tmp_path, "accr", "ddp_find_unused_parameters_true", cache_dir, SMALL_NETS)
    assert result.returncode == 0, result.stderr[-3000:]
    records = replica_records(tmp_path)
    assert [r["world_size"] for r in records] == [2, 2] and [r["global_step"] for r in records] == [6, 6]
    assert records[0]["sha256"] == records[1]["sha256"]  # ranks saw different data, yet stayed identical


def epoch_indices(records: list[dict], keys: dict[str, dict[str, int]]) -> dict[tuple[str, str], list[list[int]]]:
    """(epoch, domain) -> each recorded batch as dataset indices, ranks' batches in training order."""
    out: dict[tuple[str, str], list[list[int]]] = {}
    for record in records:
        for epoch, domains in record.items():
            for d, batches in domains.items():
                out.setdefault((epoch, d), []).extend([[keys[d][k] for k in batch] for batch in batches])
    return out


def test_unpaired_streams_under_two_processes_are_the_single_process_epoch(tmp_path, cache_dir):
    from probes import image_key

    from datamodules import UnpairedDigitsDataModule

    dm = UnpairedDigitsDataModule("mnist", "mnist_m", cache_dir=cache_dir)
    dm.setup("fit")
    keys = {d: {image_key(ds[i][0]): i for i in range(len(ds))} for d, ds in (("a", dm.train_a), ("b", dm.train_b))}
    assert len(keys["a"]) == len(dm.train_a) and len(keys["b"]) == len(dm.train_b)  # content identifies the index
    flags = [
        *SMALL_NETS,
        "--trainer.callbacks+=probes.BatchRecorder",
        "--data.init_args.batches_per_epoch=6",
        "--trainer.max_epochs=2",
    ]
    runs = {}
    for devices in (1, 2):
        out = tmp_path / f"devices{devices}"
        strategy = "ddp_find_unused_parameters_true" if devices == 2 else "auto"
        result = ddp_fit(out, "cyclegan", strategy, cache_dir, flags, devices, -1)
        assert result.returncode == 0, result.stderr[-3000:]
        records = [json.loads((out / "batches" / f"rank{r}.json").read_text()) for r in range(devices)]
        assert all(sorted(r) == ["0", "1"] for r in records)  # 2 epochs of 6 batches of 4 over all processes
        assert all(len(r[e][d]) == 6 // devices for r in records for e in r for d in "ab")
        runs[devices] = epoch_indices(records, keys)
    for (epoch, d), batches in runs[2].items():
        one = runs[1][(epoch, d)]
        assert sorted(sum(batches, [])) == sorted(sum(one, []))  # the ranks' shares make the single-process epoch
        assert not set(sum(batches[:3], [])) & set(sum(batches[3:], []))  # disjoint shares (24 of 3,500, no repeat)
    for run in runs.values():
        a = sum(run[("0", "a")], [])
        b = sum(run[("0", "b")], [])
        assert sum(i == j for i, j in zip(a, b)) <= 3  # independent orders (paired sampling would give 24 of 24)
        assert sum(run[("0", "a")], []) != sum(run[("1", "a")], [])  # a new order each epoch


def test_ddp_averages_partial_gradients_for_both_optimization_modes(tmp_path):
    """A parameter with a gradient on one rank only is averaged with zeros; one no rank uses keeps no gradient (so
    weight decay skips it): the two-player steps rely on both, in manual and automatic optimization."""
    lr = 0.1
    decay = 0.5
    w0 = torch.tensor([1.0, -1.0, 0.5])
    extra0 = torch.tensor([2.0, 4.0])
    w_grad = (torch.tensor([1.0, 2.0, 3.0]) + 2 * torch.tensor([1.0, 2.0, 3.0])) / 2  # mean of x_0, x_1
    extra_grad = torch.tensor([3.0, 3.0]) / 2  # rank 0 gives 3, rank 1 no gradient (zeros)
    expected = {
        "w": w0 - lr * (w_grad + decay * w0),
        "extra": extra0 - lr * (extra_grad + decay * extra0),
        "unused": torch.tensor([1.0]),  # no rank has a gradient: SGD skips it (a zero gradient would decay it)
    }
    for mode in ("manual", "automatic"):
        out = tmp_path / mode
        out.mkdir()
        cmd = [sys.executable, str(ROOT / "tests" / "probes.py"), "partial_grads", mode, str(out)]
        result = subprocess.run(cmd, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        for rank in (0, 1):
            params = torch.load(out / f"rank{rank}.pt")
            for name, value in expected.items():
                assert torch.allclose(params[name], value), (mode, rank, name, params[name], value)
