"""The layers of docs/architecture.md, enforced: every rule of its table and of "Who may import whom".

The static checks read every module of ``src/karmma`` with ``ast`` (imports at the top and inside
functions alike) and the layer table from the document itself, so the document and the code
cannot drift apart. The fresh-interpreter checks say what an import really loads.
"""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import karmma

PACKAGE = Path(karmma.__file__).parent
ARCHITECTURE = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"
LAYER_NAMES = [
    "base",
    "models",
    "losses",
    "data",
    "model files",
    "measurement",
    "program: training",
    "program: evaluation",
    "program: deploy",
    "program: demo",
    "program: experiments",
    "program: CLI",
]


def _imported_modules(path: Path, annotations: bool = True) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function (absolute names);
    ``annotations=False`` leaves out the imports under ``if TYPE_CHECKING:`` (they never run)."""
    tree = ast.parse(path.read_text(), str(path))
    skipped = set()
    if not annotations:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                skipped |= {id(inner) for statement in node.body for inner in ast.walk(statement)}
    names = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def _module_files() -> dict[str, Path]:
    """``{"karmma.data.views": path, ...}``: every module and package of src/karmma."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


MODULES = _module_files()


def _import_graph(annotations: bool = True) -> dict[str, set[str]]:
    """``{module: the karmma modules it imports}`` (``from karmma.data import views`` is
    karmma.data.views; a name that is no module is its module's); the package root is left out."""

    def resolve(name: str) -> str:
        while name not in MODULES:
            name = name.rpartition(".")[0]
        return name

    graph = {}
    for module, path in MODULES.items():
        names = {n for n in _imported_modules(path, annotations) if n == "karmma" or n.startswith("karmma.")}
        graph[module] = {resolve(n) for n in names} - {module, "karmma"}
    return graph


def _layer_table() -> list[tuple[str, list[str]]]:
    """``[(layer, [module or package names])]`` of the table under "## Layers", in its order."""
    section = ARCHITECTURE.read_text().split("\n## Layers\n", 1)[1].split("\n### ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or cells[0] == "Layer" or not cells[0].strip("-"):
            continue
        listed = re.sub(r"\([^)]*\)", "", cells[1])  # "`models/` (`karmma.py`, ...)": the folder is the entry
        names = [
            "karmma." + name.removesuffix(".py").rstrip("/").replace("/", ".")
            for name in re.findall(r"`([^`]+)`", listed)
        ]
        rows.append((cells[0], names))
    return rows


TABLE = _layer_table()
RANK = {layer: rank for rank, (layer, _) in enumerate(TABLE)}


def _layer(module: str) -> str:
    """The layer of ``module``: the table's entry that is the module or the package holding it."""
    for layer, names in TABLE:
        if any(module == name or module.startswith(name + ".") for name in names):
            return layer
    raise KeyError(f"{module} is in no layer of {ARCHITECTURE.name}")


GRAPH = _import_graph()


def _imports_into(modules, allowed) -> list[str]:
    """``"karmma.x imports karmma.y (layer)"`` for every import of ``modules`` outside ``allowed(module, target)``."""
    return [
        f"{module} imports {target} ({_layer(target)})"
        for module in sorted(modules)
        for target in sorted(GRAPH[module])
        if not allowed(module, target)
    ]


def _in_layer(layer: str) -> list[str]:
    found = [m for m in MODULES if m != "karmma" and _layer(m) == layer]
    assert found, layer
    return found


def test_the_table_is_read_with_every_layer_in_its_order():
    assert [layer for layer, _ in TABLE] == LAYER_NAMES
    assert all(names for _, names in TABLE)


def test_every_module_is_in_exactly_one_layer():
    for module in MODULES:
        if module == "karmma":
            continue
        layers = [layer for layer, names in TABLE if any(module == n or module.startswith(n + ".") for n in names)]
        assert len(layers) == 1, f"{module}: {layers or 'in no layer'} of {ARCHITECTURE.name}'s table"
    listed = [name for _, names in TABLE for name in names]
    assert not [name for name in listed if name not in MODULES], "the table names a module that does not exist"


def test_a_library_module_imports_only_its_own_layer_or_those_above_it():
    library = [m for m in MODULES if m != "karmma" and not _layer(m).startswith("program")]
    offenders = _imports_into(library, lambda module, target: RANK[_layer(target)] <= RANK[_layer(module)])
    assert not offenders, offenders


#: the programs another program may import (docs/architecture.md, "Who may import whom")
PROGRAMS_IMPORTED = {
    "program: experiments": {"program: training", "program: evaluation"},
    "program: demo": {layer for layer in LAYER_NAMES if layer.startswith("program")},
    "program: CLI": {layer for layer in LAYER_NAMES if layer.startswith("program")},
}


def test_a_program_imports_the_library_and_no_other_program_except_the_studies_the_demo_and_the_cli():
    def allowed(module, target):
        own, theirs = _layer(module), _layer(target)
        return not theirs.startswith("program") or theirs == own or theirs in PROGRAMS_IMPORTED.get(own, ())

    programs = [m for m in MODULES if m != "karmma" and _layer(m).startswith("program")]
    offenders = _imports_into(programs, allowed)
    assert not offenders, offenders


def test_nothing_imports_the_demo_or_the_cli():
    def is_cli(module: str) -> bool:
        return module == "karmma.cli" or module.startswith("karmma.cli.")

    importers = sorted(
        m
        for m, targets in GRAPH.items()
        if any(t == "karmma.demo" or is_cli(t) for t in targets) and not is_cli(m) and m != "karmma.__main__"
    )  # the CLI runs the demo; `python -m karmma` runs the CLI
    assert not importers, importers


@pytest.mark.parametrize(
    "module, allowed",
    [
        ("karmma.modalities", set()),
        ("karmma.availability", set()),
        ("karmma.io", set()),
        ("karmma.parallel", set()),
        ("karmma.devices", set()),
        ("karmma.configs", set()),
        ("karmma.configuration", {"karmma.io"}),
        ("karmma.train_config", {"karmma.configuration", "karmma.modalities"}),
        ("karmma.checkpoints", {"karmma.train_config"}),
    ],
)
def test_a_base_module_imports_only_what_its_rule_allows(module, allowed):
    assert _layer(module) == "base"
    assert GRAPH[module] <= allowed, sorted(GRAPH[module] - allowed)


def test_models_and_presets_import_only_the_base_and_the_models():
    offenders = _imports_into(_in_layer("models"), lambda _, target: _layer(target) in ("base", "models"))
    assert not offenders, offenders
    assert "karmma.presets" in _in_layer("models")


def test_losses_import_nothing_of_karmma():
    assert not [t for m in _in_layer("losses") for t in GRAPH[m]]


def test_data_imports_only_the_base_never_the_models():
    """A dataset yields tensors of the shapes it is given."""
    offenders = _imports_into(_in_layer("data"), lambda _, target: _layer(target) in ("base", "data"))
    assert not offenders, offenders


def test_the_measurement_imports_the_base_the_models_and_the_data():
    allowed = ("base", "models", "data", "measurement")
    offenders = _imports_into(_in_layer("measurement"), lambda _, target: _layer(target) in allowed)
    assert not offenders, offenders


def test_deploy_and_evaluation_never_import_the_training_package():
    offenders = []
    for folder in ("deploy", "evaluation"):
        files = sorted((PACKAGE / folder).glob("*.py"))
        assert files, folder
        for path in files:
            bad = sorted(
                m for m in _imported_modules(path) if m == "karmma.training" or m.startswith("karmma.training.")
            )
            offenders += [f"{path.relative_to(PACKAGE.parent)} imports {m}" for m in bad]
    assert not offenders, offenders


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_in_the_package():
    """Imports inside functions count; annotation-only imports (``if TYPE_CHECKING:``) never run."""
    assert _cycles(_import_graph(annotations=False)) == []


def test_the_cycle_check_can_fail():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_static_check_sees_imports_inside_functions_and_only_annotations_skip(tmp_path):
    source = tmp_path / "example.py"
    source.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import karmma.demo\n"
        "def f():\n    from karmma.training.run import train\n    import lightning\n"
    )
    assert {"karmma.training.run", "lightning", "karmma.demo"} <= _imported_modules(source)
    assert "karmma.demo" not in _imported_modules(source, annotations=False)
    assert "karmma.training.run" in _imported_modules(source, annotations=False)


