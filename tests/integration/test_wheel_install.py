"""The provider as a user installs it: a wheel built from the sources, installed into a fresh virtualenv that has
Airflow, then ``airflow providers list``, ``airflow plugins``, the console script and a DAG parse run there.

What is fresh: the virtualenv (no system site-packages, not the project's .venv) and the provider, installed only
from the wheel. By default (``make test``, about 25 s) the wheel is installed with ``--no-deps`` and Airflow and
the other dependencies come from the project's .venv, exposed through a folder of symbolic links to its
site-packages that leaves out everything of the provider's own (its editable finder and dist-info), so nothing of
the source tree can be found from the fresh venv. ``ABP_WHEEL_TEST_FULL=1`` (``.ci/run`` sets it) installs the
wheel with its dependencies from the package index instead, pinned to this venv's versions (``pip freeze`` as
constraints), so the wheel's dependency metadata is proven too (95 s measured here, most of it downloading). The wheel is built from a copy of exactly the files the Dockerfile copies
(``pyproject.toml``, ``README.md``, ``airflow_batch_provider/``), so a module or data file that packaging leaves
out fails here. The DAGs parsed are the README's minimal DAG (taken from the README's text) and
``dags/example_batch_job.py``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
OWN = ("airflow_batch_provider", "__editable__.airflow_batch_provider", "__editable___airflow_batch_provider")


def _run(
    cmd: list[str], env: dict[str, str] | None = None, timeout: float = 300, cwd: Path | None = None
) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=cwd)
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    )
    return proc.stdout


def readme_minimal_dag() -> str:
    """The README's minimal DAG: its python block that starts with ``# my_dags/my_first_dag.py``."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    (dag,) = [b for b in blocks if b.startswith("# my_dags/my_first_dag.py")]
    return dag


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "airflow_batch_provider", src / "airflow_batch_provider",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))  # fmt: skip
    out = tmp_path_factory.mktemp("wheel")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)])
    (built,) = out.glob("airflow_batch_provider-*.whl")
    return built


@pytest.fixture(scope="module")
def fresh(tmp_path_factory, wheel) -> dict[str, object]:
    """A new virtualenv with the wheel installed (see the module docstring for where Airflow comes from)."""
    root = tmp_path_factory.mktemp("fresh")
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    python = venv / "bin" / "python"
    site = Path(
        _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip()
    )
    if os.environ.get("ABP_WHEEL_TEST_FULL"):
        # everything from the package index, pinned to the versions make test runs (pip freeze of this venv)
        frozen = _run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"]).splitlines()
        pins = [line for line in frozen if "==" in line and not line.startswith("airflow-batch-provider")]
        (root / "constraints.txt").write_text("\n".join(pins) + "\n")
        _run(
            [str(python), "-m", "pip", "install", "-q", str(wheel), "-c", str(root / "constraints.txt")],
            timeout=900,
        )
    else:
        # the .venv's packages without the provider (a symlink per entry), added as a site dir of the new venv
        deps = root / "deps"
        deps.mkdir()
        ours = Path(sysconfig.get_paths()["purelib"])
        for entry in ours.iterdir():
            if not entry.name.startswith(OWN):
                (deps / entry.name).symlink_to(entry)
        (site / "zz_project_deps.pth").write_text(f"import site; site.addsitedir({str(deps)!r})\n")
        _run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)])
    home = root / "airflow-home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTHON"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(root / "dags"),
        AIRFLOW__BATCH_PROVIDER__BASE_PATH=str(root / "jobs"),
    )
    return {"root": root, "python": python, "bin": venv / "bin", "site": site, "env": env}


def test_the_package_comes_from_the_wheel_only(fresh):
    code = (
        "import json, importlib.metadata as m, airflow_batch_provider as p; d = m.distribution('airflow-batch-provider'); "
        "print(json.dumps({'file': p.__file__, 'dist': str(d.locate_file('')), 'version': d.version, "
        "'n': len([x for x in m.distributions() if x.metadata['Name'] == 'airflow-batch-provider'])}))"
    )
    info = json.loads(_run([str(fresh["python"]), "-c", code], env=fresh["env"], cwd=fresh["root"]))
    assert info["file"].startswith(str(fresh["site"])) and info["dist"].startswith(str(fresh["site"]))
    assert info["n"] == 1  # the .venv's editable install is invisible here
    from importlib.metadata import version

    assert info["version"] == version("airflow-batch-provider")
    out = _run([str(fresh["bin"] / "airflow-batch"), "--version"], env=fresh["env"], cwd=fresh["root"])
    assert out.strip() == f"airflow-batch {info['version']}"


def test_airflow_lists_the_provider_and_loads_the_plugin(fresh):
    python, env = str(fresh["python"]), fresh["env"]
    providers = json.loads(
        _run([python, "-m", "airflow", "providers", "list", "-o", "json"], env=env, cwd=fresh["root"])
    )
    (ours,) = [p for p in providers if p["package_name"] == "airflow-batch-provider"]
    from importlib.metadata import version

    assert ours["version"] == version("airflow-batch-provider")
    plugins = json.loads(_run([python, "-m", "airflow", "plugins", "-o", "json"], env=env, cwd=fresh["root"]))
    (plugin,) = [p for p in plugins if p["name"] == "batch_provider"]  # listed only when it loaded
    assert plugin["source"].startswith(f"airflow-batch-provider=={ours['version']}: EntryPoint(")
    assert '"url_prefix": "/batch-provider"' in json.dumps(plugin)  # its FastAPI app (the Batch jobs page)


def test_the_readme_dag_and_an_example_dag_parse(fresh):
    dags = Path(fresh["root"]) / "dags"
    dags.mkdir(exist_ok=True)
    (dags / "my_first_dag.py").write_text(readme_minimal_dag())
    shutil.copy(ROOT / "dags" / "example_batch_job.py", dags / "example_batch_job.py")
    code = (
        "import json; from airflow.dag_processing.dagbag import DagBag; "
        f"b = DagBag(dag_folder={str(dags)!r}); "
        "print(json.dumps({'dags': sorted(b.dags), 'errors': {k: str(v) for k, v in b.import_errors.items()}, "
        "'tasks': {d: sorted(t.task_id for t in b.dags[d].tasks) for d in b.dags}}))"
    )
    bag = json.loads(
        _run([str(fresh["python"]), "-c", code], env=fresh["env"], cwd=fresh["root"]).splitlines()[-1]
    )
    assert bag["errors"] == {}
    assert bag["dags"] == ["example_batch_job", "my_first_batch_dag"]
    assert bag["tasks"]["my_first_batch_dag"] == ["check", "profile"]
