"""Batched attack runs: equal-length trials share one search, and every trial's result equals the one-at-a-time run.

A small random-weight ECAPA-TDNN is the victim (weights in a hand-written checkpoint, architecture given to the
module); its threshold lies between the middle two clean scores, so that trials of both kinds are decided correctly when clean.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
import math

import pytest
import torch

from attacks import FGSM, PGD, GaussNewton
from coadv.cli import cli_main
from coadv.compare import configs
from datamodules.audio import pad_waves
from datamodules.synth_speech import write_corpus
from datamodules.voxceleb import VoxCelebDataModule
from lightning_modules import AdversarialAttack
from lightning_modules.attack_metrics import COLUMNS, perceptual_scores
from nets.speaker import ECAPATDNN

TEST_LENGTHS = [8000, 8000, 6400, 8000, 6400, 7000]  # groups: positions {0, 1, 3}, {2, 4}, {5}
ENROL_LENGTHS = [7000, 8000, 8000, 6000, 7000, 8000]
NOT_WALL = [i for i, name in enumerate(COLUMNS) if name != "wall_s"]


def matrix(out: dict) -> torch.Tensor:
    """An ``_attack_batch`` output's table of trials as a matrix ``[B, len(COLUMNS)]``, columns in ``COLUMNS`` order."""
    return torch.stack([out["trials"][name] for name in COLUMNS], 1)


