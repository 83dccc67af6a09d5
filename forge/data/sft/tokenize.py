"""Examples to token ids plus a mask of the tokens the loss is taken on.

A chat is rendered with the tokenizer's own chat template, turn by turn: the text each assistant
turn adds after its generation header (its content and end-of-turn marker) is scored, nothing
else is. This needs a template where each conversation's rendering extends the rendering of its
first messages, which holds for ChatML, Llama, Mistral and most others; one that does not is
refused with a message rather than trained with a wrong mask.

Special tokens written as text in the data (`<|im_start|>` in a user message or a tool result,
`<|im_end|>` or `<|endoftext|>` in a completion) are escaped, not quarantined: the data stays
what it was, and such text is tokenized as ordinary characters (the tokenizer's
`split_special_tokens`), so it decodes to the same text but can never become a special id that
opens a turn or ends the sequence; the template's own markers stay special. To tell the two
apart, each special token in a message is swapped for a placeholder the template passes through
as it would the token, the chat is rendered, and the placeholders are put back as plain text.
Only where that is unsound is the record quarantined, naming the message and the token: a
template that changes such text while rendering it (the escaped rendering would differ from the
real one), or a tokenizer that lists a special token it does not mark special (it cannot be kept
as text). A chat without special-token text is encoded exactly as it always was. Templates whose
turn markers are plain text rather than special tokens (Llama 2's `[INST]`) cannot be escaped
without changing the data; there the mask is still right (it follows the messages, not the
text), only the ids of an injected marker equal a real one.

The examples of one agent session share their context: each is the conversation up to one of
its turns. An `Encoder` remembers the ids of each turn it has encoded, keyed by the turn and
everything before it, so a session's context is rendered and tokenized once, not once per
example (which made preparing long sessions cubic in their length). The memo holds one group
(session or file) at a time.
"""

from __future__ import annotations

import re
from array import array
from collections import Counter
from typing import Any, Optional

from forge.data.sft.examples import BadRecord, Chat, Completion, Example


def encode(tokenizer: Any, example: Example, counts: Optional[Counter[str]] = None) -> tuple[list[int], list[bool]]:
    """One example, with nothing remembered (a prepare uses one `Encoder` for all)."""
    return Encoder(tokenizer)(example, counts)


class Encoder:
    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer, self.specials = tokenizer, _Specials(tokenizer)
        self.group: Optional[str] = None
        self.memo: dict[int, _Turn] = {}

    def __call__(self, example: Example, counts: Optional[Counter[str]] = None) -> tuple[list[int], list[bool]]:
        """`counts["special_tokens_escaped"]` counts the examples whose text held special tokens."""
        tokenizer = self.tokenizer
        if isinstance(example, Completion):
            escaped = self.specials.check_plain({"prompt": example.prompt, "completion": example.completion})
            prompt = tokenizer(example.prompt, add_special_tokens=True, split_special_tokens=True)["input_ids"]
            completion = tokenizer(example.completion, add_special_tokens=False, split_special_tokens=True)["input_ids"]
            completion.append(tokenizer.eos_token_id)
            ids, mask = prompt + completion, [False] * len(prompt) + [True] * len(completion)
        else:
            if example.group != self.group:
                self.group, self.memo = example.group, {}
            ids, mask, escaped = _encode_chat(tokenizer, example, self.specials, self.memo)
        if escaped and counts is not None:
            counts["special_tokens_escaped"] += 1
        return ids, mask


class _Turn:
    """What one message adds to a rendered chat, remembered for the chats that continue it: its
    text, where its generation header ends (an assistant turn that was scored), and its ids and
    mask, scored or not. It is identified by the key of the conversation before it and itself."""

    __slots__ = ("before", "role", "content", "text", "split", "encoded")

    def __init__(self, before: int, message: dict[str, str], text: str) -> None:
        self.before, self.role, self.content, self.text = before, message["role"], message["content"], text
        self.split: Optional[int] = None
        self.encoded: dict[bool, tuple[array, array]] = {}

    def same(self, before: int, message: dict[str, str]) -> bool:
        return (self.before, self.role) == (before, message["role"]) and self.content == message["content"]

    def ids(self, tokenizer: Any, scored: bool) -> tuple[array, array]:
        """Scored: the header is context and the rest (content, end-of-turn marker) is trained."""
        if scored not in self.encoded:
            ids, mask = array("i"), array("b")
            pieces = [(self.text[: self.split], False), (self.text[self.split :], True)] if scored else [(self.text, False)]
            for text, trained in pieces:
                if text:
                    piece = tokenizer(text, add_special_tokens=False)["input_ids"]
                    ids.extend(piece)
                    mask.extend([trained] * len(piece))
            self.encoded[scored] = ids, mask
        return self.encoded[scored]


