"""How the package is cut: layers that import only downwards, no loop, short modules, no twin names;
steps stand alone, TensorFlow only where needed, a served model that ships one folder."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from flow_steps.config.names import FORECAST_ENTRY_POINT, MONITOR_ENTRY_POINT, PIPELINE_STEPS
from flow_steps.deployment.packaging import PACKAGE_DIR, served_code_files
from tests.conftest import PROJECT_ROOT

STEP_MODULES = (*PIPELINE_STEPS, FORECAST_ENTRY_POINT, MONITOR_ENTRY_POINT)
# The layers, bottom first: a module imports only from its own layer and those below it. Modules at the
# top of flow_steps/ (the entry points) may import any layer.
LAYERS = ("config", "data", "model", "runtime", "training", "deployment", "orchestration")
MAX_MODULE_LINES = 300


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (flow_steps.data.sources -> its file)."""
    return {
        ".".join(("flow_steps", *path.relative_to(PACKAGE_DIR).with_suffix("").parts)): path
        for path in sorted(PACKAGE_DIR.rglob("*.py"))
        if "__pycache__" not in path.parts and path.name != "__init__.py"
    }


def imports_of(path: Path) -> set[str]:
    """The modules of ours a file imports (`from flow_steps.x import y` counts as flow_steps.x)."""
    tree = ast.parse(path.read_text())
    found = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    found |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    return {name for name in found if name.split(".")[0] == "flow_steps" and name != "flow_steps"}


def layer(module: str) -> int:
    """A module's layer, counted from the bottom; entry points are above every layer."""
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 2 else len(LAYERS)


def test_every_module_imports_only_its_own_layer_and_those_below():
    upward = [
        f"{module} -> {imported}"
        for module, path in modules().items()
        for imported in imports_of(path)
        if layer(imported) > layer(module)
    ]
    assert upward == []


def test_no_modules_import_each_other_in_a_loop():
    graph = {module: imports_of(path) & set(modules()) for module, path in modules().items()}
    done, on_path = set(), []

    def visit(module: str) -> None:
        assert module not in on_path, " -> ".join([*on_path[on_path.index(module) :], module])
        if module in done:
            return
        on_path.append(module)
        for imported in sorted(graph[module]):
            visit(imported)
        on_path.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)


def test_no_module_is_longer_than_a_screenful_or_three():
    long = {module: len(path.read_text().splitlines()) for module, path in modules().items()}
    assert {module: lines for module, lines in long.items() if lines > MAX_MODULE_LINES} == {}


def test_no_two_names_differ_only_by_a_suffix():
    """`monitor` and `monitoring`, `forecast` and `forecaster` read as twins: one of them must go."""
    names = {part for module in modules() for part in module.split(".")[1:]}
    twins = [(a, b) for a in sorted(names) for b in sorted(names) if a != b and b.startswith(a)]
    assert twins == []


