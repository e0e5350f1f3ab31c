"""The layout keeps its promises: importing the product has no side effects, and its parts
depend on each other in one direction only."""

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_importing_the_product_sets_no_environment_and_starts_nothing_heavy():
    # A notebook that imports the product keeps its environment; Ray, MLflow and TensorFlow
    # are imported only by what runs a study (which sets the environment first).
    code = """
import json, os, sys
before = dict(os.environ)
import search.launch, search.study, search.space, search.environment, search.errors
changed = sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k))
print(json.dumps({"changed": changed, "heavy": sorted(m for m in ("ray", "mlflow", "tensorflow") if m in sys.modules)}))
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"changed": [], "heavy": []}


def test_the_entry_point_sets_the_study_environment_and_a_users_setting_wins(monkeypatch):
    from search import environment

    monkeypatch.setenv("RAY_DEDUP_LOGS", "1")  # the user's own
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.delenv("TUNE_DISABLE_SIGINT_HANDLER", raising=False)
    environment.prepare(None)
    workers = environment.for_workers()
    assert workers["RAY_DEDUP_LOGS"] == "1"
    # A local Ray needs no authentication; the study's handler takes Ctrl-C.
    assert workers["RAY_AUTH_MODE"] == "disabled" and workers["TUNE_DISABLE_SIGINT_HANDLER"] == "1"


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The project's modules `path` imports anywhere in it (function-local imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            submodules = [f"{node.module}.{alias.name}" for alias in node.names if f"{node.module}.{alias.name}" in modules]
            names = submodules if len(submodules) == len(node.names) else [node.module, *submodules]
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def test_the_packages_depend_on_each_other_in_one_direction_without_cycles():
    files = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): path
        for package in ("search", "trainables")
        for path in (ROOT / package).rglob("*.py")
    }
    graph = {module: {m for m in _imports(path, set(files)) if m != module and not module.startswith(m + ".")} for module, path in files.items()}
    # Training code knows nothing of the search.
    assert not [(a, b) for a, targets in graph.items() if a.startswith("trainables") for b in targets if b.startswith("search")]
    # The layers, lowest first: a module imports only from its own layer or lower ones.
    layers = [
        ("trainables",),
        ("search.errors", "search.space"),
        ("search.methods",),
        ("search.record",),
        ("search.compute", "search.environment"),
        ("search.study",),
        ("search.launch", "search.pick"),
    ]

    def layer(module: str) -> int:
        return next(i for i, prefixes in enumerate(layers) if any(module == p or module.startswith(p + ".") for p in prefixes))

    upward = [(a, b) for a, targets in graph.items() for b in targets if layer(b) > layer(a)]
    assert upward == []
    # No cycles, function-local imports included.
    visiting, done, cycles = set(), set(), []

    def visit(module: str, path: list[str]) -> None:
        visiting.add(module)
        for target in graph[module]:
            if target in visiting:
                cycles.append([*path[path.index(target):], target] if target in path else [module, target])
            elif target not in done:
                visit(target, [*path, target])
        visiting.discard(module)
        done.add(module)

    for module in graph:
        if module not in done:
            visit(module, [module])
    assert cycles == []