def _render(tokenizer: Any, messages: list[dict[str, str]], generation: bool = False) -> str:
    if not messages:
        return ""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)


def _pieces(tokenizer: Any, messages: list[dict[str, str]], scored: set[int]) -> list[tuple[str, bool]]:
    """The rendered chat cut into (text, scored) pieces at turn boundaries."""
    pieces: list[tuple[str, bool]] = []
    done = ""
    for i, message in enumerate(messages):
        full = _render(tokenizer, messages[: i + 1])
        if not full.startswith(done):
            raise BadRecord(_NOT_PREFIX)
        if message["role"] == "assistant" and i in scored:
            header = _render(tokenizer, messages[:i], generation=True)
            if not (header.startswith(done) and full.startswith(header)):
                raise BadRecord(_NO_HEADER)
            pieces += [(header[len(done) :], False), (full[len(header) :], True)]
        else:
            pieces.append((full[len(done) :], False))
        done = full
    return pieces


_NOT_PREFIX = "the chat template renders a conversation differently from its first turns; cannot mask assistant turns"
_NO_HEADER = "the chat template's generation prompt does not prefix its assistant turn; cannot mask"


def _clean_chat(tokenizer: Any, messages: list[dict[str, str]], scored: set[int], memo: dict[int, _Turn]) -> tuple[list[int], list[bool]]:
    """Ids and mask of a chat without special-token text, as `_pieces` cuts it. A turn met before
    (same conversation before it, same message) is taken from `memo`; only a new turn is rendered,
    with the rendering of the turns before it as their remembered texts joined."""
    ids: list[int] = []
    mask: list[bool] = []
    turns: list[_Turn] = []
    before = 0
    for i, message in enumerate(messages):
        key = hash((before, message["role"], message["content"]))
        turn = memo.get(key)
        if turn is None or not turn.same(before, message):
            done = "".join(t.text for t in turns)
            full = _render(tokenizer, messages[: i + 1])
            if not full.startswith(done):
                raise BadRecord(_NOT_PREFIX)
            turn = memo[key] = _Turn(before, message, full[len(done) :])
        trained = message["role"] == "assistant" and i in scored
        if trained and turn.split is None:
            done = "".join(t.text for t in turns)
            header = _render(tokenizer, messages[:i], generation=True)
            if not (header.startswith(done) and (done + turn.text).startswith(header)):
                raise BadRecord(_NO_HEADER)
            turn.split = len(header) - len(done)
        piece_ids, piece_mask = turn.ids(tokenizer, trained)
        ids += piece_ids
        mask += map(bool, piece_mask)
        turns.append(turn)
        before = key
    return ids, mask


def _encode_chat(tokenizer: Any, chat: Chat, specials: "_Specials", memo: dict[int, _Turn]) -> tuple[list[int], list[bool], bool]:
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("the tokenizer has no chat template: chat data needs one (set it on the model's tokenizer)")
    scored = set(chat.scored) if chat.scored is not None else {i for i, m in enumerate(chat.messages) if m["role"] == "assistant"}
    escape = specials.escape(chat.messages)
    if escape is None:
        return (*_clean_chat(tokenizer, chat.messages, scored, memo), False)
    texts = _pieces(tokenizer, escape.messages, scored)
    if "".join(escape.restore(text) for text, _ in texts) != _render(tokenizer, chat.messages):
        raise BadRecord(f"{escape.where()}, a special token, and the chat template changes that text when rendering it, so "
                        "it cannot be kept as text; remove it from the record")
    ids: list[int] = []
    mask: list[bool] = []
    for text, trained in texts:
        if text:
            piece = escape.tokenize(text)
            ids += piece
            mask += [trained] * len(piece)
    return ids, mask, True


