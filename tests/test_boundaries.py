"""The house rules, read from the source: each room imports its own framework, no module
imports another's private names, and the project's modules form no import cycle.

Every import counts, function-local ones included (that is where cycles used to hide). The
rules are stated in README.md's "Design" section; a deliberate exception is listed below
with its reason, and an exception that no longer occurs fails too, so the list stays true.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROOMS = {"models": "tunelab.models", "search": "tunelab.search",
         "tracking": "tunelab.tracking", "tunelab": "tunelab"}
#: framework (top-level import name) -> the only package that may import it
HOME = {"optuna": "tunelab.search", "optuna_integration": "tunelab.search",
        "optuna_dashboard": "tunelab.search",
        "mlflow": "tunelab.tracking",
        "keras": "tunelab.models", "tensorflow": "tunelab.models",
        "keras_tuner": "tunelab.models"}
#: (module, framework): why this module may import a framework outside its room
EXCEPTIONS = {
    ("tunelab.tracking.pyfunc_model", "keras"):
        "the MLflow pyfunc wrapper must load the logged Keras model where tunelab's own "
        "rooms are not installed (mlflow.pyfunc.load_model in a serving process)",
    ("tunelab.search.keras_tuner_engine", "keras_tuner"):
        "the KerasTuner adapter: `engine: keras-tuner` runs KerasTuner's own oracles",
}


def project_modules() -> dict[str, Path]:
    modules = {}
    for folder, package in ROOMS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            modules[".".join([package, *parts])] = path
    return modules


MODULES = project_modules()


def is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def imports(module: str) -> list[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) for every import in the file."""
    tree = ast.parse(MODULES[module].read_text(), filename=str(MODULES[module]))
    package = module if is_package(module) else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((target, [alias.name for alias in node.names], node.lineno))
    return found


def project_edges(module: str) -> set[str]:
    """The project modules that ``module`` imports (``from pkg import sub`` counts sub)."""
    edges = set()
    for target, names, _ in imports(module):
        if target in MODULES:
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES]
            edges.update(subs or [target])
            if subs and len(subs) < len(names):  # names from the package itself too
                edges.add(target)
    edges.discard(module)
    return edges


def cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    graph = {m: project_edges(m) for m in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def framework_imports() -> dict[tuple[str, str], list[int]]:
    """(module, framework) -> lines, for imports of a framework outside its room."""
    out: dict[tuple[str, str], list[int]] = {}
    for module in MODULES:
        for target, _, line in imports(module):
            top = target.split(".")[0]
            home = HOME.get(top)
            if home and not (module == home or module.startswith(home + ".")):
                out.setdefault((module, top), []).append(line)
    return out


def test_the_project_has_modules_to_check():
    assert len(MODULES) > 40
    assert "tunelab.search.objective" in MODULES and "tunelab.models.data.dataset" in MODULES


def test_no_import_cycles():
    assert cycles() == [], "import cycles among the project's modules (break each one)"


def test_each_framework_is_imported_only_in_its_room():
    found = framework_imports()
    leaks = {f"{m} imports {fw} (line {', '.join(map(str, lines))}): move the work into "
             f"{HOME[fw].replace('tunelab.', '')}/"
             for (m, fw), lines in found.items() if (m, fw) not in EXCEPTIONS}
    assert not leaks, "\n".join(sorted(leaks))


def test_every_listed_exception_still_occurs():
    stale = set(EXCEPTIONS) - set(framework_imports())
    assert not stale, f"exceptions no longer needed, remove them from the list: {stale}"


@pytest.mark.parametrize("folder", ["models", "search", "tracking", "tunelab", "benchmarks",
                                    "tests"])
def test_no_private_name_crosses_a_module(folder):
    """``from module import _name`` reaches into another module's internals."""
    bad = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "") != "__future__":
                private = [a.name for a in node.names
                           if a.name.startswith("_") and not a.name.startswith("__")]
                if private and ((node.module or "").startswith("tunelab") or node.level):
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno} imports "
                               f"{', '.join(private)} from {'.' * node.level}{node.module or ''}")
    assert not bad, "\n".join(bad)


def test_the_checks_catch_what_they_guard(tmp_path, monkeypatch):
    """The scanner itself: a planted cycle, leak and private import are each found."""
    planted = {
        "tunelab.models.planted_a": "from tunelab.search import planted_b\nimport mlflow\n",
        "tunelab.search.planted_b": "def f():\n    from tunelab.models.planted_a import _x\n",
    }
    for name, source in planted.items():
        path = tmp_path / f"{name}.py"
        path.write_text(source)
        monkeypatch.setitem(MODULES, name, path)
    assert ["tunelab.models.planted_a", "tunelab.search.planted_b"] in cycles()
    assert ("tunelab.models.planted_a", "mlflow") in framework_imports()
    names = [n for t, n, _ in imports("tunelab.search.planted_b")
             if t == "tunelab.models.planted_a"]
    assert names == [["_x"]]


def top_level_names(module: str) -> set[str]:
    tree = ast.parse(MODULES[module].read_text())
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


@pytest.mark.parametrize("folder", ["models", "search", "tracking", "tunelab", "benchmarks",
                                    "tests"])
def test_every_project_import_resolves(folder):
    """A renamed or moved module or name leaves no import behind (function-local imports
    run only on their path, so most tests would never notice)."""
    missing = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [(a.name, []) for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                targets = [(node.module or "", [a.name for a in node.names])]
            for target, names in targets:
                if target.split(".")[0] != "tunelab":
                    continue
                if target not in MODULES:
                    missing.append(f"{path.relative_to(ROOT)}:{node.lineno}: no module {target}")
                elif not is_package(target):
                    absent = set(names) - top_level_names(target)
                    missing += [f"{path.relative_to(ROOT)}:{node.lineno}: {target} has no {n}"
                                for n in sorted(absent)]
    for module in MODULES:  # relative imports inside the rooms
        for target, _, line in imports(module):
            if target.startswith("tunelab") and target not in MODULES:
                missing.append(f"{module}:{line}: no module {target}")
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize("package", ["tunelab.models", "tunelab.search", "tunelab.tracking"])
def test_every_lazily_exported_name_loads(package):
    import importlib

    loaded = importlib.import_module(package)
    for name in loaded.__all__:
        assert getattr(loaded, name) is not None, f"{package}.{name}"
