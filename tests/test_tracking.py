"""W&B as users expect, without network: mode decision, one run per training with its resolved config, run names,
the CSV fragment, checkpoint and audio artifacts; the tools' progress lines."""

import csv
import json
import os
import struct
import time
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.loggers import WandbLogger

from callbacks.common import run_dir
from callbacks.wandb_artifacts import WandbArtifacts
from coadv.cli import cli_main
from coadv.compare import configs as attack_configs
from coadv.constants import classifier_args, translation_files
from coadv.progress import meter
from coadv.tracking import finish_previous_run, mode_chosen_by, run_identity, wandb_environment, wandb_run_dirs

ROOT = Path(__file__).resolve().parents[1]
AGENT_ENV = {  # what `wandb agent` exports before starting the sweep's command (wandb/wandb_agent.py)
    "WANDB_SWEEP_ID": "abc123",
    "WANDB_RUN_ID": "run9xyz",
    "WANDB_SWEEP_PARAM_PATH": "wandb/sweep-abc123/config-run9xyz.yaml",
    "WANDB_ENTITY": "someone",
    "WANDB_PROJECT": "coadv",
}


def reset_wandb() -> None:
    """Finish the run in progress and forget W&B's process-wide settings: they are read from the environment once,
    at the first run of a process, and each test sets its own WANDB_MODE."""
    import wandb

    finish_previous_run()
    wandb.teardown()


@pytest.fixture()
def wandb_sandbox(tmp_path, monkeypatch):
    """No W&B variable, settings or credentials from the machine; W&B's own folders under tmp_path."""
    reset_wandb()
    for name in [k for k in os.environ if k.startswith("WANDB_")] + ["NETRC"]:
        monkeypatch.delenv(name, raising=False)
    for name in ("WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb_home" / name.lower()))
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    reset_wandb()