class _Unmarked(BadRecord):
    """Special-token text that the tokenizer still reads as a special token under `split_special_tokens`."""

    def __init__(self, token: str) -> None:
        super().__init__("which the tokenizer reads as a special token even when told not to (it is not marked special); "
                         "remove it from the record or mark it special in the tokenizer")
        self.token = token


class _Specials:
    """The tokenizer's special tokens, and how to keep their text in data from becoming them."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        added = {i: t for i, t in tokenizer.added_tokens_decoder.items() if t.special}
        self.ids = set(added) | set(tokenizer.all_special_ids)
        strip = {str(t): (t.lstrip, t.rstrip) for t in added.values()}
        for token in tokenizer.all_special_tokens:
            strip.setdefault(token, (False, False))
        self.tokens = sorted(strip, key=len, reverse=True)  # longest first: a token that contains another wins
        self.number = {t: i for i, t in enumerate(self.tokens)}
        self.find = re.compile("|".join(map(re.escape, self.tokens)))
        # A template's marker as the tokenizer matches it: with the whitespace it strips.
        self.markers = re.compile("(" + "|".join(
            ("\\s*" if strip[t][0] else "") + re.escape(t) + ("\\s*" if strip[t][1] else "") for t in self.tokens) + ")")

    def check_plain(self, fields: dict[str, str]) -> bool:
        """Whether any field holds special-token text; raises if the tokenizer would still read it as one."""
        found = False
        for name, text in fields.items():
            if self.find.search(text):
                found = True
                try:
                    self.plain(text)
                except _Unmarked as e:
                    raise BadRecord(f"{name} contains {e.token!r}, {e}") from None
        return found

    def plain(self, text: str) -> list[int]:
        """`text` tokenized as ordinary characters."""
        ids = self.tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        special = next((i for i in ids if i in self.ids), None)
        if special is not None:
            raise _Unmarked(self.tokenizer.convert_ids_to_tokens(special))
        return ids

    def escape(self, messages: list[dict[str, str]]) -> Optional["_Escape"]:
        """None when no message holds special-token text (the chat is encoded as it always was)."""
        if not any(self.find.search(v) for m in messages for k, v in m.items() if k != "role"):
            return None
        return _Escape(self, messages)


class _Escape:
    """A chat whose special-token text is swapped for placeholders: the token's number between two
    of a private-use character that occurs in none of its messages, which no template trims or splits."""

    def __init__(self, specials: _Specials, messages: list[dict[str, str]]) -> None:
        self.specials, self.original = specials, messages
        values = [v for m in messages for v in m.values()]
        self.mark = next(chr(c) for c in range(0xE000, 0xF900) if not any(chr(c) in v for v in values))
        self.messages = [{k: v if k == "role" else specials.find.sub(self._placeholder, v) for k, v in m.items()} for m in messages]
        self.placeholders = re.compile(f"{self.mark}(\\d+){self.mark}")

    def _placeholder(self, match: re.Match[str]) -> str:
        return f"{self.mark}{self.specials.number[match.group()]}{self.mark}"

    def restore(self, text: str) -> str:
        return self.placeholders.sub(lambda m: self.specials.tokens[int(m.group(1))], text)

    def where(self, token: Optional[str] = None) -> str:
        """The first message holding `token` (any special token when None), and the token."""
        for i, m in enumerate(self.original):
            for k, v in m.items():
                found = None if k == "role" else self.specials.find.search(v) if token is None else re.search(re.escape(token), v)
                if found:
                    return f"message {i} ({m['role']}) contains {found.group()!r}"
        return f"a message contains {token!r}"

    def tokenize(self, text: str) -> list[int]:
        """A rendered piece to ids: the template's markers are special tokens; a stretch between two
        of them that holds a placeholder is tokenized whole as ordinary characters (as the tokenizer
        would split it at the markers), every other stretch as before."""
        tokenizer = self.specials.tokenizer
        if self.mark not in text:
            return tokenizer(text, add_special_tokens=False)["input_ids"]
        ids: list[int] = []
        for i, part in enumerate(self.specials.markers.split(text)):
            if not part:
                continue
            if i % 2 == 0 and self.mark in part:
                try:
                    ids += self.specials.plain(self.restore(part))
                except _Unmarked as e:
                    raise BadRecord(f"{self.where(e.token)}, {e}") from None
            else:
                ids += tokenizer(part, add_special_tokens=False)["input_ids"]
        return ids
