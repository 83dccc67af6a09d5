"""Find secrets in text with detect-secrets' pattern plugins, and redact them.

The plugins are detect-secrets' own (Yelp's maintained scanner), driven directly through their
regexes: its file-scan API (settings, filters and a verification hook per line) costs a Python
call per line of every record. Here a text is scanned whole by each plugin whose regexes start
with a literal (memory speed); the slower ones run only on a text that holds one of their marks,
and `KeywordDetector` only on the lines that hold one of its keywords and a quote.

Chosen plugins: those that match a credential by its documented shape (a provider prefix or
marker) plus `KeywordDetector` (a quoted value assigned to `password`, `api_key`, `secret`, ...).
Left out on purpose: the high-entropy string plugins (they flag git SHAs, sha256 digests and
base64 blobs, which fill code and agent logs), `IPPublicDetector` (an address is not a secret),
and the detectors of shapes without a distinctive prefix (Artifactory passwords, Twilio,
Mailchimp, Discord, Telegram, IBM, SoftLayer, Cloudant), which match ids and hashes in logs.
Anthropic and Hugging Face tokens, the keys most likely to sit in agent logs and in this
toolkit's environment, have no plugin there and get two of the same kind here.

On top of detect-secrets' own false-positive heuristics, a hit is dropped when it is a
placeholder (`YOUR_API_KEY`, AWS's documented `...EXAMPLE` key), when a keyword's value does not
look like a credential (shorter than 6, a phrase, one kind of character: `true`, `PASSWORD`, or
naming the keyword itself: `no-password-required`), when a private-key header has no key body
after it (code that handles keys), and when an AWS key id is a DNA sequence (`ACCA...`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable, Iterator

KEYWORD = "Secret Keyword"
BASIC_AUTH = "Basic Auth Credentials"
PRIVATE_KEY = "Private Key"
AWS = "AWS Access Key"
# Plugins whose regexes Python scans slowly (no literal prefix, or case-insensitive) run on a text
# only when it holds one of these marks, each contained in every match (lowercase, looked for in
# the lowercased text).
_GATES = {
    AWS: (b"akia", b"asia", b"abia", b"acca", b"a3t", b"aws"),
    "Slack Token": (b"xox", b"hooks.slack.com"),
    "Stripe Access Key": (b"k_live_",),
}
_PLACEHOLDER = re.compile(r"your|example|placeholder|changeme|dummy|redacted|xxxx|\.\.\.", re.IGNORECASE)
_KEY_BODY = re.compile(r"[A-Za-z0-9+/]{60,}")
_PEM = re.compile(r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----.*?(?:-----END[A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----|\Z)", re.DOTALL)
MIN_GROUP = 8  # a shorter group is a prefix or a flag, not the secret
_CLASSES = (re.compile(r"[a-z]"), re.compile(r"[A-Z]"), re.compile(r"[0-9]"), re.compile(r"[^a-zA-Z0-9]"))


@dataclass(frozen=True)
class Secret:
    kind: str  # detect-secrets' secret_type, e.g. "AWS Access Key"
    value: str


def find(text: str) -> list[Secret]:
    """The secrets in `text`, each once."""
    scanner = _scanner()
    data = text.encode("utf-8", "surrogatepass")
    low = data.lower()
    found: dict[Secret, None] = {}
    for plugin in scanner.plugins:
        gate = _GATES.get(plugin.secret_type)
        if gate is None or any(mark in low for mark in gate):
            found.update((Secret(plugin.secret_type, v), None) for v in _matches(plugin, text) if _plausible(plugin.secret_type, v, text))
    for line in _lines_with(data, low, scanner.keywords):
        found.update((s, None) for s in scanner.keyword_line(line))
    return list(found)


def _matches(plugin: Any, text: str) -> Iterator[str]:
    """The secret of each match of a plugin's regexes: its longest group when that is the secret
    (the 40 characters after `aws_secret_access_key = "`, the password of a URL), else the whole
    match (detect-secrets' `analyze_string` yields the group, which for some plugins is only the
    prefix: `ghp`)."""
    valid = getattr(plugin, "is_formally_valid", None)
    for regex in plugin.denylist:
        for m in regex.finditer(text):
            group = max((g for g in m.groups() if g), key=len, default="")
            value = group if len(group) >= MIN_GROUP or plugin.secret_type == BASIC_AUTH else m.group(0)
            if valid is None or valid(value):
                yield value


def find_escaped(text: str) -> list[Secret]:
    """The secrets in `text`, also read as the inside of a JSON string when it holds an escaped
    quote (a raw record, a tool call's JSON arguments: `password=\\"hunter2\\"`)."""
    found = dict.fromkeys(find(text))
    if '\\"' in text:
        found.update(dict.fromkeys(find(_unescape(text))))
    return list(found)


def redact(text: str, secrets: Iterable[Secret]) -> str:
    """`text` with every occurrence of each secret (raw, or escaped as inside a JSON string)
    replaced by `[REDACTED:<kind>]`; a private key goes with its whole block."""
    for s in secrets:
        mark = f"[REDACTED:{s.kind}]"
        if s.kind == PRIVATE_KEY:
            text = _PEM.sub(mark, text)
        for form in dict.fromkeys((s.value, json.dumps(s.value, ensure_ascii=False)[1:-1])):
            text = _occurrences(form, s.kind).sub(lambda _: mark, text)
    return text


def _plausible(kind: str, value: str, text: str) -> bool:
    if _PLACEHOLDER.search(value):
        return False
    if kind == PRIVATE_KEY:
        return bool(_KEY_BODY.search(text, text.find(value)))
    if kind == AWS:
        return not set(value) <= set("ACGTN")
    if kind == BASIC_AUTH:
        return _credential_like(value)
    return True


def _credential_like(value: str) -> bool:
    low = value.lower()
    return (
        len(value) >= 6 and not any(c.isspace() for c in value) and sum(bool(c.search(value)) for c in _CLASSES) >= 2
        and not any(w in low for w in _scanner().spellings) and not (value[0] + value[-1] in ("{}", "<>"))
    )


def _occurrences(value: str, kind: str) -> re.Pattern[str]:
    """A keyword's value is any word (`hunter2`): only whole-word occurrences are it."""
    pattern = re.escape(value)
    if kind in (KEYWORD, BASIC_AUTH):
        pattern = (r"(?<!\w)" if re.match(r"\w", value) else "") + pattern + (r"(?!\w)" if re.search(r"\w$", value) else "")
    return re.compile(pattern)


def _unescape(text: str) -> str:
    return re.sub(r'\\(["\\/nrt])', lambda m: {"n": "\n", "r": "\r", "t": "\t"}.get(m[1], m[1]), text)


def _lines_with(data: bytes, low: bytes, marks: tuple[bytes, ...]) -> Iterator[str]:
    """Each line of `data` that holds one of `marks` (looked for in its lowercased copy, which
    has the same byte offsets), once."""
    starts: set[int] = set()
    for mark in marks:
        i = low.find(mark)
        while i >= 0:
            starts.add(data.rfind(b"\n", 0, i) + 1)
            i = low.find(mark, i + len(mark))
    for start in sorted(starts):
        end = data.find(b"\n", start)
        yield data[start : end if end >= 0 else len(data)].decode("utf-8", "surrogatepass")


class _Scanner:
    def __init__(self) -> None:
        from detect_secrets.plugins import (
            aws, azure_storage_key, basic_auth, github_token, gitlab_token, jwt, keyword, npm, openai, private_key,
            pypi_token, sendgrid, slack, square_oauth, stripe,
        )
        from detect_secrets.plugins.base import RegexBasedDetector

        class AnthropicDetector(RegexBasedDetector):
            secret_type = "Anthropic API Key"
            denylist = (re.compile(r"sk-ant-(?:api|admin|oat)\d\d-[A-Za-z0-9_-]{80,}"),)

        class HuggingFaceDetector(RegexBasedDetector):
            secret_type = "Hugging Face Token"
            denylist = (re.compile(r"hf_[A-Za-z]{34}(?![A-Za-z0-9])"),)

        self.plugins: tuple[Any, ...] = (
            aws.AWSKeyDetector(), azure_storage_key.AzureStorageKeyDetector(), github_token.GitHubTokenDetector(),
            gitlab_token.GitLabTokenDetector(), openai.OpenAIDetector(), slack.SlackDetector(), stripe.StripeDetector(),
            sendgrid.SendGridDetector(), pypi_token.PypiTokenDetector(), npm.NpmDetector(), square_oauth.SquareOAuthDetector(),
            private_key.PrivateKeyDetector(), jwt.JwtTokenDetector(), basic_auth.BasicAuthDetector(), AnthropicDetector(),
            HuggingFaceDetector(),
        )
        # KeywordDetector reads a line at a time (a value ends with its line). Its regexes are slow
        # (case-insensitive alternations), so they see only the lines that hold one of its
        # keywords (found by the coarse marks, each inside some keyword, then the exact spellings)
        # and a quote, which all of its patterns need.
        self.keyword = keyword.KeywordDetector()
        self.spellings = tuple(w for entry in keyword.DENYLIST for w in dict.fromkeys((entry.replace("_?", "_"), entry.replace("_?", ""))))
        self.keywords = tuple(m.encode() for m in ("key", "pass", "pwd", "secret", "contras"))

    def keyword_line(self, line: str) -> Iterator[Secret]:
        from detect_secrets.filters import heuristic

        low = line.lower()
        if not (any(q in line for q in "'\"`") and any(w in low for w in self.spellings)):
            return
        for value in self.keyword.analyze_string(line):
            if not (
                heuristic.is_templated_secret(value) or heuristic.is_prefixed_with_dollar_sign(value)
                or heuristic.is_sequential_string(value) or heuristic.is_potential_uuid(value)
                or heuristic.is_not_alphanumeric_string(value) or heuristic.is_likely_id_string(value, line)
                or heuristic.is_indirect_reference(line) or _PLACEHOLDER.search(value) or not _credential_like(value)
            ):
                yield Secret(KEYWORD, value)


@lru_cache(maxsize=1)
def _scanner() -> _Scanner:
    return _Scanner()
