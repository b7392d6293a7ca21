"""jaxnn/'s imports run one way (DESIGN.md): no cycle, layers below models/training/data, leaves below all.

The graph is read from the source with `ast`, so lazy imports inside functions are edges too. Importing
`a.b.c` runs the packages `a` and `a.b` first, so those are edges as well, except to a package that
encloses the importer: it is already being imported when the importer runs (a package's __init__
re-exporting its submodules, the one circle allowed).
"""
from __future__ import annotations

import ast
import dataclasses
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = "jaxnn"
LEAVES = {f"{PACKAGE}.{name}" for name in
          ("activations", "initializers", "losses", "metrics", "optimizers", "registry", "validation", "io")}
# functional.py is the graph model (models/graph.py in DESIGN.md's layout), so it sits above the layers too.
ABOVE_LAYERS = tuple(f"{PACKAGE}.{name}" for name in
                     ("models", "functional", "training", "data", "tasks", "config", "runner", "checkpoint"))
TENSORFLOW = ("tensorflow", "tensorflow_datasets")


@dataclasses.dataclass(frozen=True)
class Edge:
    source: str
    target: str          # a module of the package, or an outside module's top-level name
    line: int
    module_level: bool   # runs when `source` is imported (not inside a function)

    def __str__(self):
        return f"{self.source}:{self.line} -> {self.target}"


def _module_names(root: pathlib.Path, package: str) -> dict[str, pathlib.Path]:
    """Dotted module name -> file; a package's __init__.py stands for the package."""
    names = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return getattr(test, "id", getattr(test, "attr", None)) == "TYPE_CHECKING"


def _imports(tree: ast.Module):
    """(node, module_level) for every import statement that can run (`if TYPE_CHECKING:` blocks left out)."""
    def walk(node, module_level):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, module_level
            yield from walk(child, module_level and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))
    return walk(tree, True)


def _encloses(package: str, module: str) -> bool:
    return module == package or module.startswith(package + ".")


def _targets(node, source: str, is_package: bool, package: str, modules) -> list[str]:
    """What an import statement runs: the module it names (`from p import m` names the submodule p.m when
    there is one), the packages above that do not enclose `source`, and outside modules by top-level name."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            anchor = source.split(".") if is_package else source.split(".")[:-1]
            base = ".".join([*anchor[:len(anchor) - node.level + 1], *filter(None, [base])])
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
    targets = []
    for name in names:
        parts = name.split(".")
        if parts[0] != package:
            targets.append(parts[0])
            continue
        known = [p for p in (".".join(parts[:i]) for i in range(1, len(parts) + 1)) if p in modules]
        targets += [p for p in known[:-1] if not _encloses(p, source)] + known[-1:]
    return targets


def import_graph(root: pathlib.Path = ROOT, package: str = PACKAGE) -> tuple[set[str], list[Edge]]:
    """The package's modules, and every import edge out of them."""
    modules = _module_names(root, package)
    edges = []
    for source, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node, module_level in _imports(tree):
            for target in dict.fromkeys(_targets(node, source, path.name == "__init__.py", package, modules)):
                if target != source:
                    edges.append(Edge(source, target, node.lineno, module_level))
    return set(modules), edges


