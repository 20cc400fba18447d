"""The import rules of the project, checked by reading the source (an AST scan; nothing is imported).

1. Layers: ``experiments -> biocodec_jax -> data_pipelines``. A module imports its own layer or one
   below it: ``experiments`` may import anything, ``biocodec_jax`` may import ``data_pipelines``,
   ``data_pipelines`` neither of the others (type-hint-only imports included: a dependency is one).
2. No circular imports between our modules. Module-level and function-level imports both count (a
   cycle held apart by a function-local import is still two modules that need each other); imports
   under ``if TYPE_CHECKING:`` do not, as they never run.
3. A function-local import is of an optional dependency (:data:`OPTIONAL`), or of one of our modules
   that needs one at import time, or, in the files of :data:`LAZY_COMPUTE` only, of JAX and the modules
   that import it, or one of the few of :data:`LAZY_IMPORTS`, each with its reason; every other import
   is at the top of its module, where a reader sees what the module depends on.

Each failure names ``file:line`` of the import. :func:`scan` takes any root, so the tests at the end
check the checker on a planted tree.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Lower index, lower layer: a module may import its own layer and those before it.
LAYERS = ("data_pipelines", "biocodec_jax", "experiments")

# Optional dependencies (setup.cfg extras, or not needed on every path), each with why it is imported
# where it is used rather than at the top of the module.
OPTIONAL = {
    "torch": "the [torch] extra: interop, the PyTorch twin and the baselines; reading .pt files needs no torch",
    "braindecode": "the [baselines] extra (EEGNet, ShallowFBCSPNet)",
    "matplotlib": "figures only (report, confusion matrices); ~0.5 s to import, and the library computes without it",
    "tensorboardX": "TensorBoard event files, written by process 0 only when a run logs to TensorBoard",
    "scipy": "polyphase resampling only (data_pipelines.preprocess, when a rate changes): ~1 s to import, which "
    "--help, the shard readers and prepare's workers before their first resampling need not pay",
    "apache_beam": "the [beam] extra: prepare / tokenize as Beam pipelines (--runner direct|dataflow|flink|spark)",
}

# Files that may import the compute stack (HEAVY, or our modules that import it) inside a function,
# each with why.
LAZY_COMPUTE = {
    "biocodec_jax/cli.py": "each of prepare's spawned workers re-imports the console script, and --help runs it: "
    "neither should pay ~1.3 s and ~180 MB for JAX, Orbax and Grain; a command imports them when it runs",
}
HEAVY = ("jax", "jaxlib", "flax", "optax", "orbax", "grain")
# Single function-local imports of our modules, (file, module): why each cannot be at the top.
LAZY_IMPORTS = {
    ("experiments/benchmarks/device_suite.py", "experiments.benchmarks.compare_pytorch"):
        "only without --windows: it reads the bundled EDF files through prepare (MNE), which the accelerator "
        "machine may lack; there the suite reads .device/windows.npy",
}


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, e.g. "biocodec_jax.codec"
    target: str  # the imported module (ours or external), e.g. "biocodec_jax.config", "numpy"
    path: Path  # the importing file, relative to the root
    line: int
    local: bool  # inside a function
    type_checking: bool  # under `if TYPE_CHECKING:`
    implied: bool = False  # a package above the named module, whose __init__ runs first

    def where(self) -> str:
        return f"{self.path}:{self.line}"


def module_name(path: Path) -> str:
    parts = list(path.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _resolve(node: ast.ImportFrom, source: str, is_package: bool) -> str:
    """The absolute module a ``from ... import`` names (relative imports resolved against ``source``)."""
    if not node.level:
        return node.module or ""
    base = source.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(path: Path, root: Path, modules: set[str]) -> list[Import]:
    """Every import statement in ``path``, each resolved to the modules it makes Python run.

    ``from a.b import c`` names ``a.b.c`` when that is one of ``modules``, else ``a.b``. Importing a
    module also runs the ``__init__`` of each package above it that does not also hold the importer
    (those have run already): edges to those count too.
    """
    rel = path.relative_to(root)
    source = module_name(rel)
    is_package = rel.name == "__init__.py"
    found: list[Import] = []

    def add(target: str, node: ast.stmt, local: bool, type_checking: bool) -> None:
        parts = target.split(".")
        own = {".".join(source.split(".")[:k]) for k in range(1, source.count(".") + 2)}
        for i in range(1, len(parts)):
            parent = ".".join(parts[:i])
            if parent in modules and parent not in own:
                found.append(Import(source, parent, rel, node.lineno, local, type_checking, implied=True))
        found.append(Import(source, target, rel, node.lineno, local, type_checking))

    def visit(node: ast.AST, local: bool, type_checking: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    add(alias.name, child, local, type_checking)
            elif isinstance(child, ast.ImportFrom):
                base = _resolve(child, source, is_package)
                for alias in child.names:
                    sub = f"{base}.{alias.name}"
                    add(sub if sub in modules else base, child, local, type_checking)
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    visit(ast.Module(body=[stmt], type_ignores=[]), local, True)
                for stmt in child.orelse:
                    visit(ast.Module(body=[stmt], type_ignores=[]), local, type_checking)
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child, True, type_checking)
            else:
                visit(child, local, type_checking)

    visit(ast.parse(path.read_text(), filename=str(path)), False, False)
    return found


def scan(root: Path = ROOT, packages: tuple[str, ...] = LAYERS) -> tuple[set[str], list[Import]]:
    """Our modules under ``root`` and every import in them (to ours and to external modules)."""
    files = sorted(f for p in packages if (root / p).is_dir() for f in (root / p).rglob("*.py"))
    modules = {module_name(f.relative_to(root)) for f in files}
    return modules, [i for f in files for i in imports_of(f, root, modules)]


def _ours(target: str, modules: set[str]) -> bool:
    return target in modules


def _top(name: str) -> str:
    return name.split(".")[0]


def _sorted(found: dict[tuple[Path, int, str], str]) -> list[str]:
    """Messages in file, then line order, each once (``from a import x, y`` is one import of ``a``)."""
    return [found[k] for k in sorted(found)]


def layer_violations(modules: set[str], imports: list[Import]) -> list[str]:
    found = {}
    for i in imports:
        if i.implied:
            continue
        src, dst = _top(i.source), _top(i.target)
        if src in LAYERS and dst in LAYERS and LAYERS.index(dst) > LAYERS.index(src):
            found[(i.path, i.line, i.target)] = (
                f"{i.where()}: {i.source} (layer {src}) imports {i.target} (layer {dst}, above it); "
                f"imports run {' -> '.join(reversed(LAYERS))}")
    return _sorted(found)


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components (iterative), each sorted; only those of 2+ modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))
    return components


def cycle_violations(modules: set[str], imports: list[Import]) -> list[str]:
    runtime = [i for i in imports if not i.type_checking and _ours(i.target, modules) and i.target != i.source]
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for i in runtime:
        graph[i.source].add(i.target)
    out = []
    for component in _strongly_connected(graph):
        members = set(component)
        edges = sorted({f"{i.where()} ({i.source} -> {i.target}{', in a function' if i.local else ''})"
                        for i in runtime if i.source in members and i.target in members})
        out.append(f"circular imports among {', '.join(component)}:\n    " + "\n    ".join(edges))
    return out


def needs(modules: set[str], imports: list[Import], externals) -> set[str]:
    """Our modules that import one of the ``externals`` (top-level names) when imported, directly or through ours."""
    top_level = [i for i in imports if not i.local and not i.type_checking]
    needing = {i.source for i in top_level if _top(i.target) in externals}
    grown = True
    while grown:
        more = {i.source for i in top_level if i.target in needing} - needing
        needing |= more
        grown = bool(more)
    return needing


def local_import_violations(modules: set[str], imports: list[Import]) -> list[str]:
    optional = needs(modules, imports, OPTIONAL)
    heavy = needs(modules, imports, HEAVY)
    found = {}
    for i in imports:
        if not i.local or i.type_checking or i.implied or _top(i.target) in OPTIONAL or i.target in optional:
            continue
        if str(i.path) in LAZY_COMPUTE and (_top(i.target) in HEAVY or i.target in heavy):
            continue
        if (str(i.path), i.target) in LAZY_IMPORTS:
            continue
        found[(i.path, i.line, i.target)] = (f"{i.where()}: function-local import of {i.target} (not an optional "
                                             "dependency; import it at the top of the module)")
    return _sorted(found)


def _report(kind: str, violations: list[str]) -> str:
    files = sorted({v.split(":")[0] for v in violations if not v.startswith("circular")})
    summary = f"{len(violations)} {kind}" + (f" in {len(files)} file(s)" if files else "")
    return summary + ":\n" + "\n".join(violations)


# ---------------------------------------------------------------------------------------------
# The rules on the project.


def test_layers():
    violations = layer_violations(*scan())
    assert not violations, _report("imports of a higher layer", violations)


def test_no_circular_imports():
    violations = cycle_violations(*scan())
    assert not violations, _report("import cycles", violations)


def test_function_local_imports_only_of_optional_dependencies():
    violations = local_import_violations(*scan())
    assert not violations, _report("function-local imports", violations)


# ---------------------------------------------------------------------------------------------
# The checker itself, on a planted tree.


def _plant(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_checker_finds_a_backwards_import(tmp_path):
    root = _plant(tmp_path, {
        "data_pipelines/__init__.py": "",
        "data_pipelines/prepare.py": "import json\n\nimport experiments\n",
        "biocodec_jax/__init__.py": "",
        "biocodec_jax/codec.py": "from data_pipelines import prepare\n",
        "experiments/__init__.py": "",
        "experiments/demo.py": "from biocodec_jax.codec import x\n",
    })
    assert layer_violations(*scan(root)) == [
        "data_pipelines/prepare.py:3: data_pipelines.prepare (layer data_pipelines) imports experiments "
        "(layer experiments, above it); imports run experiments -> biocodec_jax -> data_pipelines"]


def test_checker_counts_type_hints_for_layers_but_not_for_cycles(tmp_path):
    root = _plant(tmp_path, {
        "data_pipelines/__init__.py": "",
        "data_pipelines/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from biocodec_jax import b\n",
        "biocodec_jax/__init__.py": "",
        "biocodec_jax/b.py": "from data_pipelines import a\n",
        "biocodec_jax/c.py": "import typing\nif typing.TYPE_CHECKING:\n    from biocodec_jax.d import X\n",
        "biocodec_jax/d.py": "from biocodec_jax import c\n",
    })
    modules, imports = scan(root)
    assert [v.split(":")[:2] for v in layer_violations(modules, imports)] == [["data_pipelines/a.py", "3"]]
    assert cycle_violations(modules, imports) == []


def test_checker_finds_cycles_through_functions_and_relative_imports(tmp_path):
    root = _plant(tmp_path, {
        "biocodec_jax/__init__.py": "",
        "biocodec_jax/codec.py": "from . import streaming\n",
        "biocodec_jax/streaming.py": "def f():\n    from biocodec_jax.codec import Codec\n",
        "biocodec_jax/losses.py": "import numpy\n",
    })
    assert cycle_violations(*scan(root)) == [
        "circular imports among biocodec_jax.codec, biocodec_jax.streaming:\n"
        "    biocodec_jax/codec.py:1 (biocodec_jax.codec -> biocodec_jax.streaming)\n"
        "    biocodec_jax/streaming.py:2 (biocodec_jax.streaming -> biocodec_jax.codec, in a function)"]


def test_checker_allows_local_imports_of_optional_dependencies_only(tmp_path):
    root = _plant(tmp_path, {
        "biocodec_jax/__init__.py": "",
        "biocodec_jax/twin.py": "import torch\n",  # needs torch at import time: a local import of it is fine
        "biocodec_jax/codec.py": (
            "import numpy\n\n"
            "def to_torch():\n    import torch\n    from biocodec_jax import twin\n    return torch, twin\n\n"
            "class C:\n    def plot(self):\n        import matplotlib.pyplot as plt\n"
            "        import json\n        from biocodec_jax.losses import l\n"
        ),
        "biocodec_jax/losses.py": "l = 1\n",
    })
    assert local_import_violations(*scan(root)) == [
        "biocodec_jax/codec.py:11: function-local import of json (not an optional dependency; import it at the top of the module)",
        "biocodec_jax/codec.py:12: function-local import of biocodec_jax.losses (not an optional dependency; "
        "import it at the top of the module)",
    ]


def test_checker_lets_the_cli_import_the_compute_stack_when_a_command_runs(tmp_path):
    root = _plant(tmp_path, {
        "biocodec_jax/__init__.py": "",
        "biocodec_jax/codec.py": "import jax\n",
        "biocodec_jax/info.py": "import json\n",
        "biocodec_jax/cli.py": "def run():\n    import jax\n    from biocodec_jax import codec\n    from biocodec_jax import info\n",
        "biocodec_jax/other.py": "def run():\n    from biocodec_jax import codec\n",
    })
    assert [v.split(" (")[0] for v in local_import_violations(*scan(root))] == [
        "biocodec_jax/cli.py:4: function-local import of biocodec_jax.info",
        "biocodec_jax/other.py:2: function-local import of biocodec_jax.codec",
    ]


def test_checker_allows_the_listed_lazy_imports_only(tmp_path, monkeypatch):
    root = _plant(tmp_path, {
        "experiments/__init__.py": "",
        "experiments/a.py": "def f():\n    from experiments import b\n    from experiments import c\n",
        "experiments/b.py": "",
        "experiments/c.py": "",
    })
    monkeypatch.setitem(LAZY_IMPORTS, ("experiments/a.py", "experiments.b"), "planted")
    assert [v.split(" (")[0] for v in local_import_violations(*scan(root))] == [
        "experiments/a.py:3: function-local import of experiments.c"]


def test_the_network_core_loads_no_training_io_or_evaluation():
    """The network core (config, nn, quantization, model, losses, signal_metrics) runs without the
    training stack (Orbax, Grain), the recording readers (MNE) or evaluation: importing it loads none."""
    code = (
        "import sys\n"
        "import biocodec_jax.config, biocodec_jax.model, biocodec_jax.losses, biocodec_jax.signal_metrics\n"
        "import biocodec_jax.quantization.rvq, biocodec_jax.nn.seanet\n"
        "heavy = ('mne', 'orbax', 'grain', 'sklearn', 'biocodec_jax.training', 'biocodec_jax.evaluation',\n"
        "         'biocodec_jax.tokenizer', 'biocodec_jax.codec', 'data_pipelines.readers', 'experiments')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m in heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
