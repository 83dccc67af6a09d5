"""Write a llama-architecture Hugging Face model as a GGUF file (llama.cpp, Ollama).

llama.cpp stores the rows of q_proj and k_proj interleaved per head differently from Hugging
Face (its rotary embedding pairs adjacent dimensions), so those two weights are permuted as
llama.cpp's own converter does; transformers' GGUF loader undoes it, which is how the export is
checked. A tied output head is left out (llama.cpp then reuses token_embd). The tokenizer goes
in as a byte-level BPE ("gpt2") vocabulary with its merges, special tokens and chat template.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from forge.export.configs import GGUF_TYPES as TYPES

LAYER_NAMES = {
    "input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
}


def permute(weight: np.ndarray, n_head: int) -> np.ndarray:
    """Hugging Face rotary layout -> llama.cpp's, for q_proj (n_head) or k_proj (n_kv_head)."""
    return weight.reshape(n_head, 2, weight.shape[0] // n_head // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def tensor_name(hf_name: str) -> str:
    parts = hf_name.split(".")
    if hf_name == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf_name == "model.norm.weight":
        return "output_norm.weight"
    if hf_name == "lm_head.weight":
        return "output.weight"
    if parts[:2] == ["model", "layers"]:
        inner = ".".join(parts[3:-1])
        if inner in LAYER_NAMES:
            return f"blk.{parts[2]}.{LAYER_NAMES[inner]}.{parts[-1]}"
    raise ValueError(f"GGUF export: no llama.cpp name for tensor {hf_name!r}")


def write_gguf(model: Any, tokenizer: Any, path: Path, dtype: str = "f16", pre: str = "gpt-2", name: str = "forge") -> Path:
    import gguf

    config = model.config
    if config.model_type != "llama":
        raise ValueError(f"GGUF export supports llama-architecture models; this one is {config.model_type!r}")
    if dtype not in TYPES:
        raise ValueError(f"export.gguf_type={dtype}: choose one of {', '.join(TYPES)}")
    writer = gguf.GGUFWriter(str(path), "llama")
    n_head, n_kv = config.num_attention_heads, config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_head
    rope = (getattr(config, "rope_parameters", None) or {}).get("rope_theta") or getattr(config, "rope_theta", 10000.0)
    writer.add_name(name)
    writer.add_file_type({"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[dtype])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_rope_freq_base(float(rope))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_rope_dimension_count(head_dim)
    writer.add_vocab_size(config.vocab_size)
    _add_tokenizer(writer, tokenizer, config.vocab_size, pre)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    for hf_name, tensor in model.state_dict().items():
        if hf_name == "lm_head.weight" and tied:
            continue
        array = tensor.detach().float().cpu().numpy()
        if hf_name.endswith("q_proj.weight"):
            array = permute(array, n_head)
        elif hf_name.endswith("k_proj.weight"):
            array = permute(array, n_kv)
        if array.ndim == 1 or dtype == "f32":
            writer.add_tensor(tensor_name(hf_name), array.astype(np.float32))
        elif dtype == "f16":
            writer.add_tensor(tensor_name(hf_name), array.astype(np.float16))
        else:
            quantized = gguf.quants.quantize(array, gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(tensor_name(hf_name), quantized, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _add_tokenizer(writer: Any, tokenizer: Any, vocab_size: int, pre: str) -> None:
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    if state["model"]["type"] != "BPE":
        raise ValueError(f"GGUF export supports byte-level BPE tokenizers; this one is {state['model']['type']}")
    vocab = tokenizer.get_vocab()
    by_id = {i: t for t, i in vocab.items()}
    special = {t.content for t in tokenizer.added_tokens_decoder.values() if t.special}
    tokens, types = [], []
    for i in range(vocab_size):
        token = by_id.get(i)
        tokens.append(token if token is not None else f"[PAD{i}]")
        types.append(5 if token is None else 3 if token in special else 1)  # 5 unused, 3 control, 1 normal
    merges = [m if isinstance(m, str) else " ".join(m) for m in state["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for setter, token_id in (
        (writer.add_bos_token_id, tokenizer.bos_token_id), (writer.add_eos_token_id, tokenizer.eos_token_id),
        (writer.add_pad_token_id, tokenizer.pad_token_id), (writer.add_unk_token_id, tokenizer.unk_token_id),
    ):
        if token_id is not None:
            setter(token_id)
    writer.add_add_bos_token(bool(getattr(tokenizer, "add_bos_token", False)))
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)
