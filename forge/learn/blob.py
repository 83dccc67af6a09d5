"""State of the loop's learners (bandit, router, drift watch) as bytes for the experience store.

river's policies and detectors carry their exact state (counts, posteriors, random generators,
ADWIN's buckets) only in their pickle, so the blob is a pickle. The store may be a database that
agents on several machines share, so a blob is read back with an unpickler that builds nothing but
the classes these learners are made of: a doctored blob fails to load instead of running code.
"""

from __future__ import annotations

import io
import pickle
import types
from typing import Any

from forge.errors import ForgeError

FORMAT = 1
# river's policies and detectors keep bound methods (a reward factory, a drift test);
# pickle would rebuild them through builtins.getattr, which would open every attribute to a blob.
_METHODS = {"clone", "_clone_reward_obj_with_seed", "_test_increase", "_test_decrease", "_test_both"}
_ALLOWED = {("collections", "Counter"), ("collections", "defaultdict"), ("collections", "deque"),
            ("random", "Random"), (__name__, "_method")}
_RIVER = (["river", "bandit"], ["river", "proba"], ["river", "stats"], ["river", "drift"], ["river", "_river_rust"])


def _method(obj: Any, name: str) -> Any:
    if name not in _METHODS:
        raise pickle.UnpicklingError(f"method {name} is not part of a learner's state")
    return getattr(obj, name)


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, types.MethodType) and obj.__func__.__name__ in _METHODS:
            return _method, (obj.__self__, obj.__func__.__name__)
        return NotImplemented


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        if module.split(".")[:2] in _RIVER:
            found = super().find_class(module, name)
            if isinstance(found, type):
                return found
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a learner's state")


def dumps(kind: str, state: Any) -> bytes:
    out = io.BytesIO()
    _Pickler(out, protocol=pickle.HIGHEST_PROTOCOL).dump({"kind": kind, "format": FORMAT, "state": state})
    return out.getvalue()


def loads(kind: str, blob: bytes) -> Any:
    """The state saved by `dumps(kind, ...)`; a blob of another kind, format or origin is refused."""
    try:
        saved = _Unpickler(io.BytesIO(blob)).load()
    except Exception as e:  # a truncated or doctored blob can raise almost anything
        raise ForgeError(f"the saved {kind} state cannot be read ({type(e).__name__}: {e}); delete it to start the {kind} afresh") from None
    if not isinstance(saved, dict) or saved.get("kind") != kind:
        found = saved.get("kind") if isinstance(saved, dict) else type(saved).__name__
        raise ForgeError(f"the saved state is a {found}, not a {kind}; load it with its own class")
    if saved.get("format") != FORMAT:
        raise ForgeError(f"the saved {kind} state has format {saved.get('format')}, this forge reads {FORMAT}; "
                         f"delete it to start the {kind} afresh")
    return saved["state"]
