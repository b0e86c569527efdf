"""The layering: inference without the trainer, evaluation without Lightning's training package."""

import ast
import subprocess
import sys
from pathlib import Path

import karmma

PACKAGE = Path(karmma.__file__).parent


def _imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function (absolute names)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


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


def test_the_static_check_sees_imports_inside_functions(tmp_path):
    source = tmp_path / "example.py"
    source.write_text("def f():\n    from karmma.training.run import train\n    import lightning\n")
    assert {"karmma.training.run", "lightning"} <= _imported_modules(source)


def _printed_by_fresh_interpreter(code: str) -> str:
    """What ``code`` prints in a new Python process (which must succeed)."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


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
    code = "import sys, karmma.training.checkpoints; print('lightning' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "True", done.stderr


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
