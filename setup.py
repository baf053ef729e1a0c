"""Build pyxsw: the Cython core against libxdp/libbpf, and the XDP program with clang.

`PYXSW_DEBUG=1` builds the core with its invariant checks on (frame accounting on every
burst) and with AddressSanitizer; release builds compile those checks away.
"""
import os
import shlex
import subprocess
import sysconfig
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
DEBUG = os.environ.get("PYXSW_DEBUG", "") not in ("", "0")


def pkgconfig(flag, *libs):
    out = subprocess.run(["pkg-config", flag, *libs], check=True, capture_output=True, text=True)
    return shlex.split(out.stdout)


class BuildExt(build_ext):
    """Cythonize lazily (Cython is a build requirement) and compile the BPF objects too."""

    def finalize_options(self):
        super().finalize_options()
        from Cython.Build import cythonize

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

    def build_bpf(self):
        arch = sysconfig.get_config_var("MULTIARCH") or f"{os.uname().machine}-linux-gnu"
        for src in sorted((ROOT / "xdp").glob("*.bpf.c")):
            obj = ROOT / "pyxsw" / "bpf" / (src.name[: -len(".c")] + ".o")
            obj.parent.mkdir(exist_ok=True)
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
    name="pyxsw",
    version="0.1.0",
    description="A userspace Ethernet switch on AF_XDP with a Cython core",
    packages=["pyxsw", "pyxsw.mgmt"],
    package_data={"pyxsw": ["bpf/*.o"]},
    ext_modules=[Extension(
        "pyxsw._core",
        ["pyxsw/_core.pyx"],
        extra_compile_args=cflags + pkgconfig("--cflags", "libxdp", "libbpf"),
        extra_link_args=ldflags + pkgconfig("--libs", "libxdp", "libbpf") + ["-lpthread"],
    )],
    cmdclass={"build_ext": BuildExt},
    entry_points={"console_scripts": ["pyxsw = pyxsw.cli:main"]},
    python_requires=">=3.11",
)
