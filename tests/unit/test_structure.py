"""How the package is cut: steps stand alone, TensorFlow only where needed, a lean served model."""

import ast
import json
import subprocess
import sys

import pytest

from flow_steps.config.names import FORECAST_ENTRY_POINT, MONITOR_ENTRY_POINT, PIPELINE_STEPS
from flow_steps.train_model import PACKAGE_DIR, served_code_files
from tests.conftest import PROJECT_ROOT

STEP_MODULES = (*PIPELINE_STEPS, FORECAST_ENTRY_POINT, MONITOR_ENTRY_POINT)


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
