"""Build pyxsw: the Cython core against libxdp/libbpf, and the XDP program with clang.

The package's metadata (name, version, dependencies, entry point) is in pyproject.toml;
this file holds what needs code: the extension's flags from pkg-config and the BPF step.

`PYXSW_DEBUG=1` builds the core with its invariant checks on (frame accounting on every
burst) and with AddressSanitizer; release builds compile those checks away.
"""
import importlib.util
import os
import shlex
import shutil
import subprocess
import sysconfig
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import ExecError

ROOT = Path(__file__).resolve().parent
DEBUG = os.environ.get("PYXSW_DEBUG", "") not in ("", "0")


def pkgconfig(flag, *libs):
    out = subprocess.run(["pkg-config", flag, *libs], check=True, capture_output=True, text=True)
    return shlex.split(out.stdout)


def generate_counters():
    """The counters' C enums, from pyxsw/counters.py (their one declaration): a C header for
    the core and the XDP program, and its Cython declaration.  Loaded as a file, not through
    the package, which needs the extension this builds.  Written only when they change, so
    that an unchanged table rebuilds nothing."""
    spec = importlib.util.spec_from_file_location("_pyxsw_counters", ROOT / "pyxsw" / "counters.py")
    counters = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(counters)
    for path, text in ((ROOT / "xdp" / "pyxsw_counters.h", counters.c_header()),
                       (ROOT / "pyxsw" / "includes" / "counters.pxd", counters.cython_pxd())):
        if not path.exists() or path.read_text() != text:
            path.write_text(text)


class BuildExt(build_ext):
    """Cythonize lazily (Cython is a build requirement) and compile the BPF objects too.

    The BPF objects go where the extension goes: into the tree for an in-place build
    (`make build`, editable installs), into build_lib for a wheel.  Not package data:
    build_py collects that before build_ext runs, so a clean tree's wheel went without it."""

    def finalize_options(self):
        super().finalize_options()
        from Cython.Build import cythonize

        generate_counters()             # before cythonize and the BPF step, which use them

        self.distribution.ext_modules = cythonize(
            self.distribution.ext_modules,
            compiler_directives={"language_level": 3, "boundscheck": False,
                                 "wraparound": False, "cdivision": True,
                                 "initializedcheck": False},
            include_path=[str(ROOT / "pyxsw")],
        )

    def run(self):
        self.build_bpf()
        super().run()

    def bpf_objects(self):
        out = ROOT / "pyxsw" / "bpf" if self.inplace else Path(self.build_lib) / "pyxsw" / "bpf"
        return [(src, out / (src.name[: -len(".c")] + ".o"))
                for src in sorted((ROOT / "xdp").glob("*.bpf.c"))]

    def get_outputs(self):
        return super().get_outputs() + [str(obj) for _, obj in self.bpf_objects()]

    def build_bpf(self):
        arch = sysconfig.get_config_var("MULTIARCH") or f"{os.uname().machine}-linux-gnu"
        if not shutil.which("clang"):
            # Without it the switch could not attach a port: no package rather than a broken one.
            raise ExecError("clang is needed to build pyxsw's XDP program "
                            "(Debian: apt-get install clang llvm libbpf-dev)")
        for src, obj in self.bpf_objects():
            obj.parent.mkdir(parents=True, exist_ok=True)
            if obj.exists() and obj.stat().st_mtime >= max(
                    p.stat().st_mtime for p in (ROOT / "xdp").iterdir()):
                continue
            cmd = ["clang", "-O2", "-g", "-Wall", "-target", "bpf",
                   f"-I/usr/include/{arch}", f"-I{ROOT / 'xdp'}", "-c", str(src), "-o", str(obj)]
            print(" ".join(cmd))
            subprocess.run(cmd, check=True)


cflags = ["-O2", "-Wall", "-Wno-unused-function", "-Wno-unused-variable",
          "-Wno-unreachable-code", f"-I{ROOT / 'xdp'}"]
ldflags = []
if DEBUG:
    cflags += ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address", "-DPYXSW_DEBUG=1"]
    ldflags += ["-fsanitize=address"]

setup(
    ext_modules=[Extension(
        "pyxsw._core",
        ["pyxsw/_core.pyx"],
        extra_compile_args=cflags + pkgconfig("--cflags", "libxdp", "libbpf"),
        extra_link_args=ldflags + pkgconfig("--libs", "libxdp", "libbpf") + ["-lpthread"],
    )],
    cmdclass={"build_ext": BuildExt},
)
