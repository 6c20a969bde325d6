"""ARCHITECTURE.md: a lower room never imports a higher one (imports inside functions included)."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "hello_labels"
# rooms, lowest first; modules at the package's top level (errors, files, runs, ...) are below them all
LEVEL = {"model": 1, "labels": 2, "train": 3, "storage": 4, "demo": 4, "cli": 5}


def _level(module: str) -> int:
    parts = module.split(".")
    return LEVEL.get(parts[1], 0) if len(parts) > 1 else 0


def _imports(path: Path):
    """Absolute names of the hello_labels modules a file imports."""
    module = ".".join(("hello_labels",) + path.relative_to(PACKAGE).with_suffix("").parts)
    package = module.rsplit(".", 1)[0]  # a file's package; for __init__.py its own
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("hello_labels"))
        elif isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")[:len(package.split(".")) - node.level + 1]
            yield ".".join(base + ([node.module] if node.module else []))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hello_labels"):
            yield node.module


def test_no_room_imports_a_higher_one():
    upward = []
    for path in PACKAGE.rglob("*.py"):
        if path.parent == PACKAGE and path.name in ("__init__.py", "__main__.py"):
            continue  # the package's entry points: the public names and ``python -m hello_labels``
        own = _level(".".join(("hello_labels",) + path.relative_to(PACKAGE).parts[:-1] + ("x",)))
        upward += [f"{path.relative_to(PACKAGE)} -> {name}" for name in _imports(path) if _level(name) > own]
    assert not upward, upward
