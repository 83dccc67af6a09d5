"""The layers of forge read downwards only, imports inside functions included: a deferred import
keeps the CLI fast, but it must not hide an edge that runs back up (or round in a circle)."""

from __future__ import annotations

import ast
from pathlib import Path

FORGE = Path(__file__).resolve().parents[1] / "forge"
# Lowest first. A module belongs to the first layer with a prefix of its name; modules of one
# layer may import each other, as long as no two of them (nor two of its packages) do both ways.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("forge.errors", "forge.dvc_add", "forge.redact", "forge.secrets", "forge.atomic", "forge.run_dir", "forge.run_state", "forge.config", "forge.conf",
     "forge.summary"),
    ("forge.models", "forge.data"),
    ("forge.train", "forge.eval", "forge.compress", "forge.export", "forge.curriculum"),
    ("forge.families",),
    ("forge.stages",),
    ("forge.runner", "forge.cv", "forge.sweep", "forge.pipeline", "forge.runs", "forge.compare", "forge.registry", "forge.serving",
     "forge.gate", "forge.learn"),
    ("forge.cli", "forge.__main__"),
)


def modules() -> dict[str, Path]:
    out = {}
    for f in FORGE.rglob("*.py"):
        parts = list(f.relative_to(FORGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every forge module `name` imports, wherever the import statement stands."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                prefix = package
                for _ in range(node.level - 1):
                    prefix = prefix.rpartition(".")[0]
                base = f"{prefix}.{base}" if base else prefix
            # `from pkg import mod` imports the module; `from mod import name`, the module itself
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def layer(name: str) -> int:
    for i, prefixes in enumerate(LAYERS):
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            return i
    raise AssertionError(f"{name} is in no layer: add it to LAYERS in {Path(__file__).name}")


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) - {"forge"} for name, path in known.items() if name != "forge"}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in list(edges):
        if v not in index:
            visit(v)
    return found


def package(name: str) -> str:
    """The top-level part a module belongs to: forge.train.fit -> forge.train."""
    return ".".join(name.split(".")[:2])


def test_every_import_points_down_the_layers() -> None:
    upward = [f"{a} (layer {layer(a)}) imports {b} (layer {layer(b)})"
              for a, targets in graph().items() for b in sorted(targets) if layer(b) > layer(a)]
    assert not upward, "imports that run up the layers:\n" + "\n".join(upward)


def test_no_module_or_package_imports_go_round_in_a_circle() -> None:
    edges = graph()
    assert not cycles(edges), f"import cycles: {cycles(edges)}"
    packages: dict[str, set[str]] = {}
    for a, targets in edges.items():
        packages.setdefault(package(a), set()).update(package(b) for b in targets if package(b) != package(a))
    assert not cycles(packages), f"packages importing each other both ways: {cycles(packages)}"


def test_the_check_sees_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from forge.stages import STAGES\n    from .sibling import x\n")
    known = {"forge.train.m": module, "forge.stages": module, "forge.train.sibling": module}
    assert imports("forge.train.m", module, known) == {"forge.stages", "forge.train.sibling"}
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