def _printed_by_fresh_interpreter(code: str) -> str:
    """What ``code`` prints in a new Python process (which must succeed), importing this karmma."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PACKAGE.parent), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_config_layer_loads_no_torch_no_models_and_no_data_code():
    """Parsing a training config is cheap: the typed configs need none of them."""
    code = (
        "import sys, karmma.train_config\n"
        "from karmma.configuration import load_config\n"
        "load_config(karmma.train_config.TrainConfig, None, ['stage=teacher', 'clip.num_crops=3'])\n"
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'lightning')"
        " or m.startswith(('karmma.models', 'karmma.data', 'karmma.training')))))\n"
    )
    loaded = _printed_by_fresh_interpreter(code)
    assert loaded == "", f"importing karmma.train_config loaded {loaded}"


def test_importing_karmma_deploy_loads_neither_lightning_nor_the_preparation_nor_training():
    """In a fresh interpreter: a robot image running a student needs none of them."""
    code = (
        "import sys, karmma.deploy, karmma.deploy.stream, karmma.deploy.onnx_export, karmma.artifacts\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'tensorboard', 'tensorboardX')"
        " or m == 'karmma.data.prepare' or m == 'karmma.training' or m.startswith('karmma.training.'))\n"
        "print(' '.join(bad))\n"
    )
    loaded = _printed_by_fresh_interpreter(code)
    assert loaded == "", f"importing karmma.deploy loaded {loaded}"


def test_the_fresh_interpreter_check_can_fail():
    code = "import sys, karmma.data.dataset; print('torch' in sys.modules)"
    assert _printed_by_fresh_interpreter(code) == "True"


def test_the_light_install_path_imports_no_torch():
    """The CLI's parser and the ONNX side of deployment (what `pip install .` without [train] runs)."""
    code = (
        "import sys, karmma.cli, karmma.deploy, karmma.deploy.stream, karmma.deploy.runtime\n"
        "import karmma.deploy.session, karmma.deploy.rosbag\n"
        "karmma.cli.build_parser().parse_args(['predict', 'student-onnx', 'clip.mp4', '--json'])\n"
        "karmma.cli.build_parser().parse_args(['predict', 'student-onnx', 'b.mcap', '--image-topic', '/c'])\n"
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in karmma.cli.TRAINING_PACKAGES)))\n"
    )
    loaded = _printed_by_fresh_interpreter(code)
    assert loaded == "", f"the light install's path loaded {loaded}"
