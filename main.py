"""Entry point: ``python main.py {fit,validate,test,predict} -c configs/<experiment>.yaml``."""

import os
from pathlib import Path

from jsonargparse import set_parsing_settings
from lightning.pytorch.cli import ArgsType, LightningCLI

import callbacks  # noqa: F401  (registers the project's classes for short class_path names)
import datamodules  # noqa: F401
import lightning_modules  # noqa: F401

set_parsing_settings(omegaconf_absolute_to_relative_paths=True)  # "${trainer.x}" works under a subcommand
DEFAULTS = str(Path(__file__).parent / "configs" / "defaults.yaml")


def cli_main(args: ArgsType = None, run: bool = True) -> LightningCLI:
    """Build the CLI (``args=None`` reads ``sys.argv``); returns it so tests and scripts can inspect the run."""
    os.environ.setdefault("WANDB_MODE", "offline")  # W&B stays local unless the user sets WANDB_MODE=online
    return LightningCLI(
        parser_kwargs={
            "parser_mode": "omegaconf+",  # ${...} interpolation resolved after all config sources are merged
            **{sub: {"default_config_files": [DEFAULTS]} for sub in ("fit", "validate", "test", "predict")},
        },
        auto_configure_optimizers=False,  # modules take optimizers as injected OptimizerCallable arguments
        save_config_kwargs={"overwrite": True},  # a second run in the same folder must not abort
        args=args,
        run=run,
    )


if __name__ == "__main__":
    cli_main()
