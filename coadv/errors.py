"""A user's mistake ends in one clear line: the root cause of a config error, and checked ``--ckpt_path`` files."""

from __future__ import annotations

import sys
from argparse import ArgumentError
from pathlib import Path
from typing import Any

import torch

from lightning_modules import hparams

# ckpt_path values Lightning resolves itself (not files)
SPECIAL_CKPT = ("last", "best", "hpc")


class UserError(Exception):
    """A mistake in what the user asked for; ``coadv`` prints its message alone (no traceback)."""


def root_cause(error: BaseException) -> BaseException:
    """The innermost exception of a chain: jsonargparse wraps a constructor's own message in Union/adapt errors."""
    seen = {id(error)}
    while not isinstance(error, UserError) and (inner := _inner(error)) is not None:
        if id(inner) in seen:
            break
        seen.add(id(inner))
        error = inner
    return error


def _inner(error: BaseException) -> BaseException | None:
    """The exception ``error`` was raised from; ``raise ... from None`` hides the context on purpose."""
    if error.__cause__ is not None:
        return error.__cause__
    return None if error.__suppress_context__ else error.__context__


def describe(error: BaseException) -> str:
    """One line: ``<root cause message>`` (the exception type only when the message alone would be unclear)."""
    cause = root_cause(error)
    text = " ".join(str(cause).split()) or type(cause).__name__
    return text if isinstance(cause, (ValueError, FileNotFoundError, UserError)) else f"{type(cause).__name__}: {text}"


def read_ckpt_path(path: str | Path) -> dict[str, Any]:
    """A ``--ckpt_path`` file as :func:`lightning_modules.hparams.read_checkpoint` reads it, its refusals as
    ``UserError`` (one line)."""
    try:
        return hparams.read_checkpoint(path)
    except FileNotFoundError:
        raise UserError(f"checkpoint {str(path)!r} does not exist") from None
    except hparams.UnreadableCheckpoint as error:
        if error.reason.startswith("no state_dict"):
            raise UserError(f"checkpoint {str(path)!r} is not a Lightning checkpoint ({error.reason})") from None
        raise UserError(
            f"checkpoint {str(path)!r} is not a readable PyTorch checkpoint: corrupt, truncated, or another kind of "
            f"file ({error.reason}; read safely, weights_only=True)"
        ) from None


def class_name(class_path: object) -> str:
    """The class name of a ``module.Class`` path."""
    return str(class_path).rsplit(".", 1)[-1]


def check_checkpoint(path: str | Path, expected_class_path: str, model: torch.nn.Module | None = None) -> dict:
    """The ``--ckpt_path`` checkpoint; refused when ``read_ckpt_path`` refuses it, when another model class
    saved it, or when its weights do not belong to ``model``."""
    checkpoint = read_ckpt_path(path)
    saved = (checkpoint.get("hyper_parameters") or {}).get("_class_path")
    if saved and class_name(saved) != class_name(expected_class_path):
        raise UserError(f"checkpoint {str(path)!r} was saved by {saved}; this run builds {expected_class_path}")
    if model is not None:
        own = set(model.state_dict())
        theirs = set(checkpoint["state_dict"])
        if own and not own & theirs:
            raise UserError(
                f"checkpoint {str(path)!r} does not fit {expected_class_path}: none of its {len(theirs)} weights "
                f"(e.g. {sorted(theirs)[:2]}) belong to this model (e.g. {sorted(own)[:2]})"
            )
    return checkpoint


def summarize_parse_error(message: str) -> str:
    """jsonargparse's multi-line parse error as one line: the key, why the value was refused, the value.

    >>> summarize_parse_error('Parser key "trainer.max_epochs":\\n  Does not validate against any of the Union '
    ...     "subtypes\\n  Subtypes: [int, NoneType]\\n  Errors:\\n    - Expected a <class 'int'>\\n"
    ...     "    - Expected a <class 'NoneType'>\\n  Given value type: <class 'str'>\\n  Given value: abc")
    "trainer.max_epochs: Expected a <class 'int'> (given: abc)"
    """
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    if not lines:
        return "invalid arguments"
    reasons: list[str] = []
    for line in lines[1:]:
        if line.startswith("- "):
            reasons.append(line[2:])
        elif reasons and not line.startswith(("Given value", "Subtypes:", "Errors:")):
            reasons[-1] = f"{reasons[-1].rstrip(':')}: {line}"
    if not reasons:
        return " ".join(lines)
    # "Expected NoneType" is the Optional[...] alternative, never what a user meant
    useful = [r for r in reasons if "NoneType" not in r] or reasons
    given = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("Given value:")), None)
    head = lines[0].removeprefix("Parser key ").rstrip(":").strip('"')
    return f"{head}: {'; '.join(dict.fromkeys(useful))}" + (f" (given: {given})" if given else "")


