"""The files other frameworks keep their model's settings in, beside the weights, and what kind
of declaration each is.

transformers declares the tie in ``config.json``; Meta's original format and Lingua write a
``params.json`` (Meta's has no flag: the reference code keeps a separate ``output`` layer and
loads strictly; Lingua's says ``model.weight_tying``); torchtitan's model args say
``enable_weight_tying``; Megatron-LM and NeMo keep ``untie_embeddings_and_output_weights`` /
``share_embeddings_and_output_weights`` in their YAML configs. A folder's declaration file is
the first of ``DECLARATION_FILES`` present.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tiecheck.errors import FormatError
from tiecheck.model import ConfigKind

DECLARATION_FILES = ("config.json", "params.json", "model_config.yaml", "config.yaml")
MEGATRON_KEYS = ("untie_embeddings_and_output_weights", "share_embeddings_and_output_weights")
MAX_YAML_BYTES = 4 << 20
META_KEYS = frozenset({"dim", "n_layers", "n_heads", "vocab_size", "norm_eps"})


def classify(name: str, data: dict[str, Any]) -> ConfigKind:
    """Which framework wrote a declaration file, from its name and keys."""
    if name.endswith(".yaml"):
        return ConfigKind.MEGATRON
    if "enable_weight_tying" in data or (
        isinstance(data.get("model"), dict) and "enable_weight_tying" in data["model"]
    ):
        return ConfigKind.TORCHTITAN
    if name == "params.json":
        if isinstance(data.get("model"), dict):
            return ConfigKind.LINGUA
        if META_KEYS & set(data):
            return ConfigKind.META
    return ConfigKind.TRANSFORMERS


def read_yaml_flags(path: Path) -> dict[str, Any]:
    """The Megatron/NeMo tie keys of a YAML file, found line by line (``key: true``), at any
    indentation; nothing else is read. Not a YAML parser on purpose: tiecheck has no YAML
    dependency, and two boolean keys need none. Bounded: the file is read once, up to
    ``MAX_YAML_BYTES``."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_YAML_BYTES + 1)
    except OSError as e:
        raise FormatError(f"cannot read: {e.strerror or e}") from e
    if len(raw) > MAX_YAML_BYTES:
        raise FormatError(f"larger than {MAX_YAML_BYTES:,} bytes; not a model configuration")
    text = raw.decode("utf-8", errors="replace")
    found: dict[str, Any] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition(":")
        if not sep or key not in MEGATRON_KEYS or key in found:
            continue
        value = value.split("#", 1)[0].strip().lower()
        found[key] = {"true": True, "false": False}.get(value, value)
    return found
