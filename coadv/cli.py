"""The ``coadv`` command: LightningCLI subcommands and the project's tools under one entry point.

coadv fit -c configs/translation/method/accr.yaml -c configs/translation/direction/m2mm.yaml  # LightningCLI
coadv study --preset ci  # tools: study, sweep, compare-attacks, tune-attacks, demo, corpus
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings

from coadv.constants import CONFIGS, config_path, direction, speaker_run

LIGHTNING = ("fit", "validate", "test", "predict")
TOOLS = {
    "study": ("coadv.study.main", "the translation study: methods x directions x seeds (x ablations) -> tables"),
    "sweep": ("coadv.sweep", "run a W&B sweep YAML offline (Optuna); the same file works with `wandb sweep`"),
    "compare-attacks": ("coadv.compare.main", "every attack against one victim, side by side"),
    "tune-attacks": ("coadv.compare.tuning", "tune every attack with the same small grid on a disjoint trial split"),
    "demo": (
        "coadv.demo",
        "fine-tune ACCR M <-> MM from the shipped start weights on the embedded digits; print the table",
    ),
    "corpus": ("coadv.corpus", "write the synthetic speech corpus (VoxCeleb1 layout) to a folder"),
}
HELP = f"""usage: coadv <command> [options]

LightningCLI commands (each takes -c <config.yaml> and --help):
  fit        train a model
  validate   evaluate on the validation data
  test       evaluate on the test data (attack runs use this)
  predict    run predict_step

Tools:
{chr(10).join(f"  {name:<16} {text}" for name, (_, text) in TOOLS.items())}

Configs are looked up relative to the current folder first, then among the shipped ones ({CONFIGS}),
so `coadv fit -c configs/translation/method/accr.yaml -c configs/translation/direction/m2mm.yaml` works from any
folder.
`coadv <command> --help` shows a command's options."""


def resolve_configs(args: list[str]) -> list[str]:
    """Replace every ``-c``/``--config`` path that does not exist here by the shipped config of the same name."""
    out = []
    expect = False
    for arg in args:
        if expect:
            arg, expect = str(config_path(arg)), False
        elif arg in ("-c", "--config"):
            expect = True
        elif arg.startswith("--config="):
            arg = "--config=" + str(config_path(arg.split("=", 1)[1]))
        out.append(arg)
    return out


def cli_main(args: list[str] | None = None, run: bool = True):
    """Build and run LightningCLI (``args=None`` reads ``sys.argv``); returns it so tests and tools can inspect it."""
    from jsonargparse import set_parsing_settings
    from omegaconf import OmegaConf

    import callbacks  # noqa: F401  (short class_path names)
    import datamodules  # noqa: F401
    import lightning_modules  # noqa: F401
    from coadv.errors import mark_setup_error
    from coadv.lightning_cli import CoadvCLI
    from coadv.tracking import wandb_environment

    set_parsing_settings(omegaconf_absolute_to_relative_paths=True)  # "${trainer.x}" works under a subcommand
    OmegaConf.register_resolver("direction", direction, replace=True)  # runs/accr_${direction:...}: accr_m2mm
    OmegaConf.register_resolver("speaker_run", speaker_run, replace=True)  # runs/${speaker_run:...}: ecapa_libri
    # tools and tests pass their own args while sys.argv holds theirs: expected, not a mistake
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    wandb_environment()
    args = resolve_configs(sys.argv[1:] if args is None else list(args))
    defaults = [str(CONFIGS / "defaults.yaml")]
    try:
        return CoadvCLI(
            parser_kwargs={
                "parser_mode": "omegaconf+",  # ${...} interpolation resolved after all config sources are merged
                **{sub: {"default_config_files": defaults} for sub in LIGHTNING},
            },
            auto_configure_optimizers=False,  # modules take optimizers as injected OptimizerCallable arguments
            save_config_kwargs={"overwrite": True},  # a second run in the same folder must not abort
            args=args,
            run=run,
        )
    except Exception as error:
        mark_setup_error(error)
        raise


def main(argv: list[str] | None = None) -> None:
    """Console entry point: dispatch to a tool or to LightningCLI."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(HELP)
        return
    if argv[0] == "--version":
        from coadv import __version__

        print(f"coadv {__version__}")
        return
    if argv[0] in TOOLS:
        importlib.import_module(TOOLS[argv[0]][0]).main(argv[1:])
        return
    if argv[0] not in LIGHTNING and not argv[0].startswith("-"):
        valid = ", ".join([*LIGHTNING, *TOOLS])
        raise SystemExit(f"coadv: unknown command {argv[0]!r}; valid commands: {valid}")
    try:
        cli_main(argv)
    except Exception as error:
        from coadv.errors import describe, is_user_error

        if not is_user_error(error) or os.environ.get("COADV_TRACEBACK"):
            raise
        print(f"coadv: error: {describe(error)}  (COADV_TRACEBACK=1 shows the traceback)", file=sys.stderr)
        raise SystemExit(2) from None
