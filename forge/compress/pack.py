"""Bit-exact packing of small integer codes into uint8 payloads, the on-disk form of every
compressed tensor. Codes are written least-significant bit first, one after another with no
padding between them (3-bit codes straddle bytes), so a payload weighs ceil(count * bits / 8)
bytes: the size a bits/weight figure claims is the size the file has.

Ternary weights have their own packing: five trits per byte (3^5 = 243 <= 256), 1.6 bits each,
the density of llama.cpp's TQ1_0; or 2 bits each through `pack_bits` (bitnet.cpp's I2_S density).
"""

from __future__ import annotations

import numpy as np
import torch

TRITS_PER_BYTE = 5
_POW3 = np.array([1, 3, 9, 27, 81], dtype=np.uint8)


def packed_bytes(count: int, bits: int) -> int:
    return (count * bits + 7) // 8


def pack_bits(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """uint8 payload of `codes` (integers in [0, 2**bits)), `bits` from 1 to 16."""
    if not 1 <= bits <= 16:
        raise ValueError(f"bits={bits}: codes are packed with 1 to 16 bits")
    flat = codes.reshape(-1).to(torch.int64).numpy()
    if flat.size and (flat.min() < 0 or flat.max() >= 1 << bits):
        raise ValueError(f"codes outside [0, {1 << bits}) cannot be packed in {bits} bits")
    planes = ((flat[:, None] >> np.arange(bits)) & 1).astype(np.uint8)
    return torch.from_numpy(np.packbits(planes.reshape(-1), bitorder="little"))


def unpack_bits(payload: torch.Tensor, bits: int, count: int) -> torch.Tensor:
    """The `count` codes `pack_bits` wrote, as int64."""
    planes = np.unpackbits(payload.numpy(), count=count * bits, bitorder="little").reshape(count, bits)
    return torch.from_numpy(planes.astype(np.int64) @ (1 << np.arange(bits, dtype=np.int64)))


def pack_trits(trits: torch.Tensor) -> torch.Tensor:
    """uint8 payload of ternary codes in {0, 1, 2}, five per byte (base 3, first trit lowest)."""
    flat = trits.reshape(-1).to(torch.uint8).numpy()
    if flat.size and flat.max() > 2:
        raise ValueError("trits must be 0, 1 or 2")
    padded = np.zeros(-(-flat.size // TRITS_PER_BYTE) * TRITS_PER_BYTE, dtype=np.uint8)
    padded[: flat.size] = flat
    return torch.from_numpy((padded.reshape(-1, TRITS_PER_BYTE) * _POW3).sum(1, dtype=np.uint8))


def unpack_trits(payload: torch.Tensor, count: int) -> torch.Tensor:
    """The `count` trits `pack_trits` wrote, as int64."""
    values = payload.numpy().astype(np.int64)[:, None] // _POW3.astype(np.int64) % 3
    return torch.from_numpy(values.reshape(-1)[:count].copy())
