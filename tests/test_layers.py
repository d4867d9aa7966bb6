"""The layering rule, checked on the source: library modules never import the layers above them."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "edgekd"
UPPER = ("edgekd.cli", "edgekd.api", "edgekd.pipeline", "edgekd.recipe", "edgekd.stages", "edgekd.bench", "edgekd.plan",
         "edgekd.search")  # the budget search builds and runs plans of stages: it sits beside the pipeline


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(source: str) -> set[str]:
    """The modules ``source`` imports; ``from edgekd import X`` counts as importing the module X comes from
    (edgekd's lazy ``EXPORTS``: ``compress`` is edgekd.api), or the submodule edgekd.X."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            if node.module == "edgekd":
                names.update(exported_from(alias.name) for alias in node.names)
    return names


def exported_from(name: str) -> str:
    from edgekd import EXPORTS

    return EXPORTS[name].partition(":")[0] if name in EXPORTS else f"edgekd.{name}"


def is_upper(name: str) -> bool:
    return any(name == upper or name.startswith(upper + ".") for upper in UPPER)


def test_library_modules_import_nothing_above_them():
    library = [p for p in PACKAGE.rglob("*.py") if not is_upper(module_name(p)) and module_name(p) != "edgekd"]
    assert len(library) > 40  # the walk found the package
    violations = {module_name(p): sorted(n for n in imported(p.read_text()) if is_upper(n)) for p in library}
    assert {m: v for m, v in violations.items() if v} == {}


def test_a_public_name_is_traced_to_the_module_it_comes_from():
    source = "from edgekd import Prune, compress, errors\nfrom edgekd import export_model\n"
    found = imported(source)
    assert {"edgekd.stages.prune", "edgekd.api", "edgekd.errors", "edgekd.onnx_export"} <= found
    assert sorted(n for n in found if is_upper(n)) == ["edgekd.api", "edgekd.stages.prune"]  # what a library
    # module writing this would be refused for, though it names only the package


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


def test_runtimes_take_onnx_models_and_never_reach_up_to_the_exporter():
    runtime = sorted((PACKAGE / "runtime").rglob("*.py"))
    assert len(runtime) >= 5
    assert {module_name(p) for p in runtime if "edgekd.onnx_export" in imported(p.read_text())} == set()
