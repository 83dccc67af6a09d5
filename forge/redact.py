"""Keep a run's secrets out of everything it writes: config.yaml, run.json, logs, exports.

A run's secrets are the values of environment variables and config strings named like a
credential (`OPENAI_API_KEY`, `HF_TOKEN`, `db_password`: a KEY, TOKEN, SECRET, PASSWORD or
CREDENTIAL part; not a tokenizer's `pad_token`), and what detect-secrets finds (forge.secrets) in
any other environment value or config string (the password of a URL). Values shorter than
MIN_LENGTH are left alone: masking `true` or `1` everywhere would garble the files and protect
nothing. While a run is `active`, every text forge writes through forge.atomic and every log
record show them as MASK; the config is masked value by value, so config.yaml stays valid YAML
and a resumed run compares its masked config with it."""

from __future__ import annotations

import json
import logging
import os
import re
from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Mapping, Optional

MASK = "***"
MIN_LENGTH = 8
# Singular: a plural names a setting about secrets (`data.secrets: quarantine`), not one.
_SECRET_PARTS = {"KEY", "APIKEY", "SECRET", "PASSWORD", "PASSWD", "PASSPHRASE", "CREDENTIAL", "CREDENTIALS", "TOKEN"}
# A `*_token` setting of a tokenizer names a special token (`pad_token: <|im_end|>`), not a credential.
_SPECIAL_TOKEN_PARTS = {"PAD", "EOS", "BOS", "UNK", "SEP", "CLS", "MASK", "SPECIAL", "ADDITIONAL", "MAX", "NEW", "NUM"}


def secret_name(name: str) -> bool:
    """An environment variable or config key named like a credential."""
    parts = set(re.split(r"[^A-Z0-9]+", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).upper()))
    return bool(parts & _SECRET_PARTS) and not ("TOKEN" in parts and parts & _SPECIAL_TOKEN_PARTS)


def _secrets_in(name: str, value: str) -> list[str]:
    """The whole value under a credential's name; else what detect-secrets finds in it (the
    password of a URL), a private key with all of its value."""
    from forge import secrets

    if secret_name(name):
        return [value]
    return [value if s.kind == secrets.PRIVATE_KEY else s.value for s in secrets.find(value)]


class Redactor:
    """Masks a fixed set of secret values in text and in plain containers."""

    def __init__(self, values: Iterable[str]) -> None:
        kept = {v for v in values if isinstance(v, str) and len(v) >= MIN_LENGTH}
        forms = {f for v in kept for f in (v, json.dumps(v)[1:-1], json.dumps(v, ensure_ascii=False)[1:-1])}
        self.forms = sorted(forms, key=len, reverse=True)  # a longer secret first: it may hold a shorter one

    @classmethod
    def of_run(cls, cfg: Any, environ: Optional[Mapping[str, str]] = None) -> "Redactor":
        """The secrets of a run with config `cfg` (a DictConfig or plain container) in `environ`."""
        from omegaconf import DictConfig, ListConfig, OmegaConf

        environ = os.environ if environ is None else environ
        tree = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, (DictConfig, ListConfig)) else cfg
        named = [*environ.items(), *_strings(tree, "")]
        return cls(s for name, value in named if len(value) >= MIN_LENGTH for s in _secrets_in(name, value))

    def text(self, text: str) -> str:
        for form in self.forms:
            if form in text:
                text = text.replace(form, MASK)
        return text

    def tree(self, obj: Any) -> Any:
        """A copy of a plain container with its strings masked (keys as well)."""
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, Mapping):
            return {self.tree(k): self.tree(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [self.tree(v) for v in obj]
        return obj


def _strings(obj: Any, key: str) -> Iterator[tuple[str, str]]:
    """(the key it is under, value) for every string in a plain container."""
    if isinstance(obj, str):
        yield key, obj
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            yield from _strings(v, str(k))
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _strings(v, key)


_active: list[Redactor] = []


def text(value: str) -> str:
    """`value` with the secrets of the active runs masked (unchanged outside a run)."""
    for redactor in _active:
        value = redactor.text(value)
    return value


def tree(obj: Any) -> Any:
    """A plain container with the secrets of the active runs masked."""
    for redactor in _active:
        obj = redactor.tree(obj)
    return obj


@contextmanager
def active(redactor: Redactor) -> Iterator[Redactor]:
    """While the body runs, forge.atomic's text writes and every log record are masked."""
    previous = logging.getLogRecordFactory()

    def record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        rec = previous(*args, **kwargs)
        try:
            rec.msg, rec.args = text(rec.getMessage()), None
        except Exception:  # a malformed call: logging reports it when the record is emitted
            return rec
        if rec.exc_info and rec.exc_info[0] is not None:
            rec.exc_text = text(logging.Formatter().formatException(rec.exc_info))
        return rec

    _active.append(redactor)
    logging.setLogRecordFactory(record)
    try:
        yield redactor
    finally:
        logging.setLogRecordFactory(previous)
        _active.remove(redactor)
