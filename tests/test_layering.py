"""The house rules of cism_lib/ that docs/design.md states: no import circle between its modules
(imports inside functions included) and no module above ~500 lines without its reason at the top."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cism_lib"
LIMIT = 500


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The cism_lib modules a file imports, at any depth of its code."""
    def known(name: str) -> str:
        while name not in modules and "." in name:
            name = name.rsplit(".", 1)[0]
        return name

    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("cism_lib"):
            found |= {known(f"{node.module}.{a.name}") for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {known(a.name) for a in node.names if a.name.startswith("cism_lib")}
    return found


def test_no_import_circle() -> None:
    modules = _modules()
    # a package's __init__ re-exports its own submodules: that edge is the package's, not a circle
    graph = {m: {d for d in _imports(p, modules) if d != m and not d.startswith(m + ".") and not m.startswith(d + ".")}
             for m, p in modules.items()}
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph[module]):
            assert state.get(dep) != 1, "import circle: " + " → ".join(path[path.index(dep):] + [dep])
            if dep not in state:
                visit(dep, path + [dep])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_a_long_module_says_why_at_its_top() -> None:
    long = {name: path for name, path in _modules().items() if len(path.read_text().splitlines()) > LIMIT}
    for name, path in long.items():
        doc = " ".join((ast.get_docstring(ast.parse(path.read_text())) or "").split())
        assert "Longer than ~500 lines because" in doc, f"{name}: {LIMIT}+ lines, no reason at its top"


def test_the_checks_see_a_circle_and_a_long_module(tmp_path, monkeypatch) -> None:
    """The two rules fail on a package that breaks them (so they can fail)."""
    pkg = tmp_path / "cism_lib"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from cism_lib import b\n")
    (pkg / "b.py").write_text('"""b."""\nfrom cism_lib.a import f\n' + "x = 1\n" * LIMIT)
    monkeypatch.setattr(__import__(__name__), "PACKAGE", pkg)
    for check in (test_no_import_circle, test_a_long_module_says_why_at_its_top):
        try:
            check()
        except AssertionError:
            continue
        raise AssertionError(f"{check.__name__} passed on a package that breaks it")
