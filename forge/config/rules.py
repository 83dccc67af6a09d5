"""Bounds a schema field declares once, checked at validation before anything heavy runs.

A field written `batch_size: int = at_least(1)` carries its rule in the dataclass field's
metadata; `violations` walks a merged config node beside its schema and yields each value that
breaks one. A None value (an optional key left unset) is never checked. Bounds between fields
(n_heads dividing d_model) live in the schema too, as a static `relations(node)` method that
yields (field, rule) for each one broken.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Optional

from omegaconf import MISSING, DictConfig

from forge.config.errors import choices_text, suggest

RULE = "rule"


@dataclass(frozen=True)
class Rule:
    text: str  # what a valid value is: "must be >= 1"
    test: Callable[[Any], bool]

    def message(self, key: str, value: Any, where: str) -> str:
        return f"{key}={value}: {self.text}{where}."


@dataclass(frozen=True)
class OneOf(Rule):
    choices: tuple[Any, ...] = ()

    def message(self, key: str, value: Any, where: str) -> str:
        valid = [str(c) for c in self.choices]
        return f"{key}={value}: not a valid choice{where}.{suggest(str(value), valid)} " + choices_text(valid)


def bound(rule: Rule, default: Any = MISSING) -> Any:
    """A dataclass field (required unless `default` is given) that must pass `rule`."""
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata={RULE: rule})
    return dataclasses.field(default=default, metadata={RULE: rule})


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def at_least(low: float, default: Any = MISSING) -> Any:
    return bound(Rule(f"must be >= {low}", lambda v: _number(v) and v >= low), default)


def above(low: float, default: Any = MISSING) -> Any:
    return bound(Rule(f"must be > {low}", lambda v: _number(v) and v > low), default)


def positive(default: Any = MISSING) -> Any:
    """A real quantity that has to be there: a learning rate, a timeout."""
    return above(0, default)


def between(low: float, high: float, default: Any = MISSING) -> Any:
    return bound(Rule(f"must be in [{low}, {high}]", lambda v: _number(v) and low <= v <= high), default)


def fraction(default: Any = MISSING) -> Any:
    """A share that cannot be all: dropout, held-out fractions, replay."""
    return bound(Rule("must be in [0, 1)", lambda v: _number(v) and 0 <= v < 1), default)


def open_fraction(default: Any = MISSING) -> Any:
    """A share that leaves something on both sides: a train fraction."""
    return bound(Rule("must be strictly between 0 and 1", lambda v: _number(v) and 0 < v < 1), default)


def one_of(choices: Iterable[Any], default: Any = MISSING) -> Any:
    choices = tuple(choices)
    text = "must be one of " + ", ".join(str(c) for c in choices)
    return bound(OneOf(text, lambda v: v in choices, choices), default)


@dataclass(frozen=True)
class Each(Rule):
    item: Optional[Rule] = None

    def message(self, key: str, value: Any, where: str) -> str:
        """The first item that fails, by its own key, in its own rule's words (a nearest match
        for a choice)."""
        pairs = value.items() if isinstance(value, Mapping) else enumerate(value)
        name, bad = next((k, x) for k, x in pairs if not self.item.test(x))
        return self.item.message(f"{key}.{name}", bad, where)


def each(item: Any, default: Any = MISSING) -> Any:
    """Every item of a list (or value of a mapping) passes the rule of the field `item`."""
    rule: Rule = item.metadata[RULE]

    def test(v: Any) -> bool:
        return all(rule.test(x) for x in (v.values() if isinstance(v, Mapping) else v))

    return bound(Each(f"every item {rule.text}", test, rule), default)


def violations(schema: type, node: DictConfig) -> Iterator[tuple[str, Any, Rule]]:
    """(dotted key under `node`, value, rule) for each bound `node` breaks. Items of a list of
    schemas are checked on their own by the caller (their merge carries the item's index)."""
    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        value = node.get(f.name)
        if value is None:
            continue
        rule = f.metadata.get(RULE)
        if rule is not None and not rule.test(value):
            yield f.name, value, rule
        nested = _dataclass_in(hints.get(f.name))
        if nested is not None and isinstance(value, DictConfig):
            yield from ((f"{f.name}.{k}", v, r) for k, v, r in violations(nested, value))
    relations = getattr(schema, "relations", None)
    for name, text in relations(node) if relations else ():
        yield name, node.get(name), Rule(text, lambda v: False)


def _dataclass_in(hint: Any) -> Optional[type]:
    """X for a field typed X or Optional[X] where X is a schema."""
    for t in (hint, *typing.get_args(hint)):
        if dataclasses.is_dataclass(t):
            return t
    return None
