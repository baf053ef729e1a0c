"""Microbenchmarks of the core (pytest-benchmark).  Not part of `make test`: the root
pytest.ini collects test_*.py, these are bench_*.py, run with tests/bench/pytest.ini.

The `microcore` fixture builds tests/bench/_microcore.pyx (pyxsw's _core.pyx included as is,
plus C loops that call its internal functions) once per source version, into a cache
directory outside the repository, with the flags setup.py uses.  It uses the counters' C
enums that `make build` generates from pyxsw/counters.py.  Importing this file costs
nothing: the build happens only when a benchmark asks for the fixture."""
import hashlib
import importlib.util
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def _pkgconfig(flag):
    out = subprocess.run(["pkg-config", flag, "libxdp", "libbpf"], check=True,
                         capture_output=True, text=True)
    return shlex.split(out.stdout)


def build_microcore():
    sources = [HERE / "_microcore.pyx", *sorted((ROOT / "pyxsw").glob("*.pyx")),
               *sorted((ROOT / "pyxsw" / "includes").glob("*")), *sorted((ROOT / "xdp").glob("*.h"))]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources if p.is_file()))
    out = Path(tempfile.gettempdir()) / f"pyxsw-microcore-{digest.hexdigest()[:16]}"
    found = list(out.glob("_microcore*.so"))
    if not found:
        from Cython.Build import cythonize
        from setuptools import Extension
        from setuptools.dist import Distribution

        out.mkdir(exist_ok=True)
        ext = Extension("_microcore", [str(HERE / "_microcore.pyx")],
                        # setup.py's default WARNINGS
                        extra_compile_args=["-O2", "-Wall", "-Wno-unused-function",
                                            "-Wno-unused-variable", "-Wno-unreachable-code",
                                            f"-I{ROOT / 'xdp'}", f"-I{ROOT / 'pyxsw'}",
                                            *_pkgconfig("--cflags")],
                        extra_link_args=[*_pkgconfig("--libs"), "-lpthread"])
        mods = cythonize([ext], quiet=True, build_dir=str(out / "c"),
                         include_path=[str(ROOT / "pyxsw"), str(ROOT)],
                         compile_time_env={"PYXSW_DEBUG": False},
                         compiler_directives={"language_level": 3, "boundscheck": False,
                                              "wraparound": False, "cdivision": True,
                                              "initializedcheck": False})
        dist = Distribution({"ext_modules": mods, "script_args": ["-q"]})
        cmd = dist.get_command_obj("build_ext")
        cmd.build_lib, cmd.build_temp = str(out), str(out / "tmp")
        cmd.ensure_finalized()
        cmd.run()
        found = list(out.glob("_microcore*.so"))
    spec = importlib.util.spec_from_file_location("_microcore", found[0])
    mod = importlib.util.module_from_spec(spec)
    sys.modules["_microcore"] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def microcore():
    """The built module.  A build that fails is an error, never a skip: a skipped
    microbenchmark left `make bench` without its figures for a whole issue unnoticed."""
    return build_microcore()
