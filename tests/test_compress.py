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


def test_compressed_tiny_model_reloads_with_the_same_logits(tmp_path: Path) -> None:
    from forge.compress.rtn import RTN
    from forge.models.transformer import Transformer

    torch.manual_seed(0)
    model = Transformer(vocab_size=20, max_len=16, d_model=32, n_layers=2, n_heads=4, d_ff=64).eval()
    packed, floats, tied = RTN(bits=4, group=16).compress(model)
    assert sorted(packed) == [f"blocks.{i}.{m}.weight" for i in range(2) for m in ("ff.0", "ff.2", "proj", "qkv")]
    assert "head.weight" in floats and "embed.weight" in floats and not tied, "the head and embeddings stay float"
    path = tmp_path / "model.safetensors"
    cformat.save(path, packed, floats, tied)

    in_memory = Transformer(vocab_size=20, max_len=16, d_model=32, n_layers=2, n_heads=4, d_ff=64).eval()
    in_memory.load_state_dict({**{k: v.float() for k, v in floats.items()}, **{k: p.dequantize() for k, p in packed.items()}})
    reloaded = Transformer(vocab_size=20, max_len=16, d_model=32, n_layers=2, n_heads=4, d_ff=64).eval()
    reloaded.load_state_dict({k: v.float() for k, v in cformat.state_dict(path).items()})
    tokens = torch.randint(0, 20, (3, 16))
    with torch.no_grad():
        assert torch.equal(in_memory(tokens), reloaded(tokens))
        assert not torch.equal(model(tokens), reloaded(tokens)), "4-bit weights do change the model"


@pytest.mark.parametrize("method", ["rtn", "vptq"])
def test_tuning_lowers_kl_on_held_out_tokens_and_keeps_codes_and_size(method: str, tmp_path: Path) -> None:
    from forge.compress.quality import agreement
    from forge.compress.rtn import RTN
    from forge.compress.vptq import VPTQ
    from forge.models.transformer import Transformer

    torch.manual_seed(0)
    model = Transformer(vocab_size=20, max_len=16, d_model=32, n_layers=2, n_heads=4, d_ff=64).eval()
    with torch.no_grad():  # larger weights than at initialisation: peaked outputs that rounding moves
        for p in model.parameters():
            p.mul_(4 if p.dim() == 2 else 1)
    calib, held_out = [{"inputs": torch.randint(0, 20, (8, 16))} for _ in range(4)], torch.randint(0, 20, (16, 16))
    forward = lambda m, batch: m(batch["inputs"])  # noqa: E731
    make = {"rtn": lambda steps: RTN(bits=2, group=16, tune_steps=steps, tune_lr=1e-3),
            "vptq": lambda steps: VPTQ(vector_length=4, codebook_size=16, kmeans_iters=8, tune_steps=steps, tune_lr=1e-3)}[method]
    files, kl = {}, {}
    for steps in (0, 40):
        compressor = make(steps)
        packed, floats, tied = compressor.run(model, iter(calib), forward)
        files[steps] = tmp_path / f"{steps}.safetensors"
        cformat.save(files[steps], packed, floats, tied)
        copy = Transformer(vocab_size=20, max_len=16, d_model=32, n_layers=2, n_heads=4, d_ff=64).eval()
        copy.load_state_dict({k: v.float() for k, v in cformat.state_dict(files[steps]).items()})
        with torch.no_grad():
            kl[steps] = agreement([(model(held_out).flatten(0, 1), copy(held_out).flatten(0, 1))])["kl"]
    curve = compressor.notes["tune_kl"]
    assert len(curve) == 40 and curve[-1] < curve[0]
    assert kl[40] < 0.7 * kl[0], kl
    assert files[0].stat().st_size == files[40].stat().st_size, "tuning changes values, not what is stored"
    before, after = cformat.load(files[0])[0], cformat.load(files[40])[0]
    for name, p in before.items():
        for key, t in p.tensors.items():
            assert torch.equal(t, after[name].tensors[key]) != t.is_floating_point(), f"{name}.{key}: codes fixed, floats tuned"


