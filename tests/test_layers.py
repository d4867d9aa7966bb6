"""The layering rule, checked on the source: library modules never import the layers above them."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "edgekd"
UPPER = ("edgekd.cli", "edgekd.api", "edgekd.pipeline", "edgekd.recipe", "edgekd.stages", "edgekd.bench")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def is_upper(name: str) -> bool:
    return any(name == upper or name.startswith(upper + ".") for upper in UPPER)


def test_library_modules_import_nothing_above_them():
    library = [p for p in PACKAGE.rglob("*.py") if not is_upper(module_name(p)) and module_name(p) != "edgekd"]
    assert len(library) > 40  # the walk found the package
    violations = {module_name(p): sorted(n for n in imported(p) if is_upper(n)) for p in library}
    assert {m: v for m, v in violations.items() if v} == {}


def test_importing_edgekd_loads_no_heavy_backend():
    code = ("import sys, edgekd; print(sorted(m for m in ('onnxruntime', 'nncf', 'torch_pruning', 'onnxsim', "
            "'tensorrt', 'openvino') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_the_public_names_resolve():
    import edgekd

    for name in edgekd.__all__:
        assert getattr(edgekd, name) is not None, name
    from edgekd import Benchmark, Distill, Export, Factorize, Prune, Quantize, compress  # noqa: F401
    assert Prune(reduction=0.3, recovery={"train": {"epochs": 1}}).recovery.train.lr == 0.01  # merged, not reset
