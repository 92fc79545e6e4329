"""A local GPT-2 checkpoint directory as the base of `ws.genai.tune`: config.json, model.safetensors and
tokenizer.json read directly (no transformers, no hub, no remote code) and converted by
keel.genai.checkpoint.lm_from_gpt2.

Why the files are read here and not by transformers' from_pretrained: from_pretrained resolves names
against a hub, may run code the checkpoint ships and loads pickles; reading three named files of bounded
size, the weights only from safetensors, does none of that. A pickled weights file is refused, naming it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keel.errors import InvalidInputError
from keel.refs import parse_ref

if TYPE_CHECKING:
    from keel.genai.lm import TrainedLM

__all__ = ["Checkpoint", "checkpoint_dir", "read_checkpoint"]

WEIGHTS = "model.safetensors"
MAX_CONFIG_BYTES = 1 << 20  # a GPT-2 config.json is about 1 kB
MAX_TOKENIZER_BYTES = 64 << 20  # GPT-2's tokenizer.json is 1.4 MB
MAX_WEIGHTS_BYTES = 8 << 30  # GPT-2 XL in float32 is 6.4 GB
# weight formats that are pickles (or that keel does not read): refused by name, never opened
_REFUSED = ("pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json", "tf_model.h5")


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """A converted checkpoint: where it was read from, the model, and the weights file's SHA-256."""

    path: Path
    lm: TrainedLM
    digest: str  # "sha256:<hex>" of model.safetensors' bytes

    @property
    def ref(self) -> str:
        """How a tuned version's tags name its base: `checkpoint:<directory name>`."""
        return f"checkpoint:{self.path.name}"


def checkpoint_dir(base: str | os.PathLike[str]) -> Path | None:
    """The checkpoint directory `base` names, or None when it is a model reference (NAME[@VERSION|@ALIAS]).

    A Path is always a directory; a string is a reference when it parses as one (so a model named like a
    folder in the working directory stays the model: write ./folder for the folder)."""
    if isinstance(base, str):
        try:
            parse_ref(base)
            return None
        except InvalidInputError:
            pass
    elif not isinstance(base, os.PathLike):
        raise InvalidInputError(f"base must be a model reference or a directory path, got {type(base).__name__}")
    path = Path(base).expanduser()
    if not path.is_dir():
        raise InvalidInputError(
            f"base {str(base)!r} is neither a model reference (NAME, NAME@VERSION, NAME@ALIAS) nor an existing "
            "checkpoint directory (config.json, model.safetensors, tokenizer.json)"
        )
    return path


def _read(path: Path, limit: int) -> bytes:
    if not path.is_file():
        raise InvalidInputError(f"checkpoint directory {path.parent} has no {path.name}")
    size = path.stat().st_size
    if size > limit:
        raise InvalidInputError(f"{path} is {size:,} bytes; at most {limit:,} are read")
    return path.read_bytes()


def _tensors(directory: Path) -> tuple[dict[str, Any], str]:
    weights = directory / WEIGHTS
    if not weights.is_file():
        found = [name for name in _REFUSED if (directory / name).exists()]
        if found:
            raise InvalidInputError(
                f"checkpoint directory {directory} holds {found[0]}, not a single {WEIGHTS}: keel reads weights only "
                f"from one safetensors file (never a pickle); save the model with "
                "save_pretrained(dir, safe_serialization=True, max_shard_size='100GB')"
            )
        raise InvalidInputError(f"checkpoint directory {directory} has no {WEIGHTS}")
    from safetensors.numpy import load

    data = _read(weights, MAX_WEIGHTS_BYTES)
    try:
        tensors = load(data)
    except Exception as exc:  # safetensors raises its own error types (and TypeError for bfloat16)
        raise InvalidInputError(f"{weights} is not a safetensors file NumPy can read ({exc})") from None
    return tensors, "sha256:" + hashlib.sha256(data).hexdigest()


def read_checkpoint(directory: Path) -> Checkpoint:
    """The GPT-2 checkpoint in `directory` as a keel TrainedLM (refusals name the file or the field)."""
    from keel.genai.checkpoint import gpt2_config, lm_from_gpt2

    try:
        config = json.loads(_read(directory / "config.json", MAX_CONFIG_BYTES))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"{directory / 'config.json'} is not valid JSON ({exc})") from None
    try:
        tokenizer_json = _read(directory / "tokenizer.json", MAX_TOKENIZER_BYTES).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInputError(f"{directory / 'tokenizer.json'} is not UTF-8 text") from None
    gpt2_config(config)  # a config keel cannot represent is refused before gigabytes of weights are read
    tensors, digest = _tensors(directory)
    return Checkpoint(directory.resolve(), lm_from_gpt2(config, tensors, tokenizer_json), digest)