def test_rtn_target_size_picks_the_widest_bits_whose_file_fits() -> None:
    from forge.compress.rtn import RTN
    from forge.errors import ForgeError
    from forge.models.transformer import Transformer

    model = Transformer(vocab_size=20, max_len=16, d_model=32, n_layers=2, n_heads=4, d_ff=64).eval()
    size = {bits: len(cformat.to_bytes(*RTN(bits=bits, group=16).compress(model))) for bits in (8, 4, 3, 2)}
    assert size[8] > size[4] > size[3] > size[2]
    compressor = RTN(group=16, target_size_mb=(size[3] + 1) / 1e6)
    packed, floats, tied = compressor.compress(model)
    assert compressor.notes["bits"] == 3 and len(cformat.to_bytes(packed, floats, tied)) == size[3]
    with pytest.raises(ForgeError, match="target_size_mb=.*even int2 at group 16"):
        RTN(group=16, target_size_mb=(size[2] - 1) / 1e6).compress(model)


def test_tied_weights_are_stored_once(tiny_lm: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    from forge.compress.rtn import RTN

    lm = AutoModelForCausalLM.from_pretrained(str(tiny_lm)).eval()
    lm.tie_weights()
    packed, floats, tied = RTN(bits=8, group=32).compress(lm)
    assert tied == {"lm_head.weight": "model.embed_tokens.weight"}, "the tied head is stored once, as the embedding"
    assert len(packed) == 14 and all(k.endswith("proj.weight") for k in packed), sorted(packed)
    path = tmp_path / "model.safetensors"
    cformat.save(path, packed, floats, tied)
    state = cformat.state_dict(path)
    assert state["lm_head.weight"] is state["model.embed_tokens.weight"]


def test_rtn_stage_writes_the_packed_model_and_evaluate_compares_it(tmp_path: Path, cache: Path) -> None:
    import json

    from conftest import run_in_process, tiny

    run = tmp_path / "run"
    run_in_process(*tiny(cache), "compressor=rtn", "compressor.bits=8", "compressor.group=16", run_dir=run)
    report = json.loads((run / "compressed" / "compress.json").read_text())
    assert report["compressed_bits_per_weight"] == 8 + 32 / 16 and report["file_bytes"] == (run / "compressed" / "model.safetensors").stat().st_size
    assert "head.weight" in report["float_tensors"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["compressed/bits_per_weight"] == report["compressed_bits_per_weight"]
    assert metrics["compressed/top1_agreement"] > 0.99 and abs(metrics["compressed/kl"]) < 1e-3, "int8 barely moves the model"
    assert abs(metrics["compressed/test/loss"] - metrics["test/loss"]) < 0.01

    vq = ["compressor=vptq", "compressor.codebook_size=16", "compressor.calibration_batches=2", "compressor.tune_steps=3"]
    for stage in ("compress", "evaluate"):  # the same trained model, compressed again another way
        run_in_process(*tiny(cache), *vq, f"stage={stage}", run_dir=run)
    assert len(json.loads((run / "compressed" / "compress.json").read_text())["tune_kl"]) == 3
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["compressed/method"] == "vptq" and metrics["compressed/bits_per_weight"] < 2.5
    assert metrics["compressed/top1_agreement"] > 0.5 and metrics["compressed/kl"] > 0


def test_bitlinear_forward_is_the_reference_formula_and_gradients_pass_straight_through() -> None:
    from forge.compress.bitnet import BitLinear

    torch.manual_seed(0)
    layer = BitLinear(8, 4)
    x = torch.randn(3, 8, requires_grad=True)
    y = layer(x)

    xn = x.detach() / torch.sqrt(x.detach().pow(2).mean(-1, keepdim=True) + 1e-6)
    s = 127 / xn.abs().amax(-1, keepdim=True)
    xq = (xn * s).round().clamp(-128, 127) / s
    gamma = layer.weight.detach().abs().mean()
    wq = (layer.weight.detach() / gamma).round().clamp(-1, 1) * gamma
    torch.testing.assert_close(y, xq @ wq.T + layer.bias.detach(), rtol=0, atol=1e-6)
    assert set((wq / gamma).round().unique().tolist()) <= {-1.0, 0.0, 1.0}

    y.sum().backward()
    torch.testing.assert_close(layer.weight.grad, xq.sum(0).expand(4, 8), rtol=0, atol=1e-6)
    assert x.grad is not None and x.grad.abs().sum() > 0, "the input gets a gradient through the quantizers"


@pytest.mark.parametrize("packing, bits", [("trits", 1.6), ("2bit", 2.0)])
def test_bitnet_packs_ternary_weights_exactly(packing: str, bits: float) -> None:
    from forge.compress.bitnet import BitNet, ternarize

    w = torch.randn(64, 320)
    p = BitNet(packing=packing).quantize(w, "w")
    codes, scale = ternarize(w)
    assert torch.equal(p.dequantize(), codes * scale)
    assert p.bits_per_weight == pytest.approx(bits + 32 / w.numel())


def test_bitnet_qat_trains_in_and_reloads_exactly(tmp_path: Path, cache: Path) -> None:
    import json

    from conftest import run_in_process, tiny

    run = tmp_path / "run"
    run_in_process(*tiny(cache), "compressor=bitnet", run_dir=run)
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["hyper_parameters"]["compressor_cfg"]["_target_"] == "forge.compress.bitnet.BitNet"
    from forge.compress.bitnet import BitLinear
    from forge.train.module import load_checkpoint

    trained = load_checkpoint(str(run / "checkpoints" / "last.ckpt")).model
    assert any(isinstance(m, BitLinear) for m in trained.modules()), "the model trained with BitLinear layers"
    assert not isinstance(trained.head, BitLinear), "the output head stays float (compressor.skip)"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["compressed/bits_per_weight"] < 1.7
    assert metrics["compressed/top1_agreement"] > 0.99, "the packed model computes what the trained one did (float16 norms aside)"
    assert abs(metrics["compressed/test/exact_match"] - metrics["test/exact_match"]) <= 0.02
    exported = run / "model" / "model.safetensors"
    assert exported.read_bytes() == (run / "compressed" / "model.safetensors").read_bytes(), "export ships the packed file"
    from forge.export.safetensors import load_exported

    assert any(isinstance(m, BitLinear) and m.prequantized for m in load_exported(run / "model").modules())


def _low_rank_plus_noise() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(64, 8, generator=g) @ torch.randn(8, 256, generator=g) / 3 + 0.1 * torch.randn(64, 256, generator=g)
    x = torch.randn(2048, 16, generator=g) @ torch.randn(16, 256, generator=g) + 0.3 * torch.randn(2048, 256, generator=g)
    return w, 2 * x.T.double() @ x.double() / len(x)


def _output_error(w: torch.Tensor, q: torch.Tensor, h: torch.Tensor) -> float:
    """Relative error of the layer's outputs on the calibration inputs: tr(D H D^T) / tr(W H W^T)."""
    d, w = (w - q).double(), w.double()
    return float(torch.trace(d @ h @ d.T) / torch.trace(w @ h @ w.T))


def test_vptq_error_falls_with_codebook_size_and_beats_rtn_at_fewer_bits() -> None:
    from forge.compress import vptq

    w, h = _low_rank_plus_noise()
    packed = [vptq.quantize(w, h, v=4, k=k, iters=8) for k in (16, 64, 256)]
    errors = [_output_error(w, p.dequantize(), h) for p in packed]
    assert errors == sorted(errors, reverse=True), errors
    rows = 16 / 256  # one float16 scale per output row
    assert packed[-1].bits_per_weight == pytest.approx(2 + 256 * 4 * 16 / w.numel() + rows), "the codebook is counted"
    small = packed[1]  # 64 entries: 1.5 bits of index + 0.25 of codebook on this 16k-weight matrix
    int2, int3 = rtn.quantize(w, 2, 64), rtn.quantize(w, 3, 64)
    assert small.bits_per_weight == 1.75 + rows < int2.bits_per_weight
    assert errors[1] < _output_error(w, int3.dequantize(), h) < _output_error(w, int2.dequantize(), h)
    plain = vptq.quantize(w, torch.eye(256, dtype=torch.double), v=4, k=64, iters=8).dequantize()
    assert (plain - w).pow(2).mean() < (int2.dequantize() - w).pow(2).mean(), "fewer bits, lower plain error too"


def test_vptq_residual_and_outlier_codebooks_reload_exactly(tmp_path: Path) -> None:
    from forge.compress import vptq

    w, h = _low_rank_plus_noise()
    base = vptq.quantize(w, h, v=4, k=64, iters=8)
    full = vptq.quantize(w, h, v=4, k=64, residual_k=16, outlier_fraction=0.05, outlier_k=32, iters=8)
    assert full.meta["outliers"] == 13 and set(full.tensors) >= {"residual_index", "outlier_columns", "outlier_codebook"}
    assert _output_error(w, full.dequantize(), h) < _output_error(w, base.dequantize(), h)
    path = tmp_path / "m.safetensors"
    cformat.save(path, {"w": full}, {})
    assert torch.equal(cformat.state_dict(path)["w"], full.dequantize())
    assert cformat.size_report(path)["compressed_bits_per_weight"] == pytest.approx(full.bits_per_weight)


def test_text_perplexity_and_bits_per_byte_follow_their_definitions(tiny_lm: Path) -> None:
    import math

    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from forge.eval.text import log_probs, perplexity, windows

    tok = AutoTokenizer.from_pretrained(str(tiny_lm))
    lm = AutoModelForCausalLM.from_pretrained(str(tiny_lm)).eval()
    text = "def add(a, b):\n    return a + b\n" * 20
    rows, scored_bytes = windows(tok, text, 16, limit=3)
    assert rows.shape == (3, 16) and 0 < scored_bytes < len(text)
    with torch.no_grad():
        logp = F.log_softmax(lm(input_ids=rows).logits[:, :-1], -1).gather(-1, rows[:, 1:, None])
    got = perplexity(lm, rows, scored_bytes, batch_size=2, reference=log_probs(lm, rows, batch_size=2))
    assert got["tokens"] == 45 and got["perplexity"] == pytest.approx(math.exp(-logp.mean().item()), rel=1e-5)
    assert got["bits_per_byte"] == pytest.approx(-logp.sum().item() / math.log(2) / scored_bytes, rel=1e-5)
    assert got["top1_agreement"] == 1.0 and abs(got["kl"]) < 1e-6, "a model agrees with itself"


def test_bitnet_qat_fine_tune_of_a_causal_lm_exports_the_packed_model(tmp_path: Path, cache: Path, tiny_lm: Path) -> None:
    import json

    from conftest import run_in_process
    from test_llm import lm_args

    from forge.compress.bitnet import BitLinear
    from forge.export.hf import load_compressed_lm

    run = tmp_path / "run"
    args = [a for a in lm_args(tiny_lm, cache, "compressor=bitnet", "export=hf") if not a.startswith("peft")]
    run_in_process(*args, "peft=none", run_dir=run)
    metrics = json.loads((run / "metrics.json").read_text())
    # Not exactly 1: what stays float is stored as float16, which flips near-ties of a random tiny model.
    assert metrics["compressed/bits_per_weight"] < 1.7 and metrics["compressed/top1_agreement"] > 0.95
    assert metrics["compressed/test/loss"] == pytest.approx(metrics["test/loss"], abs=1e-3), "the packed model is the trained one"
    exported = run / "model" / "compressed"
    assert json.loads((run / "model" / "export.json").read_text())["compressed_max_logit_diff"] == 0.0
    model = load_compressed_lm(exported)
    assert sum(isinstance(m, BitLinear) for m in model.modules()) == 14


def test_vptq_with_tuning_compresses_a_lora_llm_and_export_reloads_it(tmp_path: Path, cache: Path, tiny_lm: Path) -> None:
    import json

    from conftest import run_in_process
    from test_llm import lm_args

    run = tmp_path / "run"
    vq = ["compressor=vptq", "compressor.codebook_size=16", "compressor.calibration_batches=2", "compressor.tune_steps=2"]
    run_in_process(*lm_args(tiny_lm, cache, *vq, "export=hf"), run_dir=run)
    report = json.loads((run / "compressed" / "compress.json").read_text())
    assert len(report["tune_kl"]) == 2 and all(k > 0 for k in report["tune_kl"]), "KL against the merged float model"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["compressed/method"] == "vptq" and metrics["compressed/bits_per_weight"] == report["compressed_bits_per_weight"]
    assert json.loads((run / "model" / "export.json").read_text())["compressed_max_logit_diff"] == 0.0