def test_data_never_imports_mlflow_and_the_model_only_in_its_pyfunc():
    for module, path in modules().items():
        tree = ast.parse(path.read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        uses_mlflow = any(name.split(".")[0] == "mlflow" for name in imported)
        if module.startswith("flow_steps.data.") or (
            module.startswith("flow_steps.model.") and module not in PYFUNC_MODULES
        ):
            assert not uses_mlflow, module


PYFUNC_MODULES = {"flow_steps.model.pyfunc", "flow_steps.model.from_code"}


def printed_json(script: str):
    """What a fresh interpreter running `script` prints as JSON on its last line."""
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def imported_after(statement: str) -> set[str]:
    """Module names a fresh interpreter has loaded after running `statement`."""
    return set(printed_json(f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"))


LEAN_STEPS = ("download_raw_data", "transform_data", "forecast", "register_model")  # they train nothing


@pytest.fixture(scope="module")
def loaded_by() -> dict[str, set[str]]:
    """The modules the driver and each lean step add to sys.modules, imported in turn in one fresh
    interpreter (one start-up instead of five): a module that loads TensorFlow shows it in its own set,
    or in the set of the first one to import it, whose test then fails."""
    names = ["main", *(f"flow_steps.{step}" for step in LEAN_STEPS)]
    script = (
        "import importlib, json, sys\n"
        "added = {}\n"
        f"for name in {names!r}:\n"
        "    before = set(sys.modules)\n"
        "    importlib.import_module(name)\n"
        "    added[name] = sorted(set(sys.modules) - before)\n"
        "print(json.dumps(added))"
    )
    return {name: set(added) for name, added in printed_json(script).items()}


@pytest.mark.slow
@pytest.mark.parametrize("module", LEAN_STEPS)
def test_steps_that_train_nothing_do_not_import_tensorflow(module, loaded_by):
    assert not {"tensorflow", "keras"} & loaded_by[f"flow_steps.{module}"]


@pytest.mark.slow
def test_the_driver_does_not_import_tensorflow(loaded_by):
    assert not {"tensorflow", "keras"} & loaded_by["main"]


@pytest.mark.parametrize("module", STEP_MODULES)
def test_steps_never_import_other_steps(module):
    tree = ast.parse((PACKAGE_DIR / f"{module}.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    imported |= {
        alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    others = {f"flow_steps.{step}" for step in STEP_MODULES if step != module}
    assert not imported & others


@pytest.mark.slow
def test_the_served_model_imports_only_what_it_ships():
    """Everything of ours that serving imports is shipped; outside model/, nothing else is."""
    loaded = imported_after("import flow_steps.model.from_code")
    needed = set()
    for name in (name for name in loaded if name.split(".")[0] == "flow_steps"):
        module = PACKAGE_DIR.joinpath(*name.split(".")[1:])
        path = module / "__init__.py" if module.is_dir() else module.with_suffix(".py")
        needed.add(path.relative_to(PACKAGE_DIR).as_posix())
    shipped = set(served_code_files())
    assert needed <= shipped, needed - shipped
    assert {name for name in shipped if not name.startswith("model/")} <= needed


# Keras's own keys in a fit's logs and history (training/lstm.py names them once): not names of ours.
NOT_OURS = {"val_loss": "Keras's history key"}


def string_literals(path: Path) -> set[str]:
    """The strings a module writes as literals, docstrings left out."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    }


def test_tag_metric_and_artifact_names_are_written_only_in_config_names():
    """A name of config/names.py (of more than one word: `test_coverage_80`, `monitor/by_version.csv`)
    written as a literal elsewhere is a second place for it; parameter names are declared elsewhere."""
    from flow_steps.config import names
    from flow_steps.config.entry_points import BY_ENTRY_POINT

    ours = {
        value: constant
        for constant, value in vars(names).items()
        if constant.isupper() and isinstance(value, str) and ("_" in value or "/" in value)
    }
    parameters = {param.name for entry in BY_ENTRY_POINT.values() for param in entry.params}
    written_twice = sorted(
        f"{module} writes {value!r} instead of {ours[value]}"
        for module, path in modules().items()
        if module != "flow_steps.config.names"
        for value in string_literals(path) & set(ours)
        if value not in parameters and value not in NOT_OURS
    )
    assert written_twice == []


def test_the_names_check_sees_a_planted_literal(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text('"""Doc: test_coverage_80 in a docstring is fine."""\nKEY = "test_coverage_80"\n')
    assert string_literals(planted) == {"test_coverage_80"}


def test_every_module_is_on_the_architecture_page():
    """docs/architecture.md names every module of the package (by its path under flow_steps/, or its file
    name on the line of its folder), so that the page cannot fall behind the code."""
    page = (PROJECT_ROOT / "docs" / "architecture.md").read_text()
    missing = [
        path.relative_to(PACKAGE_DIR).as_posix()
        for path in modules().values()
        if path.relative_to(PACKAGE_DIR).as_posix() not in page and path.name not in page
    ]
    assert missing == []


NOT_THE_PROJECT = {".git", "mutants", "build", "node_modules", "__pycache__"}  # copies, caches, tools


def project_sources() -> list[Path]:
    """Every Python file of the project (no virtual environment, no mutmut copy, no cache)."""
    return [
        path
        for path in PROJECT_ROOT.rglob("*.py")
        if not NOT_THE_PROJECT.intersection(path.relative_to(PROJECT_ROOT).parts)
        and not any(part.startswith((".venv", "venv")) for part in path.relative_to(PROJECT_ROOT).parts)
    ]


def test_no_file_of_the_project_changes_sys_path_and_no_test_hook_is_read_by_the_package():
    """Imports work because the project is installed (`-e .`), never by patching the import path; tests
    patch or inject what they need, the shipped package reads no FLOW_STEPS_TEST_* variable."""
    sources = project_sources()
    assert PROJECT_ROOT / "deploy" / "team_server.py" in sources  # the scan sees the project
    patched = [str(path) for path in sources if "sys" + ".path" in path.read_text()]
    hooks = [
        str(p) for p in (PROJECT_ROOT / "flow_steps").rglob("*.py") if "FLOW_STEPS_" + "TEST" in p.read_text()
    ]
    assert (patched, hooks) == ([], [])
