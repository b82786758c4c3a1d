"""Weights & Biases as its users expect: one run per training, named from the config, the resolved config inside.

- Mode: ``WANDB_MODE`` is set to ``offline`` only when nothing chose one (see :func:`mode_chosen_by`); a run launched
  by ``wandb agent`` or by a logged-in user goes wherever W&B would send it.
- One run per training: the previous run of the process is finished before a new LightningCLI builds its loggers
  (otherwise Lightning's ``WandbLogger`` reuses the run in progress).
- Name, group, tags and job type of every ``WandbLogger`` are derived from the config (:func:`run_identity`) unless
  the config sets them; the full resolved config goes into the run's config (:class:`WandbConfigCallback`).
- Artifacts are opt-in: ``trainer.logger.init_args.log_model`` (checkpoints, Lightning's switch) and
  ``wandb_artifacts.audio`` (adversarial audio of attack runs, ``callbacks.WandbArtifacts``).
"""

from __future__ import annotations

import configparser
import netrc
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import yaml
from lightning.pytorch.cli import LightningArgumentParser, SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger
from tqdm import tqdm

from callbacks.wandb_artifacts import WandbArtifacts
from coadv.errors import class_name

# what `wandb agent` exports before it starts the sweep's command (wandb/wandb_agent.py)
AGENT_VARIABLES = ("WANDB_SWEEP_ID", "WANDB_RUN_ID", "WANDB_SWEEP_PARAM_PATH")
CREDENTIAL_VARIABLES = ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE")


def _netrc_has_host(path: Path, host: str) -> bool:
    try:
        entry = netrc.netrc(path).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return False
    return bool(entry and entry[2])


def _settings(path: Path) -> dict[str, str]:
    parser = configparser.ConfigParser()
    try:
        parser.read(path)
    except configparser.Error:
        return {}
    return dict(parser["default"]) if parser.has_section("default") else {}