def tiny_fit(root: Path, seed: int, cache_dir: str, *extra: str):
    """A two-step DigitClassifier fit in ``root`` (its checkpoint too: the config's, moved), with the default logger."""
    checkpoint = {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": {"dirpath": f"{root}/ckpt"}}
    return cli_main(
        [
            "fit",
            *classifier_args("mnist"),
            f"--trainer.default_root_dir={root}",
            f"--data.init_args.cache_dir={cache_dir}",
            "--data.init_args.batch_size=4",
            "--data.init_args.test_limit=8",
            "--model.init_args.net.init_args.width=8",
            "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=2",
            "--trainer.limit_val_batches=1",
            "--trainer.num_sanity_val_steps=0",
            "--trainer.enable_progress_bar=false",
            f"--seed_everything={seed}",
            f"--trainer.callbacks=[{json.dumps(checkpoint)}]",
            *extra,
        ]
    )


def records(folder: str | Path) -> list:
    """The records of a finished offline run's ``run-<id>.wandb`` file, once W&B's service has written them all
    (it does so after ``wandb.finish()`` returns): up to its ``exit`` record."""
    for _ in range(100):
        found = read_records(next(Path(folder).glob("run-*.wandb")))
        if any(r.WhichOneof("record_type") == "exit" for r in found):
            return found
        time.sleep(0.2)
    raise AssertionError(f"{folder}: the run never ended")


def read_records(path: Path) -> list:
    """The records of a ``.wandb`` file (LevelDB log format: 32 KiB blocks of chunks)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    if len(data) < 7:
        return []
    assert data[:4] == b":W&B"
    pos = 7
    block = 32768
    out = []
    chunk = b""
    while pos + 7 <= len(data):
        left = block - pos % block
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if left < 7 or (length == 0 and kind == 0):  # block padding
            pos += left
            continue
        if pos + 7 + length > len(data):  # still being written
            break
        chunk, pos = chunk + data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind in (1, 4):  # a FULL record, or the LAST chunk of one
            out.append(wandb_internal_pb2.Record.FromString(chunk))
            chunk = b""
    return out


def run_record(folder):
    return next(r.run for r in records(folder) if r.WhichOneof("record_type") == "run")


def logged_config(folder) -> dict:
    config = {}
    for r in records(folder):
        kind = r.WhichOneof("record_type")
        items = r.run.config.update if kind == "run" else r.config.update if kind == "config" else []
        config.update({item.key: json.loads(item.value_json) for item in items})
    return config


def artifacts(folder) -> list:
    return [r.artifact for r in records(folder) if r.WhichOneof("record_type") == "artifact"]


def write_netrc(path: Path, host: str) -> Path:
    path.write_text(f"machine {host}\n  login user\n  password {'k' * 40}\n")
    path.chmod(0o600)
    return path


@pytest.mark.parametrize(
    ("env", "files", "reason"),
    [
        ({}, {}, None),
        ({"WANDB_MODE": ""}, {}, None),  # empty is unset
        ({"WANDB_MODE": "disabled"}, {}, "WANDB_MODE=disabled"),
        ({"WANDB_MODE": "online"}, {}, "WANDB_MODE=online"),
        (AGENT_ENV, {}, "WANDB_SWEEP_ID is set (launched by wandb agent)"),
        ({"WANDB_RUN_ID": "r1"}, {}, "WANDB_RUN_ID is set (launched by wandb agent)"),
        ({"WANDB_API_KEY": "k" * 40}, {}, "WANDB_API_KEY is set"),
        ({}, {".netrc": "api.wandb.ai"}, "logged in"),
        ({}, {".netrc": "github.com"}, None),  # credentials for another host only
        ({"WANDB_BASE_URL": "https://wandb.example.org"}, {".netrc": "wandb.example.org"}, "logged in"),
        ({"WANDB_BASE_URL": "https://wandb.example.org"}, {".netrc": "api.wandb.ai"}, None),  # not this server's
        ({}, {".config/wandb/settings": "[default]\nmode = offline\n"}, "mode set in"),
        ({}, {"project/wandb/settings": "[default]\nmode = disabled\n"}, "mode set in"),  # `wandb disabled` here
        ({}, {".config/wandb/settings": "[default]\nentity = me\n"}, None),
        ({}, {".netrc": None}, None),  # unreadable netrc: no crash, nothing chosen
    ],
)
def test_offline_only_when_nothing_chose(tmp_path, env, files, reason):
    home = tmp_path / "home"
    cwd = tmp_path / "home" / "project"
    cwd.mkdir(parents=True)
    for name, content in files.items():
        path = home / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name == ".netrc":
            write_netrc(path, content) if content else path.write_text("machine\n'unterminated")
        else:
            path.write_text(content)
    got = mode_chosen_by(env, home, cwd)
    assert got == reason if reason is None else reason in got


def test_agent_launched_run_is_not_forced_offline(wandb_sandbox, monkeypatch):
    for name, value in AGENT_ENV.items():
        monkeypatch.setenv(name, value)
    assert "wandb agent" in wandb_environment()
    assert "WANDB_MODE" not in os.environ  # W&B's own default (online, the sweep's run) stays in charge
    for name in AGENT_ENV:
        monkeypatch.delenv(name)
    assert wandb_environment().startswith("offline by default") and os.environ["WANDB_MODE"] == "offline"


def test_disabled_makes_no_run(wandb_sandbox, cache_dir):
    os.environ["WANDB_MODE"] = "disabled"
    cli = tiny_fit(wandb_sandbox / "run", 0, cache_dir)
    assert isinstance(cli.trainer.logger, WandbLogger) and wandb_run_dirs(cli.trainer) == ["disabled"]
    assert (wandb_sandbox / "run" / "config.yaml").is_file() and not list(wandb_sandbox.rglob("*.wandb"))


def test_offline_one_run_per_training_with_its_config(wandb_sandbox, cache_dir, capsys):
    os.environ["WANDB_MODE"] = "offline"
    first = tiny_fit(wandb_sandbox / "one", 1, cache_dir)
    second = tiny_fit(wandb_sandbox / "two", 2, cache_dir, "--trainer.logger.init_args.log_model=true")
    (one,) = wandb_run_dirs(first.trainer)
    (two,) = wandb_run_dirs(second.trainer)
    finish_previous_run()  # the second run's file is complete once it is finished (the first one was, by then)
    assert Path(one).parent == wandb_sandbox / "one" / "wandb" and Path(two).parent == wandb_sandbox / "two" / "wandb"
    assert run_record(one).run_id != run_record(two).run_id  # the second logger did not reuse the first run
    for folder, seed in ((one, 1), (two, 2)):
        run = run_record(folder)
        assert run.display_name == f"DigitClassifier mnist s{seed}" and run.run_group == "DigitClassifier mnist"
        assert list(run.tags) == ["fit", "DigitClassifier", "mnist", f"seed={seed}"] and run.job_type == "fit"
        config = logged_config(folder)  # the resolved config, as written to config.yaml, inside the run
        assert config["seed_everything"] == seed and config["model"]["init_args"]["net"]["init_args"]["width"] == 8
        assert config["data"]["init_args"]["test_limit"] == 8 and config["wandb_artifacts"] == {"audio": False}
    assert artifacts(one) == []  # checkpoints are uploaded only when asked
    assert [(a.type, [c.path for c in a.manifest.contents]) for a in artifacts(two)] == [("model", ["model.ckpt"])]
    assert f"wandb sync {one}" in capsys.readouterr().out


def test_config_names_win_and_tags_add_up(wandb_sandbox, cache_dir):
    os.environ["WANDB_MODE"] = "disabled"
    cli = tiny_fit(
        wandb_sandbox,
        5,
        cache_dir,
        "--trainer.logger.init_args.name=mine",
        "--trainer.logger.init_args.tags=[paper, mnist]",
    )
    init = cli.config["fit"]["trainer"]["logger"]["init_args"]
    assert init["name"] == "mine" and init["group"] == "DigitClassifier mnist"
    assert init["tags"] == ["paper", "mnist", "fit", "DigitClassifier", "seed=5"]


def test_csv_fragment_logs_without_wandb(wandb_sandbox, cache_dir):
    os.environ["WANDB_MODE"] = "offline"  # W&B could run: the fragment alone keeps it out
    tiny_fit(wandb_sandbox / "run", 0, cache_dir, "-c", str(ROOT / "configs/loggers/csv.yaml"))
    rows = list(csv.DictReader(open(wandb_sandbox / "run" / "csv" / "version_0" / "metrics.csv")))
    assert 0 <= float(next(r["val/acc"] for r in rows if r["val/acc"])) <= 1
    assert not list(wandb_sandbox.rglob("wandb"))


def test_run_identity_of_an_attack_and_a_translation():
    attack = attack_configs.merged("cw", "ecapa") | {"seed_everything": 7}
    assert run_identity(attack, "test") == {
        "name": "CarliniWagnerL2 vs ecapa_synth s7",
        "group": "attacks vs ecapa_synth",
        "job_type": "test",
        "tags": ["test", "AdversarialAttack", "CarliniWagnerL2", "ecapa_synth", "seed=7"],
    }
    method, direction = (yaml.safe_load(path.read_text()) for path in translation_files("accr", "m2s"))
    accr = method | direction | {"seed_everything": True}  # model and trainer, then data
    assert run_identity(accr, "fit")["name"] == "ACCR mnist→svhn"  # no fixed seed: none in the name


class WritesAttackFiles(L.LightningModule):
    """Writes what AttackReport would: one adversarial file per test batch and trials.csv."""

    def test_step(self, batch, batch_idx):
        folder = run_dir(self.trainer) / "attack"
        (folder / "adversarial").mkdir(parents=True, exist_ok=True)
        (folder / "adversarial" / f"{batch_idx:05d}_1.wav").write_bytes(b"RIFF" + bytes(batch[0].shape[0]))
        (folder / "trials.csv").write_text("index,label\n")


def test_audio_artifact_holds_this_runs_files_only(wandb_sandbox):
    os.environ["WANDB_MODE"] = "offline"
    stale = wandb_sandbox / "attack" / "adversarial" / "00007_0.wav"  # left by an earlier run in the same folder
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    os.utime(stale, (1e9, 1e9))
    logger = WandbLogger(project="coadv", save_dir=str(wandb_sandbox))
    trainer = L.Trainer(
        logger=logger,
        callbacks=[WandbArtifacts(audio=True)],
        default_root_dir=wandb_sandbox,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.test(WritesAttackFiles(), dataloaders=torch.utils.data.DataLoader(torch.zeros(4, 3), batch_size=2))
    (folder,) = wandb_run_dirs(trainer)
    finish_previous_run()
    (artifact,) = artifacts(folder)
    assert artifact.type == "adversarial-audio" and artifact.name == f"adversarial-{logger.experiment.id}"
    assert sorted(c.path for c in artifact.manifest.contents) == [
        "adversarial/00000_1.wav",
        "adversarial/00001_1.wav",
        "trials.csv",
    ]


def test_meter_leaves_reused_items_out_of_the_eta():
    # 3 of 11 done in 12 min, 1 of them reused: 2 ran, 6 min each -> 8 left, 48 min
    line = meter(3, 11, 720.0, "attack", "attacks", reused=1)
    assert "3/11 [12:00<48:00, 360.00s/attack]" in line and line.startswith("attacks:  27%")
