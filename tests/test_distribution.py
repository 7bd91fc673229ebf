"""The distribution: `python -m build` makes an sdist and a wheel with the metadata, the license
and the package data, and the wheel installed into a fresh venv (offline, as the README's
`pip install reconcile-runs` but from the built files) runs `--version`, `validate` and a plan
against the sandbox."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from reconcile import __version__
from reconcile.sandbox import Sandbox
from tests.demo import ORG, ROOT, TOKEN
from tests.guards import check_no_secret

WHEELHOUSE = ROOT / ".tools" / "wheelhouse"
NAME = "reconcile_runs"


def run(*args: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(arg) for arg in args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        **kwargs,  # type: ignore[call-overload]
    )
    return done  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sdist and wheel from `python -m build`, without network (the build tools come from .venv)."""
    out = tmp_path_factory.mktemp("dist")
    built = run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, ROOT, cwd=ROOT)
    assert built.returncode == 0, built.stdout + built.stderr
    return out


@pytest.fixture(scope="module")
def installed(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed by name, from the built files and the wheels of its
    dependencies that scripts/check keeps in .tools/wheelhouse."""
    if not WHEELHOUSE.is_dir():
        pytest.fail(f"{WHEELHOUSE} is missing: ./scripts/check prepares it")
    venv = tmp_path_factory.mktemp("venv")
    assert run(sys.executable, "-m", "venv", venv).returncode == 0
    pip = run(
        venv / "bin" / "python",
        "-m",
        "pip",
        "install",
        "--no-index",
        "--find-links",
        dist,
        "--find-links",
        WHEELHOUSE,
        "reconcile-runs",
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr
    return venv / "bin"


def test_build_makes_an_sdist_and_a_wheel_with_everything_a_plain_install_needs(dist: Path) -> None:
    assert sorted(p.name for p in dist.iterdir()) == [
        f"{NAME}-{__version__}-py3-none-any.whl",
        f"{NAME}-{__version__}.tar.gz",
    ]
    wheel = zipfile.ZipFile(dist / f"{NAME}-{__version__}-py3-none-any.whl")
    names = set(wheel.namelist())
    data = {
        path.relative_to(ROOT).as_posix()
        for pattern in ("py.typed", "schema/*.json", "sandbox/*.toml")
        for path in (ROOT / "reconcile").glob(pattern)
    }
    assert {"reconcile/schema/state.schema.json", "reconcile/schema/plan.schema.json"} <= data
    assert data <= names, data - names
    meta = Parser().parsestr(wheel.read(f"{NAME}-{__version__}.dist-info/METADATA").decode())
    assert meta["Name"] == "reconcile-runs"
    assert meta["Version"] == __version__
    assert meta["License"] == "MIT"
    assert "License :: OSI Approved :: MIT License" in meta.get_all("Classifier", [])
    urls = dict(url.split(", ", 1) for url in meta.get_all("Project-URL", []))
    assert set(urls) == {"Homepage", "Documentation", "Source", "Issues"}
    assert any(name.endswith("/LICENSE") for name in names if ".dist-info/" in name)
    entry_points = wheel.read(f"{NAME}-{__version__}.dist-info/entry_points.txt").decode()
    assert "reconcile = reconcile.cli:main" in entry_points
    assert "reconcile-ci = reconcile.cli.ci:main" in entry_points
    with tarfile.open(dist / f"{NAME}-{__version__}.tar.gz") as sdist:
        members = {m.name.split("/", 1)[1] for m in sdist.getmembers() if "/" in m.name}
    assert {"LICENSE", "README.md", "pyproject.toml", "reconcile/schema/state.schema.json"} <= (
        members
    )


def test_the_installed_command_validates_and_plans_against_the_sandbox(
    installed: Path, served: str, sandbox: Sandbox, tmp_path: Path
) -> None:
    env = {
        "PATH": f"{installed}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "TALLYFY_API_URL": served,
        "TALLYFY_ORG_ID": ORG,
        "TALLYFY_ACCESS_TOKEN": TOKEN,
    }
    where = run(
        installed / "python",
        "-c",
        "import reconcile; print(reconcile.__file__)",
        env=env,
        cwd=tmp_path,
    )
    assert where.stdout.startswith(str(installed.parent)), "the fresh venv's own copy runs"
    version = run("reconcile", "--version", env=env, cwd=tmp_path)
    assert version.stdout == f"reconcile, version {__version__}\n"
    (tmp_path / "state.toml").write_text((ROOT / "state.example.toml").read_text())
    valid = run("reconcile", "validate", "state.toml", env=env, cwd=tmp_path)
    assert valid.returncode == 0, valid.stderr
    assert valid.stdout == "state.toml is valid: 10 runs declared (4 archived, 6 active).\n"
    plan = run("reconcile", "plan", "state.toml", "--detailed-exitcode", env=env, cwd=tmp_path)
    assert plan.returncode == 2, plan.stderr
    assert plan.stdout.endswith("Plan: 2 to archive, 1 to activate, 7 unchanged.\n")
    check_no_secret(plan.stdout + plan.stderr, "the installed reconcile's output")
    assert sandbox.requests, "the plan read from the sandbox"
    assert sandbox.writes == []
