"""Hyperparameters that rebuild a module: ``Module.load_from_checkpoint(path)`` with no other argument. The one
rebuild-from-config helper of every LightningModule in the project."""

from __future__ import annotations

import inspect
import pickle
import re
import types
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.core.mixins import HyperparametersMixin
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.parsing import collect_init_args
from torch import nn

from nets.speaker.contract import RecordsInitArgs, config

PLAIN = (type(None), bool, int, float, str)


def is_plain(value: Any) -> bool:
    """Data that a checkpoint stores and ``torch.load(weights_only=True)`` reads back: no live objects."""
    if isinstance(value, (list, tuple)):
        return all(is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_plain(v) for k, v in value.items())
    return isinstance(value, PLAIN)


INSTANTIATOR = "lightning.pytorch.cli.instantiate_module"  # Lightning's trusted rebuild of a CLI-built module


def named(name: str, value: Any) -> Any:
    """``value`` as plain data that names it: plain values as they are, objects recording their ``init_args`` (the
    speaker nets, attacks) as ``class_path`` + ``init_args``, functions by import path (jsonargparse resolves them).
    ``TypeError`` for what cannot be named (a lambda, a net that records no arguments)."""
    if callable(value) and not isinstance(value, (nn.Module, RecordsInitArgs)):
        path = f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', '<?>')}"
        if "<" in path or path.startswith("."):
            raise TypeError(f"{name}: {value!r} has no import path")
        return path
    return config(value)


def save_config(module: L.LightningModule, frame: types.FrameType | None = None) -> None:
    """``save_hyperparameters`` as plain data (``torch.load(weights_only=True)`` reads it back), for every module of
    the project. Call it from the base class ``__init__``: arguments of subclass constructors up the call stack are
    collected too.

    - Built by LightningCLI: the CLI's own config (nets, augmentations, optimizers as ``class_path`` +
      ``init_args``, with Lightning's ``_instantiator``): ``Module.load_from_checkpoint(path)`` rebuilds it alone.
    - Built in Python, every net nameable (:func:`named`): the arguments named the same way and Lightning's
      instantiator recorded, so it rebuilds alone too; a callable that cannot be named (a lambda) is left out with
      a warning and the rebuilt module uses its default.
    - Built in Python with a net that records no arguments (the translation and classifier nets): only the plain
      values are kept; pass the same nets to ``load_from_checkpoint(path, g_ab=...)`` (``check_nets_match`` says
      which when they are missing).
    """
    frame = frame or inspect.currentframe().f_back
    values: dict[str, Any] = {}
    for args in collect_init_args(frame, [], classes=(HyperparametersMixin,)):
        values.update(args)
    # under LightningCLI, save_hyperparameters takes the CLI's config (with `_instantiator`) from its context
    module.save_hyperparameters(ignore=[k for k, v in values.items() if not is_plain(v)], frame=frame)
    if "_instantiator" in module.hparams:  # the CLI gave its config: plain data throughout, keep every argument
        module.save_hyperparameters(frame=frame)
        return
    module.hparams.clear()
    names = {}
    unnamed = []
    for key, value in values.items():
        try:
            names[key] = named(key, value)
        except TypeError as error:
            unnamed.append((key, value, error))
    if any(isinstance(value, nn.Module) for _, value, _ in unnamed):
        module.save_hyperparameters({k: v for k, v in values.items() if is_plain(v)}, frame=frame)
        return
    cls = type(module)
    for key, _, error in unnamed:
        rank_zero_warn(f"{cls.__name__}.{key} is left out of the checkpoint's hyperparameters: {error}")
    module.save_hyperparameters(
        {"_class_path": f"{cls.__module__}.{cls.__qualname__}", **names, "_instantiator": INSTANTIATOR}, frame=frame
    )


def restore_config(module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
    """Keep the config of a CLI-built checkpoint in a module rebuilt from it (``load_from_checkpoint`` builds it
    outside the CLI, so ``save_config`` saw live nets), so that saving the rebuilt module stays self-contained."""
    saved = checkpoint.get("hyper_parameters", {})
    if "_instantiator" in saved and "_instantiator" not in module.hparams:
        module.save_hyperparameters(dict(saved))


def check_nets_match(module: L.LightningModule, checkpoint: dict[str, Any], nets: tuple[str, ...]) -> None:
    """One clear error, before loading, when the checkpoint's ``nets`` are not shaped like the module's."""
    own = module.state_dict()
    state = checkpoint["state_dict"]

    def shapes(tensors: dict[str, Any], net: str) -> dict[str, tuple[int, ...]]:
        return {k: tuple(v.shape) for k, v in tensors.items() if k.startswith(f"{net}.")}

    differ = [net for net in nets if shapes(own, net) != shapes(state, net)]
    if differ:
        name = type(module).__name__
        how = "by LightningCLI" if "_instantiator" in checkpoint.get("hyper_parameters", {}) else "in Python"
        raise ValueError(
            f"the checkpoint's {', '.join(differ)} differ in architecture from the {name} being loaded (the checkpoint "
            f"was written by a module built {how}; nets built in Python are not hyperparameters): pass the trained "
            f"architecture, {name}.load_from_checkpoint(path, {', '.join(f'{net}=...' for net in differ)})"
        )


class UnreadableCheckpoint(ValueError):
    """A checkpoint file that is not a Lightning checkpoint; ``reason`` says why, ``holds_code`` when it pickles
    Python objects (refused unread)."""

    def __init__(self, path: Path, reason: str, holds_code: bool = False) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason
        self.holds_code = holds_code


def read_checkpoint(path: str | Path, what: str = "checkpoint", missing: str = "") -> dict[str, Any]:
    """A Lightning checkpoint as plain data, opened with ``weights_only=True`` (pickled code is refused, never run):
    the one checkpoint reader of the project. ``FileNotFoundError`` naming ``what`` (+ ``missing``) when absent,
    :class:`UnreadableCheckpoint` when it is not a readable checkpoint with a ``state_dict``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist{missing}")
    try:
        checkpoint: Any = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:  # torch's own text advises weights_only=False: never the advice here
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        if found:
            raise UnreadableCheckpoint(
                path, f"it holds pickled Python objects ({found[1]}), refused unread", True
            ) from None
        raise UnreadableCheckpoint(path, "unreadable as a torch checkpoint (not a pickle or zip of tensors)") from None
    except Exception as error:  # zip / EOF errors name no file
        raise UnreadableCheckpoint(path, f"unreadable ({type(error).__name__}: {str(error).splitlines()[0]})") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        found = sorted(map(str, checkpoint))[:6] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise UnreadableCheckpoint(path, f"no state_dict (found {found})")
    return checkpoint
