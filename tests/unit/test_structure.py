"""How the package is cut: steps stand alone, TensorFlow only where needed, a lean served model."""

import ast
import json
import subprocess
import sys

import pytest

from flow_steps.constants import FORECAST_ENTRY_POINT, MONITOR_ENTRY_POINT, PIPELINE_STEPS
from flow_steps.train_model import PACKAGE_DIR, SERVED_MODULES
from tests.conftest import PROJECT_ROOT

STEP_MODULES = (*PIPELINE_STEPS, FORECAST_ENTRY_POINT, MONITOR_ENTRY_POINT)


def imported_after(statement: str) -> set[str]:
    """Module names a fresh interpreter has loaded after running `statement`."""
    script = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("module", ["download_raw_data", "transform_data", "forecast", "register_model"])
def test_steps_that_train_nothing_do_not_import_tensorflow(module):
    loaded = imported_after(f"import flow_steps.{module}")
    assert not {"tensorflow", "keras"} & loaded


def test_the_driver_does_not_import_tensorflow():
    loaded = imported_after("import main")
    assert not {"tensorflow", "keras"} & loaded


@pytest.mark.parametrize("module", STEP_MODULES)
def test_steps_never_import_other_steps(module):
    tree = ast.parse((PACKAGE_DIR / f"{module}.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    imported |= {
        alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    others = {f"flow_steps.{step}" for step in STEP_MODULES if step != module}
    assert not imported & others


def test_the_served_model_needs_only_the_modules_it_ships():
    loaded = imported_after("import flow_steps.pyfunc_model")
    needed = {name.split(".", 1)[1] + ".py" for name in loaded if name.startswith("flow_steps.")}
    assert needed | {"__init__.py"} == set(SERVED_MODULES)