CONFIG_ERROR = "_coadv_config_error"  # set on exceptions raised while the config is turned into objects


def is_user_error(error: BaseException) -> bool:
    return isinstance(error, UserError) or getattr(error, CONFIG_ERROR, False)


class FriendlyErrors:
    """LightningCLI mixin (public hooks only): marks errors raised while building objects from the config (the
    console prints their root cause alone) and refuses a bad ``--ckpt_path`` before Lightning's loader would.
    Errors of ``setup`` hooks are marked by :func:`mark_setup_error` around the run. Python callers still get the
    original exception."""

    def init_parser(self, **kwargs: Any):
        parser = super().init_parser(**kwargs)  # type: ignore[misc]
        parser.exit_on_error = False  # parse errors come back here, to be printed on one line
        return parser

    def parse_arguments(self, parser: Any, args: Any) -> None:
        try:
            super().parse_arguments(parser, args)  # type: ignore[misc]
        except ArgumentError as error:
            print(f"coadv: error: {summarize_parse_error(str(error))}", file=sys.stderr)
            raise SystemExit(2) from error
        self.check_ckpt_path(parser)

    def user_ckpt_path(self) -> str | None:
        """The ``--ckpt_path`` file the user named (``None`` for none and for the values Lightning resolves)."""
        subcommand = self.config.get("subcommand")  # type: ignore[attr-defined]
        path = subcommand and self.config[subcommand].get("ckpt_path")  # type: ignore[attr-defined]
        special = not path or str(path) in SPECIAL_CKPT or str(path).startswith("registry:")
        return None if special else str(path)

    def check_ckpt_path(self, parser: Any) -> None:
        """Lightning next reads the file to take the model's hyperparameters from it: the file must be a checkpoint
        of the configured class whose hyperparameters parse (checked here, with the parser's public API)."""
        if (path := self.user_ckpt_path()) is None:
            return
        subcommand = self.config["subcommand"]  # type: ignore[attr-defined]
        expected = getattr(self.config[subcommand].get("model"), "class_path", None) or "the configured model"  # type: ignore[attr-defined]
        hparams = dict(check_checkpoint(path, expected).get("hyper_parameters") or {})
        hparams.pop("_instantiator", None)
        if "_class_path" in hparams:
            hparams = {"class_path": hparams.pop("_class_path"), "dict_kwargs": hparams}
        if not hparams:
            return
        try:
            parser.parse_object({subcommand: {"model": hparams}}, self.config)  # type: ignore[attr-defined]
        except ArgumentError as error:
            summary = summarize_parse_error(str(error))
            raise UserError(
                f"checkpoint {path!r} does not fit {expected}: its hyperparameters give {summary}"
            ) from error

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()  # type: ignore[misc]
        except Exception as error:
            setattr(error, CONFIG_ERROR, True)
            raise
        if (path := self.user_ckpt_path()) is not None:
            model = self.model  # type: ignore[attr-defined]
            check_checkpoint(path, f"{type(model).__module__}.{type(model).__name__}", model)


def mark_setup_error(error: BaseException) -> None:
    """Mark an error of a ``setup`` / ``prepare_data`` hook (data or a victim file missing: what the config points
    at, not a bug) so that the console prints its root cause alone."""
    if isinstance(error, SETUP_ERRORS) and raised_in_setup(error):
        setattr(error, CONFIG_ERROR, True)


SETUP_ERRORS = (FileNotFoundError, ValueError, ImportError)
SETUP_HOOKS = ("setup", "prepare_data")
PROJECT_PACKAGES = ("lightning_modules", "datamodules", "callbacks", "nets")


def raised_in_setup(error: BaseException) -> bool:
    """Whether ``error`` came out of a ``setup`` / ``prepare_data`` hook of the project's own modules, data
    modules or callbacks (where files named by the config are opened); such errors explain themselves."""
    frames = []
    tb = error.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code)
        tb = tb.tb_next
    return any(
        code.co_name in SETUP_HOOKS and Path(code.co_filename).parent.name in PROJECT_PACKAGES for code in frames
    )
