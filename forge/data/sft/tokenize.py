"""Examples to token ids plus a mask of the tokens the loss is taken on.

A chat is rendered with the tokenizer's own chat template, turn by turn: the text each assistant
turn adds after its generation header (its content and end-of-turn marker) is scored, nothing
else is. This needs a template where each conversation's rendering extends the rendering of its
first messages, which holds for ChatML, Llama, Mistral and most others; one that does not is
refused with a message rather than trained with a wrong mask.
"""

from __future__ import annotations

from typing import Any

from forge.data.sft.examples import BadRecord, Chat, Completion, Example


def encode(tokenizer: Any, example: Example) -> tuple[list[int], list[bool]]:
    if isinstance(example, Completion):
        prompt = tokenizer(example.prompt, add_special_tokens=True)["input_ids"]
        completion = tokenizer(example.completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        return prompt + completion, [False] * len(prompt) + [True] * len(completion)
    return _encode_chat(tokenizer, example)


def _render(tokenizer: Any, messages: list[dict[str, str]], generation: bool = False) -> str:
    if not messages:
        return ""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)


def _encode_chat(tokenizer: Any, chat: Chat) -> tuple[list[int], list[bool]]:
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("the tokenizer has no chat template: chat data needs one (set it on the model's tokenizer)")
    scored = set(chat.scored) if chat.scored is not None else {i for i, m in enumerate(chat.messages) if m["role"] == "assistant"}
    pieces: list[tuple[str, bool]] = []
    done = ""
    for i, message in enumerate(chat.messages):
        full = _render(tokenizer, chat.messages[: i + 1])
        if not full.startswith(done):
            raise BadRecord("the chat template renders a conversation differently from its first turns; cannot mask assistant turns")
        if message["role"] == "assistant" and i in scored:
            header = _render(tokenizer, chat.messages[:i], generation=True)
            if not (header.startswith(done) and full.startswith(header)):
                raise BadRecord("the chat template's generation prompt does not prefix its assistant turn; cannot mask")
            pieces += [(header[len(done) :], False), (full[len(header) :], True)]
        else:
            pieces.append((full[len(done) :], False))
        done = full
    ids: list[int] = []
    mask: list[bool] = []
    for text, trained in pieces:
        if text:
            piece = tokenizer(text, add_special_tokens=False)["input_ids"]
            ids += piece
            mask += [trained] * len(piece)
    return ids, mask
