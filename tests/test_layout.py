"""The layout shows the flow: short functions, modules of one job, nothing reaching into
private code from outside ``src/``.

The figures come from ``scripts/code_figures.py``, which prints them.
"""

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRIVATE_IMPORT = re.compile(
    r"(?:from\s+mlemap(?:\.(\w+))?\s+import\s+(_\w+))|(?:mlemap\.(?:(\w+)\.)?(_\w+))")


def _figures():
    spec = importlib.util.spec_from_file_location("code_figures",
                                                  ROOT / "scripts" / "code_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


figures = _figures()


@pytest.mark.parametrize("path", figures.modules(), ids=lambda p: p.name)
def test_functions_are_short(path):
    long = [f for f in figures.functions(path) if f.code_lines > figures.MAX_FUNCTION_CODE_LINES]
    assert not long, long


@pytest.mark.parametrize("path", figures.modules(), ids=lambda p: p.name)
def test_modules_are_small(path):
    assert figures.module_lines(path) <= figures.MAX_MODULE_LINES


def test_experiments_use_the_public_api_only():
    offenders = [f"{path.relative_to(ROOT)}:{i}"
                 for path in (ROOT / "experiments").rglob("*.py")
                 for i, line in enumerate(path.read_text().splitlines(), 1)
                 if "mlemap._" in line or re.search(r"from mlemap(\.\w+)? import _", line)]
    assert not offenders, offenders


def _private_units(text: str) -> set[str]:
    """The units whose private code a source text imports: ``_fit`` -> ``fit``; a private
    module of a subpackage (``mlemap.solvers._newton``) -> the subpackage (``solvers``)."""
    units = set()
    statements = "\n".join(line for line in text.splitlines()
                           if re.match(r"\s*(from|import)\s", line) or "setattr(" in line)
    for package, name, package2, name2 in PRIVATE_IMPORT.findall(statements):
        package, name = package or package2, name or name2
        units.add(package if package else name.lstrip("_"))
    return units


def test_the_private_import_rule_reads_imports_right():
    assert _private_units("from mlemap import _fit, solvers") == {"fit"}
    assert _private_units("from mlemap._density import log_density_fn") == {"density"}
    assert _private_units("from mlemap.solvers import _newton as n") == {"solvers"}
    assert _private_units('monkeypatch.setattr("mlemap._starts.fit", f)') == {"starts"}
    assert _private_units("import mlemap as mm\nfrom mlemap import families") == set()
    assert _private_units('"""criterion in ``mlemap._diagnose.flat_directions``"""') == set()


@pytest.mark.parametrize("path", sorted((ROOT / "tests").glob("test_*.py")),
                         ids=lambda p: p.name)
def test_tests_reach_private_code_only_of_their_own_unit(path):
    if path.name == "test_layout.py":  # its own examples above
        return
    unit = path.stem.removeprefix("test_")
    assert _private_units(path.read_text()) <= {unit}


def test_code_and_docs_do_not_cite_the_shared_folder():
    """Users do not have ../shared: only the tests read it (and skip, saying why, without)."""
    places = [*(ROOT / "src").rglob("*.py"), *(ROOT / "experiments").rglob("*.py"),
              ROOT / "README.md", *(ROOT / "experiments").glob("*.md")]
    offenders = [str(p.relative_to(ROOT)) for p in places if "../shared" in p.read_text()
                 or "shared/reference" in p.read_text()]
    assert not offenders, offenders


def test_the_library_imports_neither_scikit_learn_nor_statsmodels():
    """They are the references of the experiments and tests, installed as extras
    (pyproject.toml's ``experiments`` and ``test``), not dependencies of the library."""
    import tomllib

    imports = re.compile(r"^\s*(?:from|import)\s+(sklearn|statsmodels)\b", re.MULTILINE)
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "src").rglob("*.py")
                 if imports.search(p.read_text())]
    assert not offenders, offenders
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"])
    assert "scikit-learn" not in core and "statsmodels" not in core
    for extra in ("experiments", "test"):
        listed = " ".join(project["optional-dependencies"][extra])
        assert "scikit-learn" in listed and "statsmodels" in listed, extra
