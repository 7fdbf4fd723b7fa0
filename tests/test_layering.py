"""The packages depend one way (docs/architecture.md, "Packages"):

    pipelines  <-  common  <-  catalog  <-  tryon

``pipelines`` is plain Python (no Django, no Celery); ``common`` is the leaf both apps share;
``catalog`` never imports the try-on app, which owns jobs and may use the catalog. Read from the
source, every import counted, the ones inside functions too.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FORBIDDEN = {
    "pipelines": {"django", "rest_framework", "celery", "common", "catalog", "tryon"},
    "common": {"catalog", "tryon", "celery", "torch"},
    "catalog": {"tryon"},
}


def _imported_packages(path: Path) -> set[str]:
    """The top-level packages ``path`` imports by absolute name."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_imports_nothing_above_it(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no Python files under {package}/: the rule would check nothing"
    wrong = {
        str(path.relative_to(ROOT)): sorted(_imported_packages(path) & FORBIDDEN[package])
        for path in files
    }
    assert {name: packages for name, packages in wrong.items() if packages} == {}


def test_the_check_reads_imports_inside_functions(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from tryon.models import TryOnJob\n    import torch.nn\n")
    assert _imported_packages(module) == {"tryon", "torch"}
