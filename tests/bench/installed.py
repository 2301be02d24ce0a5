"""A throwaway installed (non-editable) copy of Backchain, for the whole-process benchmarks."""

from __future__ import annotations

import compileall
import os
import shutil
import site
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import backchain
from tests.bench.common import scratch

EDITABLE_ENV = "BACKCHAIN_BENCH_EDITABLE"
"""Set to 1 to time the development venv's editable install instead (what `python -m
backchain` in a checkout runs)."""


@contextmanager
def installed_copy() -> Iterator[tuple[list[str], dict[str, str], str, str]]:
    """The ``backchain`` command of a copy laid out as ``pip install .`` lays it out, the
    environment to run it in, a word for the table saying which program was timed, and the
    interpreter it runs on (the yardstick ``python -c pass`` runs on it too).

    The development venv finds the package through setuptools' editable finder, a .pth hook
    that every interpreter start runs (it imports pathlib and more, about 10 ms): an installed
    copy has no such hook. The copy's venv reaches the development venv's site-packages (the
    dependencies) by a plain path line in a .pth file, which does not run that directory's
    own .pth hooks. The copy is byte-compiled, as pip does.
    """
    if os.environ.get(EDITABLE_ENV):
        from tests.bench.common import child_env

        yield ([sys.executable, "-m", "backchain"], child_env(), "editable install (dev venv)",
               sys.executable)  # fmt: skip
        return
    package = Path(backchain.__file__).resolve().parent
    with scratch("installed") as root:
        venv = root / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        python = venv / "bin" / "python"
        target = Path(_site_packages(python))
        shutil.copytree(package, target / "backchain",
                        ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
        resources = package.parents[1] / "resources"
        if resources.is_dir():
            shutil.copytree(resources, target / "backchain" / "resources")
        (target / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
        compileall.compile_dir(str(target / "backchain"), quiet=1)
        script = venv / "bin" / "backchain"
        script.write_text(f"#!{python}\nimport sys\nfrom backchain.launch import run\n"
                          "sys.exit(run())\n")  # fmt: skip
        script.chmod(0o755)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        _check(python, target, env)
        yield [str(script)], env, "installed copy (non-editable, byte-compiled)", str(python)


def _site_packages(python: Path) -> str:
    probe = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    found = subprocess.run([str(python), "-c", probe], capture_output=True, text=True,
                           check=True)  # fmt: skip
    return found.stdout.strip()


def _check(python: Path, target: Path, env: dict[str, str]) -> None:
    """The copy is what runs, and no editable finder is loaded."""
    probe = ("import sys, backchain; print(backchain.__file__); "
             "print(any('editable' in m for m in sys.modules))")  # fmt: skip
    out = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, env=env,
                         check=True).stdout.split()  # fmt: skip
    if not out[0].startswith(str(target)) or out[1] != "False":
        raise RuntimeError(f"the installed copy is not what runs: {out}")
