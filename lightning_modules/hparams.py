"""Hyperparameters that rebuild a module: ``Module.load_from_checkpoint(path)`` with no other argument."""

from __future__ import annotations

import inspect
import types
from typing import Any

import lightning as L
from lightning.pytorch.core.mixins import HyperparametersMixin
from lightning.pytorch.utilities.parsing import collect_init_args

PLAIN = (type(None), bool, int, float, str)


def is_plain(value: Any) -> bool:
    """Data that a checkpoint stores and ``torch.load(weights_only=True)`` reads back: no live objects."""
    if isinstance(value, (list, tuple)):
        return all(is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_plain(v) for k, v in value.items())
    return isinstance(value, PLAIN)


def save_config(module: L.LightningModule, frame: types.FrameType | None = None) -> None:
    """``save_hyperparameters`` for modules whose arguments include nets and optimizer factories.

    Built by LightningCLI, the hyperparameters are the module's config (nets, augmentations and optimizers as
    ``class_path`` + ``init_args``, plus Lightning's ``_class_path`` / ``_instantiator``), so
    ``Module.load_from_checkpoint(path)`` rebuilds the module, nets included, alone. Built in Python, arguments
    holding live objects (an ``nn.Module``, a function) are left out: they do not survive ``weights_only`` loading
    and the weights are in the state dict anyway; pass the same nets to ``load_from_checkpoint(path, g_ab=...)``.
    Call it from the base class ``__init__``: arguments of subclass constructors up the call stack are collected too.
    """
    frame = frame or inspect.currentframe().f_back
    values: dict[str, Any] = {}
    for args in collect_init_args(frame, [], classes=(HyperparametersMixin,)):
        values.update(args)
    module.save_hyperparameters(ignore=[k for k, v in values.items() if not is_plain(v)], frame=frame)
    if "_instantiator" in module.hparams:  # the CLI gave its config: plain data throughout, keep every argument
        module.save_hyperparameters(frame=frame)


def restore_config(module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
    """Keep the config of a CLI-built checkpoint in a module rebuilt from it (``load_from_checkpoint`` builds it
    outside the CLI, so ``save_config`` saw live nets), so that saving the rebuilt module stays self-contained."""
    saved = checkpoint.get("hyper_parameters", {})
    if "_instantiator" in saved and "_instantiator" not in module.hparams:
        module.save_hyperparameters(dict(saved))


def check_nets_match(module: L.LightningModule, checkpoint: dict[str, Any], nets: tuple[str, ...]) -> None:
    """One clear error, before loading, when the checkpoint's ``nets`` are not shaped like the module's."""
    own, state = module.state_dict(), checkpoint["state_dict"]

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
