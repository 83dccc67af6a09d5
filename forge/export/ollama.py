"""An Ollama Modelfile for an exported GGUF: chat template, stop tokens and sampling parameters.

Ollama templates are Go templates, not Jinja. A ChatML template (SmolLM2, Qwen and others) is
written out as its Go equivalent, with the default system prompt the Jinja template inserts; for
any other template the Modelfile has no TEMPLATE and Ollama takes the chat template stored in the
GGUF metadata.
"""

from __future__ import annotations

import re
from typing import Any, Optional

CHATML = (
    '{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}'
    "{{ range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
)


def default_system(tokenizer: Any) -> Optional[str]:
    """The system prompt the chat template adds when a conversation has none."""
    text = tokenizer.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False)
    found = re.match(r"<\|im_start\|>system\n(.*?)<\|im_end\|>", text, re.S)
    return found.group(1) if found else None


def modelfile(gguf_name: str, tokenizer: Any, parameters: dict[str, Any]) -> str:
    template = tokenizer.chat_template or ""
    lines = [f"FROM ./{gguf_name}"]
    stops = [tokenizer.eos_token] if tokenizer.eos_token else []
    if "<|im_start|>" in template:
        lines.append(f'TEMPLATE """{CHATML}"""')
        system = default_system(tokenizer)
        if system:
            lines.append(f'SYSTEM """{system}"""')
        stops = ["<|im_start|>", "<|im_end|>"] + [s for s in stops if s not in ("<|im_start|>", "<|im_end|>")]
    lines += [f'PARAMETER stop "{s}"' for s in stops]
    lines += [f"PARAMETER {k} {v}" for k, v in parameters.items()]
    return "\n".join(lines) + "\n"
