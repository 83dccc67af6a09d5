"""Peers of forge's compressors that have a CPU build here, on the same job as
`benchmarks/compression.py` (SmolLM2-135M, pydoc_data.topics windows, KL against the same float
model): torchao int8 weight-only, HQQ int4/int3/int2 at group 64, bitsandbytes NF4 at block 64.
torchao's int4 weight-only has no CPU path in torchao 0.18 (it needs CUDA or the mslk package),
so it is not in the table.

Each peer replaces the same 210 linear layers (the tied embedding/head stays float). Perplexity,
KL and top-1 are computed with the peer's weights dequantized into the float model (the same
values its kernels multiply by; HQQ's CPU kernels take seconds per token, too slow for 20k
tokens here); latency is measured on the peer's own layers and kernels, over fewer decode
tokens than forge's rows (`decode_tokens` in each row). Bits/weight are counted from the tensors the
peer's quantized layers hold (its state dict: codes, scales, zeros, in the dtypes it keeps them);
total bytes add the rest of the model in float16, as forge's file stores it. Rows are merged into
benchmarks/results/compression_smollm2.json under `peer:NAME`.

    python benchmarks/compression_peers.py --windows 40
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Callable

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compression import HERE, SOURCE, pydoc_topics  # noqa: E402

from forge.eval.text import latency, log_probs, perplexity, windows  # noqa: E402
from forge.models.hf import HFCausalLM  # noqa: E402


def torchao_int8(linear: nn.Linear) -> nn.Module:
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    holder = nn.Sequential(linear)
    quantize_(holder, Int8WeightOnlyConfig())
    return holder[0]


def hqq(bits: int) -> Callable[[nn.Linear], nn.Module]:
    def make(linear: nn.Linear) -> nn.Module:
        from hqq.core.quantize import BaseQuantizeConfig, HQQLinear

        return HQQLinear(linear, BaseQuantizeConfig(nbits=bits, group_size=64), compute_dtype=torch.float32, device="cpu")

    return make


def bnb_nf4(linear: nn.Linear) -> nn.Module:
    import bitsandbytes as bnb

    layer = bnb.nn.Linear4bit(linear.in_features, linear.out_features, bias=linear.bias is not None, quant_type="nf4",
                              compute_dtype=torch.float32)
    layer.weight = bnb.nn.Params4bit(linear.weight.data, requires_grad=False, quant_type="nf4", blocksize=64)
    return layer.to("cpu")


PEERS: dict[str, Callable[[nn.Linear], nn.Module]] = {
    "torchao_int8_weight_only": torchao_int8,
    "hqq_int4_g64": hqq(4),
    "hqq_int3_g64": hqq(3),
    "hqq_int2_g64": hqq(2),
    "bitsandbytes_nf4_b64": bnb_nf4,
}


def dequantized(module: nn.Module) -> torch.Tensor:
    """The float weight a peer's layer stands for."""
    weight = getattr(module, "weight", None)
    if hasattr(weight, "quant_state"):  # bitsandbytes
        import bitsandbytes as bnb

        return bnb.functional.dequantize_4bit(weight.data, weight.quant_state).float()
    if weight is not None:  # torchao tensor subclass
        return weight.dequantize().float()
    return module.dequantize().float()  # HQQ


def stored_bytes(tensor: torch.Tensor) -> int:
    """Bytes a tensor really holds: a tensor subclass (torchao) reports its logical float shape,
    so count the plain tensors it is built from."""
    if hasattr(tensor, "__tensor_flatten__"):
        names, _ = tensor.__tensor_flatten__()
        return sum(stored_bytes(getattr(tensor, name)) for name in names)
    return tensor.numel() * tensor.element_size()


def tensor_bytes(module: nn.Module) -> int:
    """Bytes of every tensor in a quantized layer's state dict (bitsandbytes keeps its quant
    state in the weight's attributes; they are in its state dict too)."""
    return sum(stored_bytes(t) for t in module.state_dict().values() if torch.is_tensor(t))


def quantize_linears(model: nn.Module, values: nn.Module, make: Callable[[nn.Linear], nn.Module]) -> tuple[int, int]:
    """Replace every linear layer except lm_head of `model` in place by the peer's layer, and
    copy its dequantized weight into the same layer of `values`; (weights replaced, bytes they take)."""
    weights = stored = 0
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Linear) and not name.endswith("lm_head"):
            weights += module.weight.numel()
            parent, _, child = name.rpartition(".")
            quantized = make(copy.deepcopy(module))
            stored += tensor_bytes(quantized)
            with torch.no_grad():
                values.get_submodule(name).weight.copy_(dequantized(quantized))
            setattr(model.get_submodule(parent), child, quantized)
    return weights, stored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--peers", nargs="*", default=list(PEERS))
    parser.add_argument("--decode-tokens", type=int, default=8)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "compression_smollm2.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spec = HFCausalLM(SOURCE)
    tokenizer, base = spec.tokenizer(), spec.model().eval()
    rows, scored_bytes = windows(tokenizer, pydoc_topics(), 512, args.windows)
    reference = log_probs(base, rows)
    params = sum(p.numel() for p in base.parameters())
    results = json.loads(args.out.read_text())
    for name in args.peers:
        model, values = copy.deepcopy(base), copy.deepcopy(base)
        weights, stored = quantize_linears(model, values, PEERS[name])
        rest = 2 * (params - weights)
        row = {**perplexity(values, rows, scored_bytes, reference=reference),
               **latency(model, new_tokens=args.decode_tokens, repeats=1), "decode_tokens": args.decode_tokens,
               "compressed_bits_per_weight": 8 * stored / weights, "file_bytes": stored + rest,
               "file_bits_per_parameter": 8 * (stored + rest) / params, "compressed_weights": weights,
               "bytes_counted": "the quantized layers' state-dict tensors, plus the float rest at float16"}
        results["results"][f"peer:{name}"] = row
        print(name, json.dumps(row), flush=True)
        del model, values
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
