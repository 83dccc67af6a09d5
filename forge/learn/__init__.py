"""`forge learn`: the learning loop. Agent runs are recorded with their quality signals in an
experience store; thresholds export the good ones, train, gate, deploy, watch and roll back.

`Learner` is imported on first use, so `import forge.learn` stays light for the CLI's table.
"""

from typing import Any

__all__ = ["Learner"]


def __getattr__(name: str) -> Any:
    if name == "Learner":
        from forge.learn.learner import Learner

        return Learner
    raise AttributeError(f"module 'forge.learn' has no attribute {name!r}")
