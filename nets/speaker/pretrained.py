"""Pretrained public speaker models behind the victim contract, loaded offline from a local folder.

``SpeechBrainECAPA`` reads SpeechBrain's ECAPA-TDNN (``speechbrain/spkrec-ecapa-voxceleb``) in its published layout
and reproduces ``EncoderClassifier.encode_batch``: Fbank (SpeechBrain's own module) -> sentence mean normalisation
-> ECAPA-TDNN, all inside the graph so gradients reach the waveform.

Nothing in the folder can run code: ``hyperparams.yaml`` is read as plain data (its HyperPyYAML tags are never
executed; only the allow-listed SpeechBrain classes below are built from it) and checkpoints are read with
``torch.load(weights_only=True)``, which refuses any pickle that would call a function.
"""

from __future__ import annotations

import inspect
import re
import warnings
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor, nn

from nets.speaker.encoders import SpeakerEncoder

INSTALL_HINT = "pip install 'coadv[speechbrain]' (or pip install speechbrain==1.1.2)"
FBANK = "speechbrain.lobes.features.Fbank"
NORM = "speechbrain.processing.features.InputNormalization"
ECAPA = "speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN"
_REF = re.compile(r"<([A-Za-z_][\w]*)>")


def load_weights(path: Path) -> Any:
    """``torch.load(path, weights_only=True)`` on CPU; a file that is missing or would run code is a clear error."""
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # UnpicklingError and friends: weights_only refused the file's content
        raise ValueError(
            f"{path}: refused to load: not a plain tensor checkpoint (torch.load weights_only=True said: "
            f"{str(error).splitlines()[0]}). A downloaded model file is never unpickled with code execution."
        ) from error


class _Tag:
    """A HyperPyYAML tagged node (``!new:...``, ``!ref``, ``!name:...``) kept as data, never executed."""

    def __init__(self, tag: str, value: Any) -> None:
        self.tag = tag
        self.value = value

    def __repr__(self) -> str:
        return f"!{self.tag} {self.value!r}"


class _DataLoader(yaml.SafeLoader):
    """PyYAML's safe loader plus: any ``!tag`` becomes a ``_Tag`` (HyperPyYAML would import and call it)."""


def _tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> _Tag:
    if isinstance(node, yaml.MappingNode):
        return _Tag(suffix, loader.construct_mapping(node, deep=True))
    if isinstance(node, yaml.SequenceNode):
        return _Tag(suffix, loader.construct_sequence(node, deep=True))
    return _Tag(suffix, loader.construct_scalar(node))


_DataLoader.add_multi_constructor("!", _tagged)


def read_hyperparams(path: Path) -> dict[str, Any]:
    """``hyperparams.yaml`` as data (tags kept as ``_Tag``); unreadable files are errors naming the file."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        data = yaml.load(path.read_text(), Loader=_DataLoader)  # a SafeLoader subclass: tags stay inert data
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML: {error}") from error
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of hyperparameters, got {type(data).__name__}")
    return data


def _ref(text: str, hp: dict[str, Any], where: str) -> Any:
    """``<key>`` -> that key's value; ``<a>/<b>`` -> string interpolation of string values; nothing else."""
    keys = _REF.findall(text)
    if any(k not in hp for k in keys):
        raise ValueError(f"{where}: !ref {text} names a key that is not at the top level")
    whole = _REF.fullmatch(text.strip())
    if whole:
        return _resolve(hp[whole.group(1)], hp, where)
    parts = {k: _resolve(hp[k], hp, where) for k in keys}
    if not keys or not all(isinstance(v, str) for v in parts.values()):
        raise ValueError(f"{where}: !ref {text}: only <key> or string interpolation is supported (no arithmetic)")
    return _REF.sub(lambda m: parts[m.group(1)], text)


def _resolve(value: Any, hp: dict[str, Any], where: str) -> Any:
    """Resolve ``!ref`` against top-level keys and ``!name:torch.nn.X`` to the class; refuse every other tag."""
    if isinstance(value, list):
        return [_resolve(v, hp, where) for v in value]
    if not isinstance(value, _Tag):
        return value
    if value.tag == "ref" and isinstance(value.value, str):
        return _ref(value.value, hp, where)
    if value.tag.startswith("name:torch.nn."):
        cls = getattr(nn, value.tag.removeprefix("name:torch.nn."), None)
        if isinstance(cls, type) and issubclass(cls, nn.Module):
            return cls
    raise ValueError(f"{where}: {value!r} is not supported here (only !ref <key> and !name:torch.nn.<Module>)")


def _section(hp: dict[str, Any], key: str, class_path: str, file: Path) -> dict[str, Any]:
    """Keyword arguments of ``key: !new:<class_path>``, references resolved."""
    node = hp.get(key)
    if not isinstance(node, _Tag) or node.tag != f"new:{class_path}":
        raise ValueError(f"{file}: key {key!r} must be '!new:{class_path}', got {node!r}")
    kwargs = node.value if node.value not in (None, "") else {}
    if not isinstance(kwargs, dict):
        raise ValueError(f"{file}: key {key!r}: expected keyword arguments (a mapping), got {kwargs!r}")
    return {k: _resolve(v, hp, f"{file}: {key}.{k}") for k, v in kwargs.items()}


def _build(cls: type, kwargs: dict[str, Any], where: str) -> tuple[nn.Module, inspect.BoundArguments]:
    try:
        bound = inspect.signature(cls).bind(**kwargs)
    except TypeError as error:
        raise ValueError(f"{where}: {error}") from error
    bound.apply_defaults()
    return cls(**kwargs), bound


