"""Compressed formats: packing is bit-exact, reconstruction error behaves, and the sizes reported
are the bytes in the file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from forge.compress import format as cformat
from forge.compress import rtn
from forge.compress.pack import pack_bits, pack_trits, packed_bytes, unpack_bits, unpack_trits


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 7, 8, 10, 12, 16])
def test_bit_packing_round_trips_exactly(bits: int) -> None:
    count = 1001  # not a multiple of 8: codes straddle bytes and the last byte is partial
    codes = torch.randint(0, 1 << bits, (count,), generator=torch.Generator().manual_seed(bits))
    payload = pack_bits(codes, bits)
    assert payload.dtype == torch.uint8 and payload.numel() == packed_bytes(count, bits)
    assert torch.equal(unpack_bits(payload, bits, count), codes)
    with pytest.raises(ValueError, match="cannot be packed"):
        pack_bits(torch.tensor([1 << bits]), bits)


def test_trit_packing_is_five_per_byte_and_exact() -> None:
    trits = torch.randint(0, 3, (1003,), generator=torch.Generator().manual_seed(0))
    payload = pack_trits(trits)
    assert payload.numel() == 201  # ceil(1003 / 5): 1.6 bits per trit
    assert torch.equal(unpack_trits(payload, 1003), trits)
    assert torch.equal(unpack_trits(pack_trits(torch.full((5,), 2)), 5), torch.full((5,), 2)), "242 is the largest byte"


def test_rtn_error_is_within_half_a_step_and_falls_with_bits() -> None:
    w = torch.randn(32, 128, generator=torch.Generator().manual_seed(0))
    errors = []
    for bits in (2, 3, 4, 8):
        p = rtn.quantize(w, bits, group=64)
        back = p.dequantize()
        step = p.tensors["scales"].float().repeat_interleave(64, dim=1)
        assert ((back - w).abs() <= step / 2 + 1e-3 * step + 1e-6).all()
        assert p.bits_per_weight == bits + 32 / 64
        errors.append(float((back - w).pow(2).mean()))
    assert errors == sorted(errors, reverse=True) and errors[-1] < 1e-4


def test_rtn_refuses_a_group_that_does_not_divide_the_width() -> None:
    with pytest.raises(ValueError, match="576 is not a multiple of group=128"):
        rtn.quantize(torch.zeros(4, 576), 4, 128, "q_proj.weight")


def test_compressed_file_reloads_and_reports_its_own_bytes(tmp_path: Path) -> None:
    w1, w2 = torch.randn(64, 128), torch.randn(16, 64)
    packed = {"a.weight": rtn.quantize(w1, 4, 64), "b.weight": rtn.quantize(w2, 3, 64)}
    floats = {"embed.weight": torch.randn(10, 8).half(), "norm.weight": torch.ones(8)}
    path = tmp_path / "model.safetensors"
    cformat.save(path, packed, floats, tied={"head.weight": "embed.weight"})
    state = cformat.state_dict(path)
    assert torch.equal(state["a.weight"], packed["a.weight"].dequantize()) and torch.equal(state["head.weight"], floats["embed.weight"])
    back, _, _ = cformat.load(path)
    assert back["a.weight"].tensors["codes"].dtype == torch.uint8, "payloads are stored as integers"
    report = cformat.size_report(path)
    payload = sum(p.nbytes for p in packed.values())
    assert report["compressed_bits_per_weight"] == pytest.approx(8 * payload / (w1.numel() + w2.numel()))
    assert report["compressed_bits_per_weight"] == pytest.approx((4.5 * w1.numel() + 3.5 * w2.numel()) / (w1.numel() + w2.numel()))
    assert report["file_bytes"] == path.stat().st_size and report["float_tensors"] == ["embed.weight", "norm.weight"]
    assert report["file_bits_per_parameter"] == pytest.approx(8 * path.stat().st_size / (w1.numel() + w2.numel() + 88))
