"""Build pyxsw: the Cython core against libxdp/libbpf, and the XDP program with clang.

The package's metadata (name, version, dependencies, entry point) is in pyproject.toml;
this file holds what needs code: the extension's flags from pkg-config and the BPF step.

`PYXSW_DEBUG=1` builds the core with its invariant checks on (frame accounting on every
burst) and with AddressSanitizer; release builds compile those checks away.

`PYXSW_STRICT=1` (`make strict`, and CI) builds with every warning we can hold to an error:
-Wall -Wextra -Werror on the extension, -Wextra on the XDP program.  Warnings change no code:
a strict build is the release build, checked.
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
STRICT = os.environ.get("PYXSW_STRICT", "") not in ("", "0")


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
            if not self.force and obj.exists() and obj.stat().st_mtime >= max(
                    p.stat().st_mtime for p in (ROOT / "xdp").iterdir()):
                continue
            # Our C, and small: any warning is an error, in every build.
            cmd = ["clang", "-O2", "-g", "-Wall", *(["-Wextra"] if STRICT else []), "-Werror",
                   "-target", "bpf",
                   f"-I/usr/include/{arch}", f"-I{ROOT / 'xdp'}", "-c", str(src), "-o", str(obj)]
            print(" ".join(cmd))
            subprocess.run(cmd, check=True)


# The extension's warnings.  The compiler reads Cython's output (70,000 lines, a small part of
# them ours) after Python's own CFLAGS (-Wall -Wsign-compare), and what it says must not reach
# someone who runs `make install`.  The default's -Wno- date from the first skeleton, against
# unused Cython helpers; strict keeps those warnings on (none today) and adds -Wextra.
# Anything else still shows, and fails a strict build (CI builds strict).
WARNINGS = ["-Wall", "-Wno-unused-function", "-Wno-unused-variable", "-Wno-unreachable-code"]
STRICT_WARNINGS = ["-Wall", "-Wextra", "-Werror"]
cflags = ["-O2", *(STRICT_WARNINGS if STRICT else WARNINGS), f"-I{ROOT / 'xdp'}"]
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