def _speechbrain() -> dict[str, Any]:
    """SpeechBrain's classes, or an ImportError saying how to install the optional extra."""
    try:
        from speechbrain.lobes.features import Fbank
        from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
        from speechbrain.processing.features import InputNormalization
        from speechbrain.utils.checkpoints import hook_on_loading_state_dict_checkpoint
    except ImportError as error:
        raise ImportError(f"SpeechBrainECAPA needs SpeechBrain, which is not installed: {INSTALL_HINT}") from error
    return {FBANK: Fbank, NORM: InputNormalization, ECAPA: ECAPA_TDNN, "hook": hook_on_loading_state_dict_checkpoint}


class _SentenceNormFbank(nn.Module):
    """SpeechBrain's ``compute_features`` then ``mean_var_norm`` (waveform ``[B, T]`` -> features ``[B, frames, F]``)."""

    def __init__(self, fbank: nn.Module, norm: nn.Module) -> None:
        super().__init__()
        self.fbank = fbank
        self.norm = norm

    def forward(self, wave: Tensor) -> Tensor:
        return self.norm(self.fbank(wave.float()))  # every row is a whole utterance: relative length 1


class SpeechBrainECAPA(SpeakerEncoder):
    """SpeechBrain's pretrained ECAPA-TDNN from a local folder in the layout of ``speechbrain/spkrec-ecapa-voxceleb``
    (``hyperparams.yaml``, ``embedding_model.ckpt``, ``mean_var_norm_emb.ckpt``; ``classifier.ckpt`` and
    ``label_encoder.txt`` are not used). ``embed`` equals ``EncoderClassifier.encode_batch(wave)[:, 0]``, and
    ``score`` is the cosine of SpeechBrain's ``verify_batch``; the model is built in eval mode, as SpeechBrain's.

    The architecture (Fbank, normalisation and ECAPA-TDNN arguments) is read from ``hyperparams.yaml``, which is
    never executed. Needs the optional extra: ``pip install 'coadv[speechbrain]'``.

    Args:
        source: the local model folder (downloaded once, e.g. ``huggingface-cli download
            speechbrain/spkrec-ecapa-voxceleb --local-dir <folder>``); nothing is ever fetched from the network.
        normalize: subtract the global embedding mean of ``mean_var_norm_emb.ckpt`` (``encode_batch(...,
            normalize=True)``); off by default, as in SpeechBrain's ``verify_batch``.
    """

    def __init__(self, source: str, normalize: bool = False) -> None:
        super().__init__()
        classes = _speechbrain()
        folder = Path(source).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(
                f"SpeechBrain model folder {folder} does not exist: download speechbrain/spkrec-ecapa-voxceleb "
                "(hyperparams.yaml, embedding_model.ckpt, mean_var_norm_emb.ckpt) into it"
            )
        file = folder / "hyperparams.yaml"
        hp = read_hyperparams(file)
        fbank_args = _section(hp, "compute_features", FBANK, file)
        if fbank_args.get("sample_rate", 16000) != 16000:
            raise ValueError(f"{file}: compute_features.sample_rate={fbank_args['sample_rate']}; victims take 16 kHz")
        norm_args = _section(hp, "mean_var_norm", NORM, file)
        if norm_args.get("norm_type", "global") != "sentence":
            raise ValueError(f"{file}: mean_var_norm.norm_type must be 'sentence' (per-utterance statistics)")
        fbank, _ = _build(classes[FBANK], fbank_args, f"{file}: compute_features")
        norm, _ = _build(classes[NORM], norm_args, f"{file}: mean_var_norm")
        self.frontend = _SentenceNormFbank(fbank, norm)
        self.embedding_model, bound = _build(
            classes[ECAPA], _section(hp, "embedding_model", ECAPA, file), f"{file}: embedding_model"
        )
        self.embedding_dim = int(bound.arguments["lin_neurons"])
        self._load_embedding_model(folder / "embedding_model.ckpt", classes["hook"])
        self.normalize = normalize
        self.register_buffer("embedding_mean", torch.zeros(self.embedding_dim))
        if normalize:
            self.embedding_mean.copy_(self._read_embedding_mean(folder / "mean_var_norm_emb.ckpt"))
        self.eval()

    def _load_embedding_model(self, path: Path, hook) -> None:
        state = load_weights(path)
        if not isinstance(state, dict):
            raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
        try:
            result = self.embedding_model.load_state_dict(hook(state), strict=False)  # SpeechBrain's key renames
        except RuntimeError as error:  # shape mismatches
            raise ValueError(f"{path}: does not fit the ECAPA-TDNN of hyperparams.yaml: {error}") from error
        missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
        if missing:
            raise ValueError(f"{path}: does not fit the ECAPA-TDNN of hyperparams.yaml; missing {missing[:5]}")
        if result.unexpected_keys:  # SpeechBrain's Pretrainer also only warns here
            warnings.warn(f"{path}: ignored keys {result.unexpected_keys[:5]}", stacklevel=3)

    def _read_embedding_mean(self, path: Path) -> Tensor:
        stats = load_weights(path)
        mean = stats.get("glob_mean") if isinstance(stats, dict) else None
        if not isinstance(mean, Tensor) or mean.numel() != self.embedding_dim:
            raise ValueError(f"{path}: expected 'glob_mean' with {self.embedding_dim} values (InputNormalization)")
        return mean.reshape(-1).float()

    def encode(self, feats: Tensor) -> Tensor:
        emb = self.embedding_model(feats)[:, 0]  # ECAPA_TDNN returns [B, 1, D]
        return emb - self.embedding_mean if self.normalize else emb
