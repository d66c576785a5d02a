"""Opening a checkpoint file safely: ``torch.load(weights_only=True)`` with an allow-list of the
few types kws checkpoints hold, so that a checkpoint someone shares cannot run code on the machine
that opens it, and errors that name the file and the fix. Importing this module registers the
allow-list with torch, so Lightning's own loading (``fit/test --ckpt_path``, which kws runs with
``weights_only=True``) accepts kws checkpoints and refuses anything else."""

from __future__ import annotations

import collections
import pickle
from pathlib import Path

import torch

# What kws checkpoints hold besides tensors, dicts, lists and numbers (torch's default
# allow-list): nothing of kws itself, only these containers.
SAFE_GLOBALS = [collections.OrderedDict, collections.defaultdict, collections.deque]
torch.serialization.add_safe_globals(SAFE_GLOBALS)

# The data settings a model is tied to (data.features.*): they decide its input features.
FEATURE_KEYS = ("frontend", "sample_rate", "clip_ms", "window_ms", "stride_ms", "num_features")


class CheckpointError(ValueError):
    """A checkpoint or config that cannot be used; the message names the file and the fix."""


def read_checkpoint(path: str | Path, option: str = "") -> dict:
    """The contents of a KWSModule checkpoint written by ``python -m kws fit``, loaded with
    ``weights_only=True``; ``option`` names where the path came from in error messages."""
    option = f"{option}: " if option else ""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"{option}no checkpoint at {path}; pass a checkpoint saved by `python -m kws fit` "
            "(runs/csv/version_N/checkpoints/*.ckpt)"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "Weights only load failed" not in str(err):
            raise CheckpointError(
                f"{option}{path} is not a PyTorch checkpoint ({err}); pass a checkpoint saved by `python -m kws fit`"
            ) from err
        found = (
            str(err).split("Unsupported global: GLOBAL ")[-1].split(" ")[0]
            if "Unsupported global" in str(err)
            else "objects"
        )
        raise CheckpointError(
            f"{option}{path} holds {found}, which is not weights or settings: refused, because loading it "
            "could run code on this machine. Use only checkpoints saved by `python -m kws fit` from a source you trust"
        ) from None
    except Exception as err:  # truncated zip, a text file, a directory ...: torch's errors vary
        raise CheckpointError(
            f"{option}{path} is not a PyTorch checkpoint ({type(err).__name__}: {err}); "
            "pass a checkpoint saved by `python -m kws fit`"
        ) from err
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    if (
        not isinstance(checkpoint, dict)
        or "state_dict" not in checkpoint
        or not isinstance(hparams, dict)
        or not {"labels", "input_shape"} <= set(hparams)
    ):
        found = (
            "a plain state_dict"
            if isinstance(checkpoint, dict) and "state_dict" not in checkpoint
            else "no KWSModule hyperparameters (labels, input_shape)"
        )
        raise CheckpointError(
            f"{option}{path} is not a KWSModule checkpoint ({found}); pass a checkpoint saved by `python -m kws fit`"
        )
    return checkpoint


def check_compatible(
    checkpoint: dict, path: str | Path, labels, input_shape, features: dict | None = None, option: str = ""
) -> None:
    """Refuse a checkpoint whose model was trained for other labels, input shape or front end than
    this run's, naming both; ``features``: this run's data settings (FEATURE_KEYS)."""
    hparams = checkpoint["hyper_parameters"]
    differ = []
    if list(hparams["labels"]) != list(labels):
        differ.append(f"labels {list(hparams['labels'])} (this run: {list(labels)})")
    if tuple(hparams["input_shape"]) != tuple(input_shape):
        differ.append(f"input shape {tuple(hparams['input_shape'])} (this run: {tuple(input_shape)})")
    saved = checkpoint.get("datamodule_hyper_parameters") or {}
    saved = saved.get("features") or saved  # nested (data.features) or, saved before the groups, flat
    for key in FEATURE_KEYS if features else ():
        if key in saved and saved[key] != features[key]:
            differ.append(f"data.features.{key} {saved[key]!r} (this run: {features[key]!r})")
    if differ:
        raise CheckpointError(
            f"{option + ': ' if option else ''}{path} was trained with {', '.join(differ)}; "
            "use the data settings it was trained with, or another checkpoint"
        )