def _components(modules: set[str], out: dict[str, list[Edge]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def connect(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for e in out[v]:
            if e.target not in index:
                connect(e.target)
                low[v] = min(low[v], low[e.target])
            elif e.target in on_stack:
                low[v] = min(low[v], index[e.target])
        if low[v] == index[v]:
            component = set()
            while v not in component:
                component.add(stack.pop())
            on_stack.difference_update(component)
            if len(component) > 1:
                components.append(component)

    for m in sorted(modules):
        if m not in index:
            connect(m)
    return components


def _shortest_cycle(start: str, out: dict[str, list[Edge]], component: set[str]) -> list[Edge]:
    paths, frontier = {start: []}, [start]
    while frontier:
        following = []
        for v in frontier:
            for e in out[v]:
                if e.target == start:
                    return [*paths[v], e]
                if e.target in component and e.target not in paths:
                    paths[e.target] = [*paths[v], e]
                    following.append(e.target)
        frontier = following
    raise AssertionError(f"{start} is in a strongly connected component but on no cycle")


def cycles(modules: set[str], edges: list[Edge]) -> list[tuple[list[Edge], set[str]]]:
    """For each circle of imports among the package's modules: one shortest cycle through it, and its modules."""
    out = {m: sorted((e for e in edges if e.source == m and e.target in modules), key=lambda e: e.target)
           for m in modules}
    return [(_shortest_cycle(min(c), out, c), c) for c in _components(modules, out)]


@pytest.fixture(scope="module")
def graph():
    return import_graph()


def test_no_import_cycle(graph):
    found = cycles(*graph)
    if found:
        pytest.fail("import cycles in jaxnn/ (module:line of each import, in order):\n" + "\n".join(
            " -> ".join(f"{e.source}:{e.line}" for e in cycle) + f" -> {cycle[0].source}   (one path through a "
            f"circle of {len(members)}: {', '.join(sorted(members))})" for cycle, members in found), pytrace=False)


def test_layers_import_nothing_above_them(graph):
    _, edges = graph
    bad = [e for e in edges if _encloses(f"{PACKAGE}.layers", e.source)
           and any(_encloses(p, e.target) or e.target.startswith(p + "_") for p in ABOVE_LAYERS)]
    if bad:
        pytest.fail("jaxnn.layers imports modules above it:\n" + "\n".join(map(str, bad)), pytrace=False)


def test_leaves_import_only_leaves(graph):
    modules, edges = graph
    bad = [e for e in edges if e.source in LEAVES and e.target in modules and e.target not in LEAVES]
    if bad:
        pytest.fail(f"leaf modules ({', '.join(sorted(LEAVES))}) import other jaxnn modules:\n"
                    + "\n".join(map(str, bad)), pytrace=False)


def test_training_does_not_import_tensorflow_when_imported(graph):
    """No chain of module-level imports leads from jaxnn.training to TensorFlow (data/ imports it lazily)."""
    modules, edges = graph
    module_level = [e for e in edges if e.module_level]
    chains = {e.source: [e] for e in module_level if e.target in TENSORFLOW}
    grew = True
    while grew:
        grew = False
        for e in module_level:
            if e.target in chains and e.source not in chains:
                chains[e.source], grew = [e, *chains[e.target]], True
    bad = [chain for m, chain in sorted(chains.items())  # each chain from where it leaves jaxnn.training
           if _encloses(f"{PACKAGE}.training", m) and not _encloses(f"{PACKAGE}.training", chain[0].target)]
    if bad:
        pytest.fail("jaxnn.training imports TensorFlow at module level:\n"
                    + "\n".join(", ".join(map(str, chain)) for chain in bad), pytrace=False)


def test_import_jaxnn_does_not_import_tensorflow():
    code = f"import sys, jaxnn; print(*sorted(m for m in sys.modules if m.split('.')[0] in {TENSORFLOW!r}))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=dict(os.environ, JAX_PLATFORMS="cpu"),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert not done.stdout.split(), f"`import jaxnn` imported {', '.join(done.stdout.split()[:5])} ..."


def test_the_checker_on_a_made_up_package(tmp_path):
    """Relative, lazy and package imports become the right edges; a package's __init__ re-exporting its
    submodules is no cycle, a lazy import back up is one."""
    files = {
        "pkg/__init__.py": "from pkg import leaf\nfrom pkg.sub import Thing\n",
        "pkg/leaf.py": "import os.path\n",
        "pkg/sub/__init__.py": "from .thing import Thing\n",
        "pkg/sub/thing.py": "from pkg import leaf\n\n\ndef f():\n    from pkg.top import g\n",
        "pkg/top.py": "from pkg.sub import thing\nimport tensorflow as tf\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    modules, edges = import_graph(tmp_path, "pkg")
    assert modules == {"pkg", "pkg.leaf", "pkg.sub", "pkg.sub.thing", "pkg.top"}
    assert {(e.source, e.target, e.module_level) for e in edges} == {
        ("pkg", "pkg.leaf", True), ("pkg", "pkg.sub", True), ("pkg.leaf", "os", True),
        ("pkg.sub", "pkg.sub.thing", True), ("pkg.sub.thing", "pkg.leaf", True),
        ("pkg.sub.thing", "pkg.top", False), ("pkg.top", "pkg.sub", True),
        ("pkg.top", "pkg.sub.thing", True), ("pkg.top", "tensorflow", True)}
    [(cycle, members)] = cycles(modules, edges)
    assert [str(e) for e in cycle] == ["pkg.sub:1 -> pkg.sub.thing", "pkg.sub.thing:5 -> pkg.top",
                                       "pkg.top:1 -> pkg.sub"]
    assert members == {"pkg.sub", "pkg.sub.thing", "pkg.top"}