def tone(n: int, seed: int) -> torch.Tensor:
    """A voiced-like test signal: a few harmonics of a random pitch plus a little noise, in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / 16000
    f0 = 100 + 150 * torch.rand((), generator=g)
    wave = sum(torch.sin(2 * math.pi * k * f0 * t + torch.rand((), generator=g) * 6) / k for k in range(1, 6))
    return 0.3 * wave / wave.abs().max() + 0.01 * torch.randn(n, generator=g)


@pytest.fixture(scope="module")
def batch() -> dict[str, torch.Tensor]:
    enrol, enrol_len = pad_waves(tuple(tone(n, i) for i, n in enumerate(ENROL_LENGTHS)))
    test, test_len = pad_waves(tuple(tone(n, 100 + i) for i, n in enumerate(TEST_LENGTHS)))
    return {
        "enrol": enrol,
        "enrol_len": enrol_len,
        "test": test,
        "test_len": test_len,
        "label": torch.tensor([1, 0, 1, 0, 0, 1]),
        "index": torch.tensor([10, 11, 12, 13, 14, 15]),
    }


@pytest.fixture(scope="module")
def victim_file(tmp_path_factory, batch) -> tuple[str, float]:
    """A checkpoint holding the victim's weights and, as its threshold, the midpoint of the batch's middle clean scores."""
    torch.manual_seed(0)
    victim = ECAPATDNN(channels=32, embedding_dim=16, scale=4).eval()
    with torch.no_grad():
        scores = torch.stack(
            [
                victim.score(batch["enrol"][i : i + 1, :e], batch["test"][i : i + 1, :t])[0]
                for i, (e, t) in enumerate(zip(ENROL_LENGTHS, TEST_LENGTHS))
            ]
        )
    threshold = float(scores.sort().values[2:4].mean())  # between two scores: no trial sits on it
    path = tmp_path_factory.mktemp("victim") / "ecapa.ckpt"
    state = {f"victim.{k}": v for k, v in victim.state_dict().items()}
    torch.save({"state_dict": state, "verification": {"threshold": threshold}}, path)
    return str(path), threshold


def module(victim_file, attack, batch_trials: bool, perceptual: bool = False) -> AdversarialAttack:
    model = AdversarialAttack(
        victim_file[0],
        attack,
        victim=ECAPATDNN(channels=32, embedding_dim=16, scale=4),
        batch_trials=batch_trials,
        perceptual=perceptual,
    )
    model.setup("test")
    return model


class Recorded(GaussNewton):
    """Gauss-Newton that records the shape of every batch it is given."""

    shapes: list[tuple[int, int]] = []

    def perturb(self, x, objective):
        Recorded.shapes.append(tuple(x.shape))
        return super().perturb(x, objective)


def test_groups_are_equal_test_lengths_and_each_is_attacked_once(victim_file, batch):
    model = module(victim_file, Recorded(steps=2), batch_trials=True)
    assert [g.tolist() for g in model.trial_groups(batch["test_len"])] == [[0, 1, 3], [2, 4], [5]]
    Recorded.shapes = []
    out = model._attack_batch(batch)
    assert Recorded.shapes == [(3, 8000), (2, 6400), (1, 7000)]
    assert matrix(out)[:, 0].tolist() == batch["index"].tolist()  # rows back in batch order
    assert [len(a) for a in out["adversarial"]] == TEST_LENGTHS  # each at its true length, never padded
    wall = matrix(out)[:, COLUMNS.index("wall_s")]
    assert wall[0] == wall[1] == wall[3] and wall[2] == wall[4]  # a group's time, shared equally
    Recorded.shapes = []
    module(victim_file, Recorded(steps=2), batch_trials=False)._attack_batch(batch)
    assert Recorded.shapes == [(1, n) for n in TEST_LENGTHS]


def test_enrolment_embeddings_are_each_at_their_true_length(victim_file, batch):
    model = module(victim_file, FGSM(), batch_trials=True)
    batched = model.embed_enrolment(batch["enrol"], batch["enrol_len"])
    with torch.no_grad():
        alone = torch.cat([model.victim.embed(batch["enrol"][i : i + 1, :n]) for i, n in enumerate(ENROL_LENGTHS)])
        padded = model.victim.embed(batch["enrol"][:1])  # 7000 samples + 1000 zeros
    torch.testing.assert_close(batched, alone, rtol=1e-4, atol=1e-5, equal_nan=True)
    assert (padded - alone[:1]).abs().max() > 1e-3  # why trials are grouped, never padded: zeros change embeddings


@pytest.mark.parametrize(
    "attack",
    [FGSM(epsilon=0.002), PGD(epsilon=0.5, step_size=0.05, steps=8, norm="l2"), GaussNewton(steps=6)],
    ids=["fgsm", "pgd_l2", "gauss_newton"],
)
def test_batched_rows_equal_one_at_a_time_rows(victim_file, batch, attack):
    batched = module(victim_file, attack, batch_trials=True)._attack_batch(batch)
    single = module(victim_file, attack, batch_trials=False)._attack_batch(batch)
    torch.testing.assert_close(
        matrix(batched)[:, NOT_WALL], matrix(single)[:, NOT_WALL], rtol=1e-4, atol=1e-5, equal_nan=True
    )
    for a, b in zip(batched["adversarial"], single["adversarial"]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, equal_nan=True)
    rows = dict(zip(COLUMNS, matrix(single).T))
    threshold = victim_file[1]
    assert ((rows["score_before"] >= threshold) == (rows["label"] == 1)).float().tolist() == rows[
        "clean_correct"
    ].tolist()  # the threshold leaves trials of both kinds decided correctly: a real comparison
    assert 0 < rows["clean_correct"].sum() < len(TEST_LENGTHS)
    assert (rows["rho"] > 0).any()  # the attack moved something


def test_a_trial_alone_keeps_its_own_seed(victim_file, batch):
    """Random starts: a trial in a group of one is seeded with seed + its index, whatever the rest of the batch."""
    attack = PGD(epsilon=0.5, step_size=0.05, steps=3, norm="l2", random_start=True, early_stop=False)
    whole = module(victim_file, attack, batch_trials=True)._attack_batch(batch)
    last = {k: v[5:] for k, v in batch.items()}  # trial 15 (the one 7000-sample test) in a batch of its own
    alone = module(victim_file, attack, batch_trials=True)._attack_batch(last)
    torch.testing.assert_close(
        matrix(whole)[5, NOT_WALL], matrix(alone)[0, NOT_WALL], rtol=1e-4, atol=1e-5, equal_nan=True
    )


def test_perceptual_columns(victim_file, batch, monkeypatch, caplog):
    pytest.importorskip("pesq")
    pytest.importorskip("pystoi")
    clean = tone(16000, 7)
    same = perceptual_scores(clean, clean, {"pesq": True, "stoi": True})
    assert same[0] == pytest.approx(4.644, abs=1e-3) and same[1] == pytest.approx(1.0, abs=1e-6)  # P.862.2 maximum
    noise = torch.randn(16000, generator=torch.Generator().manual_seed(0))
    light, heavy = (perceptual_scores(clean + a * noise, clean, {"pesq": True, "stoi": True}) for a in (0.01, 0.1))
    assert heavy[0] < light[0] < same[0] and heavy[1] < light[1] < same[1]  # more noise, lower scores
    too_short = perceptual_scores(clean[:2000], clean[:2000], {"pesq": True, "stoi": True})
    assert math.isnan(too_short[0]) and math.isnan(too_short[1])  # PESQ needs 1/4 s, STOI ~0.4 s of speech
    rows = matrix(module(victim_file, FGSM(), batch_trials=True, perceptual=True)._attack_batch(batch))
    pesq, stoi = rows[:, COLUMNS.index("pesq")], rows[:, COLUMNS.index("stoi")]
    assert ((pesq > 1) & (pesq <= 4.65)).all()
    short = torch.tensor(TEST_LENGTHS) < 7000  # 0.4 s: pystoi finds too few frames and would return 1e-5
    assert stoi[short].isnan().all() and ((stoi[~short] > 0) & (stoi[~short] <= 1)).all()
    off = matrix(module(victim_file, FGSM(), batch_trials=True, perceptual=False)._attack_batch(batch))
    assert off[:, COLUMNS.index("pesq")].isnan().all() and off[:, COLUMNS.index("stoi")].isnan().all()


def test_missing_perceptual_packages_give_nan_and_one_line(victim_file, batch, monkeypatch, caplog):
    import lightning_modules.attack_metrics as metrics

    monkeypatch.setattr(metrics, "perceptual_available", lambda: {"pesq": False, "stoi": True})
    with caplog.at_level(logging.WARNING, logger=metrics.__name__):
        model = module(victim_file, FGSM(), batch_trials=True, perceptual=True)
    assert [r.getMessage() for r in caplog.records] == [
        "perceptual scores: pesq not installed, so the pesq column(s) are NaN; pip install 'coadv[perceptual]' "
        "(or set model.init_args.perceptual=false to silence this)"
    ]
    if metrics.importlib.util.find_spec("pystoi") is not None:
        rows = matrix(model._attack_batch({k: v[:1] for k, v in batch.items()}))
        assert rows[0, COLUMNS.index("pesq")].isnan() and not rows[0, COLUMNS.index("stoi")].isnan()


def test_trials_sorted_by_length(tmp_path):
    write_corpus(tmp_path, n_speakers=4, videos=1, utts_per_video=3, seconds=(0.3, 0.9), n_trials=12, seed=1)
    plain = VoxCelebDataModule(root=str(tmp_path), eval_batch_size=4)
    ordered = VoxCelebDataModule(root=str(tmp_path), eval_batch_size=4, sort_trials_by_length=True)
    capped = VoxCelebDataModule(root=str(tmp_path), eval_batch_size=4, sort_trials_by_length=True, eval_max_seconds=0.5)
    for dm in (plain, ordered, capped):
        dm.setup("test")
    lengths = {}
    for name, dm in (("plain", plain), ("ordered", ordered), ("capped", capped)):
        batches = list(dm.test_dataloader())
        index = torch.cat([b["index"] for b in batches])
        assert sorted(index.tolist()) == list(range(len(dm.trials)))  # every trial once
        lengths[name] = torch.cat([b["test_len"] for b in batches])
    assert not (lengths["plain"].diff() >= 0).all()  # the list itself is not in length order
    assert (lengths["ordered"].diff() >= 0).all() and sorted(lengths["plain"].tolist()) == lengths["ordered"].tolist()
    assert (lengths["capped"] <= 8000).all() and (lengths["capped"].diff() >= 0).all()
    assert (lengths["capped"] == 8000).sum() > 1  # cropped trials tie: one group


def test_batched_run_writes_the_table_of_one_at_a_time(tmp_path, victim_file):
    """``coadv test``: eval_batch_size 6 over six trials cut to one length (one group) gives the trials.csv of the
    one-at-a-time run; PESQ / STOI are columns of it when their packages are installed."""
    write_corpus(tmp_path / "vox", n_speakers=4, videos=1, utts_per_video=3, seconds=(0.6, 0.9), n_trials=6, seed=2)
    data = VoxCelebDataModule(root=str(tmp_path / "vox"), eval_max_seconds=0.5, eval_batch_size=6)
    data.setup("test")
    victim = ECAPATDNN(channels=32, embedding_dim=16, scale=4).eval()
    victim.load_state_dict({k[7:]: v for k, v in torch.load(victim_file[0])["state_dict"].items()})
    (trials,) = list(data.test_dataloader())
    with torch.no_grad():
        scores = victim.score(trials["enrol"], trials["test"]).sort().values  # all 8000 samples: no padding
    threshold = float(scores[2:4].mean())
    ecapa = {"class_path": "nets.speaker.ECAPATDNN", "init_args": {"channels": 32, "embedding_dim": 16, "scale": 4}}
    tables = {}
    for batched in (True, False):
        out = tmp_path / f"batched_{batched}"
        cli_main(
            [
                "test",
                *configs.args("gauss_newton", "ecapa"),
                f"--model.init_args.checkpoint={victim_file[0]}",
                f"--model.init_args.victim={json.dumps(ecapa)}",
                f"--model.init_args.threshold={threshold}",
                f"--model.init_args.batch_trials={batched}",
                # the overshoot the config had before tuning: steps land well past theta + kappa, so batch noise
                # cannot change a trial's iteration count (a tuned 3e-4 lands within it on this random victim)
                "--model.init_args.attack.init_args.overshoot=0.02",
                f"--data.init_args.root={tmp_path / 'vox'}",
                "--data.init_args.eval_max_seconds=0.5",
                "--data.init_args.eval_batch_size=6",
                f"--trainer.default_root_dir={out}",
                "--trainer.enable_progress_bar=false",
                "--trainer.enable_model_summary=false",
                "--trainer.logger=false",
            ]
        )
        with open(out / "attack" / "trials.csv") as f:
            tables[batched] = [{k: float(v) for k, v in row.items() if k != "wall_s"} for row in csv.DictReader(f)]
    assert [row["index"] for row in tables[True]] == [0, 1, 2, 3, 4, 5]
    assert 0 < sum(row["clean_correct"] for row in tables[True]) < 6 and any(row["success"] for row in tables[True])
    for a, b in zip(tables[True], tables[False]):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-5, nan_ok=True)
    if importlib.util.find_spec("pesq") is not None:
        assert all(1 < row["pesq"] <= 4.65 for row in tables[True])