def mode_chosen_by(environ: Mapping[str, str], home: Path, cwd: Path) -> str | None:
    """What already decides where W&B sends runs (a short reason), or ``None`` when nothing does.

    Looked at in W&B's own order: ``WANDB_MODE``; the variables ``wandb agent`` sets; credentials in the
    environment; a ``.netrc`` entry for the W&B host (what ``wandb login`` writes); ``mode`` or ``api_key`` in the
    global (``~/.config/wandb/settings``) or workspace (``./wandb/settings``) settings file.
    """
    if environ.get("WANDB_MODE"):
        return f"WANDB_MODE={environ['WANDB_MODE']}"
    for name in (*AGENT_VARIABLES, *CREDENTIAL_VARIABLES):
        if environ.get(name):
            return f"{name} is set" + (" (launched by wandb agent)" if name in AGENT_VARIABLES else "")
    host = urlsplit(environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").netloc
    netrcs = [Path(environ["NETRC"]).expanduser()] if environ.get("NETRC") else [home / ".netrc", home / "_netrc"]
    for path in netrcs:
        if path.is_file() and _netrc_has_host(path, host):
            return f"logged in ({path} has {host})"
    config_dir = Path(environ["WANDB_CONFIG_DIR"]) if environ.get("WANDB_CONFIG_DIR") else home / ".config" / "wandb"
    for path in (config_dir / "settings", cwd / "wandb" / "settings"):
        found = _settings(path) if path.is_file() else {}
        for key in ("mode", "api_key"):
            if found.get(key):
                return f"{key} set in {path}"
    return None


def wandb_environment(environ: os._Environ | dict | None = None) -> str:
    """Set ``WANDB_MODE=offline`` only when nothing chose a mode (:func:`mode_chosen_by`); returns the reason."""
    environ = os.environ if environ is None else environ
    reason = mode_chosen_by(environ, Path.home(), Path.cwd())
    if reason is None:
        environ["WANDB_MODE"] = "offline"
        return "offline by default (no WANDB_MODE, no login, not started by wandb agent)"
    return reason


def finish_previous_run() -> None:
    """Finish the process's W&B run in progress, so the next ``WandbLogger`` starts its own run."""
    wandb = sys.modules.get("wandb")  # never imported: no run can be in progress
    if wandb is not None and wandb.run is not None:
        wandb.finish()


def _class_path(init: dict, key: str) -> str:
    value = init.get(key)
    return value.get("class_path", key) if isinstance(value, dict) else key


def _subject(init: dict, data: dict) -> list[str]:
    """What a training learns on: the victim net, then the domains (``mnist→mnist_m``), one domain or the corpus."""
    parts = [class_name(_class_path(init, "victim"))] if isinstance(init.get("victim"), dict) else []
    if data.get("domain_a") and data.get("domain_b"):
        parts.append(f"{data['domain_a']}→{data['domain_b']}")
    elif data.get("domain"):
        parts.append(str(data["domain"]))
    elif data.get("root"):
        parts.append(Path(str(data["root"])).name)
    return parts


def run_identity(config: dict, subcommand: str | None) -> dict:
    """Name, group, tags and job type of a run, from its resolved config (a plain dict).

    Training: ``<model class> <victim net> <domains or corpus> s<seed>``, grouped without the seed (the seeds of one
    experiment together). Attack runs (a model with an ``attack``): ``<attack class> vs <victim> s<seed>`` with the
    victim named by its checkpoint; all attacks on one victim share the group ``attacks vs <victim>``.
    """
    model = config.get("model") or {}
    init = model.get("init_args") or {}
    data = (config.get("data") or {}).get("init_args") or {}
    seed = config.get("seed_everything")
    seed_part = [] if seed is None or isinstance(seed, bool) else [f"s{seed}"]
    if isinstance(init.get("attack"), dict):
        method = class_name(_class_path(init, "attack"))
        victim = (
            Path(str(init["checkpoint"])).stem if init.get("checkpoint") else class_name(_class_path(init, "victim"))
        )
        name = " ".join([method, "vs", victim, *seed_part])
        group = f"attacks vs {victim}"
        parts = [victim]
    else:
        method = class_name(model.get("class_path", "model"))
        parts = _subject(init, data)
        name = " ".join([method, *parts, *seed_part])
        group = " ".join([method, *parts])
    tags = [subcommand, class_name(model.get("class_path", "")), method, *parts, *(f"seed={seed}" for _ in seed_part)]
    return {
        "name": name,
        "group": group,
        "tags": list(dict.fromkeys(t[:64] for t in tags if t)),  # W&B takes tags of at most 64 characters
        "job_type": subcommand,
    }


def _wandb_logger_configs(trainer_config) -> list:
    logger = trainer_config.get("logger") if trainer_config is not None else None
    entries = logger if isinstance(logger, list) else [logger]
    return [e for e in entries if getattr(e, "class_path", None) == "lightning.pytorch.loggers.WandbLogger"]


def name_wandb_loggers(config, subcommand: str | None) -> None:
    """Fill name, group, job type of every ``WandbLogger`` in ``config`` (a jsonargparse Namespace) where unset;
    the derived tags are added to the configured ones."""
    loggers = _wandb_logger_configs(config.get("trainer"))
    if not loggers:
        return
    identity = run_identity(config.clone().as_dict(), subcommand)
    for logger in loggers:
        init = logger.init_args
        for key in ("name", "group", "job_type"):
            if init.get(key) is None:
                init[key] = identity[key]
        init["tags"] = list(dict.fromkeys([*(init.get("tags") or []), *identity["tags"]]))


def wandb_run_dirs(trainer) -> list[str]:
    """The local folder of each W&B run of ``trainer`` (``disabled`` for a disabled one)."""
    out = []
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            settings = logger.experiment.settings
            out.append("disabled" if settings.mode == "disabled" else str(settings.sync_dir))
    return out


class WandbConfigCallback(SaveConfigCallback):
    """Saves ``config.yaml`` as LightningCLI does, puts the same resolved config into every W&B run's config, and
    says once, at the end, how to upload an offline run."""

    def save_config(self, trainer, pl_module, stage: str) -> None:
        loggers = [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]
        if loggers:
            resolved = yaml.safe_load(
                self.parser.dump(self.config, format="yaml", skip_unset=False, skip_validation=True)
            )
            for logger in loggers:
                logger.experiment.config.update(resolved, allow_val_change=True)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.told = False

    def teardown(self, trainer, pl_module, stage: str) -> None:
        if not trainer.is_global_zero or self.told:
            return
        self.told = True  # a fit followed by a test in one process is one run: say it once
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                settings = logger.experiment.settings
                if settings.mode in ("offline", "dryrun"):
                    tqdm.write(
                        f"[coadv] W&B run saved offline in {settings.sync_dir}; "
                        f"upload it with: wandb sync {settings.sync_dir}"
                    )


class WandbTracking:
    """LightningCLI mixin (``class CLI(WandbTracking, LightningCLI)``): the W&B behaviour of this module's docstring,
    :class:`WandbConfigCallback` as the config saver, and the ``wandb_artifacts`` switches (``WandbArtifacts``)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("save_config_callback", WandbConfigCallback)
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        super().add_arguments_to_parser(parser)  # type: ignore[misc]
        parser.add_lightning_class_args(WandbArtifacts, "wandb_artifacts")

    def before_instantiate_classes(self) -> None:
        super().before_instantiate_classes()  # type: ignore[misc]
        finish_previous_run()
        subcommand = self.subcommand  # type: ignore[attr-defined]
        config = self.config[subcommand] if subcommand else self.config  # type: ignore[attr-defined]
        name_wandb_loggers(config, subcommand)
