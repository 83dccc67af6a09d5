"""The compressed model file: one safetensors file holding, for each compressed matrix NAME, its
pieces as NAME.codes / NAME.scales / NAME.codebook ... (integer payloads stay integers), every
tensor left in float under its own name, and in the header metadata ("forge.compress") what is
needed to rebuild the float model: method, shape and parameters of each compressed matrix, and
which weights are tied to which.

Size figures are read back from the file's own header, so they count exactly the bytes on disk.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import torch

from forge import atomic
from forge.compress.packed import Packed

KEY = "forge.compress"


def save(path: Path, packed: dict[str, Packed], floats: dict[str, torch.Tensor], tied: dict[str, str] | None = None) -> None:
    atomic.write_with(path, lambda tmp: Path(tmp).write_bytes(to_bytes(packed, floats, tied)))


def to_bytes(packed: dict[str, Packed], floats: dict[str, torch.Tensor], tied: dict[str, str] | None = None) -> bytes:
    """The file's exact contents (what `save` writes)."""
    from safetensors.torch import save

    tensors = {f"{name}.{part}": t.contiguous() for name, p in packed.items() for part, t in p.tensors.items()}
    tensors.update({name: t.detach().contiguous() for name, t in floats.items()})
    layers = {name: {"method": p.method, "shape": list(p.shape), "meta": p.meta, "parts": sorted(p.tensors)} for name, p in packed.items()}
    meta = {KEY: json.dumps({"format": 1, "layers": layers, "float": sorted(floats), "tied": tied or {}})}
    return save(tensors, metadata=meta)


def load(path: Path) -> tuple[dict[str, Packed], dict[str, torch.Tensor], dict[str, str]]:
    """(compressed matrices, float tensors, tied weights) as saved."""
    from safetensors.torch import load_file

    spec = _spec(path)
    tensors = load_file(str(path))
    packed = {name: Packed(s["method"], tuple(s["shape"]), {part: tensors[f"{name}.{part}"] for part in s["parts"]}, s["meta"])
              for name, s in spec["layers"].items()}
    return packed, {name: tensors[name] for name in spec["float"]}, spec["tied"]


def state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The float state dict the file stands for: every compressed matrix dequantized, ties restored."""
    packed, floats, tied = load(path)
    state = {**floats, **{name: p.dequantize() for name, p in packed.items()}}
    state.update({name: state[source] for name, source in tied.items()})
    return state


def size_report(path: Path) -> dict[str, Any]:
    """Bits per weight of the compressed matrices (every piece counted), file bits per parameter
    (all parameters, tied ones once), and what stayed in float, from the file's header."""
    header, spec = _header(path), _spec(path)
    nbytes = {k: v["data_offsets"][1] - v["data_offsets"][0] for k, v in header.items() if k != "__metadata__"}
    numel = {k: int(torch.Size(v["shape"]).numel()) for k, v in header.items() if k != "__metadata__"}
    packed_bytes = sum(nbytes[f"{name}.{part}"] for name, s in spec["layers"].items() for part in s["parts"])
    packed_weights = sum(int(torch.Size(s["shape"]).numel()) for s in spec["layers"].values())
    float_params = sum(numel[name] for name in spec["float"])
    size = path.stat().st_size
    return {
        "compressed_bits_per_weight": 8 * packed_bytes / max(1, packed_weights),
        "file_bits_per_parameter": 8 * size / (packed_weights + float_params),
        "file_bytes": size,
        "compressed_weights": packed_weights,
        "float_parameters": float_params,
        "float_tensors": spec["float"],
    }


def _header(path: Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(length))


def _spec(path: Path) -> dict[str, Any]:
    meta = _header(path).get("__metadata__", {})
    if KEY not in meta:
        raise ValueError(f"{path}: not a forge compressed model (no '{KEY}' in its safetensors metadata)")
    return json.loads(meta[KEY])
