"""The package as a user gets it: a wheel and an sdist built from this tree, each installed
into a fresh venv and run from outside the tree, with nothing pointing back at it (issue 10:
`pip install .` lacked Cython, the wheel its XDP object and its dependencies, the sdist its
.pyx, .pxd and xdp/ sources).

Each build is a full one, with pip's build isolation, as on a machine that has only the
sources: about 45 s apiece here, most of the test's time."""
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import pyxsw
from helpers import ping, wait_until

pytestmark = pytest.mark.system
ROOT = Path(__file__).resolve().parent.parent
CORE = 1 if 1 in os.sched_getaffinity(0) else min(os.sched_getaffinity(0))
BUILD_TIMEOUT = 900             # a full build takes 45 s on an idle 2-core machine
PIP = [sys.executable, "-m", "pip"]


def _text(log):
    """A child's log so far: the child wrote it through its own offset."""
    log.seek(0)
    return log.read()


def clean_env():
    """The machine's environment less anything that leads to this tree (PYTHONPATH, a venv
    in it on PATH); pip's settings stay, as make install has them."""
    path = [d for d in os.environ.get("PATH", "/usr/bin:/bin").split(":")
            if d and not d.startswith(str(ROOT))]
    env = {k: v for k, v in os.environ.items() if k.startswith("PIP_")
           or k in ("HOME", "LANG", "LC_ALL", "TMPDIR")}
    env["PATH"] = ":".join(path + ["/usr/sbin", "/sbin"])
    return env


def run(cmd, cwd, timeout=60, **kw):
    p = subprocess.run([str(c) for c in cmd], cwd=cwd, env=clean_env(), capture_output=True,
                       text=True, timeout=timeout, **kw)
    assert p.returncode == 0, \
        f"{cmd}: exit {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    """(wheel, sdist) built from a copy of the tree's files (tracked, and new ones not
    ignored), so nothing built in the tree (the in-place core, pyxsw/bpf/) can slip in."""
    tmp = tmp_path_factory.mktemp("dist")
    src, out = tmp / "src", tmp / "out"
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                            "--exclude-standard"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for name in filter(None, names):
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    # The PEP 517 hook, as `python -m build --sdist` calls it (no new tool needed).
    run([sys.executable, "-c",
         f"from setuptools import build_meta; build_meta.build_sdist({str(out)!r})"],
        cwd=src, timeout=BUILD_TIMEOUT)
    run(PIP + ["wheel", "--no-deps", "-w", out, src], cwd=tmp, timeout=BUILD_TIMEOUT)
    (wheel,), (sdist,) = out.glob("*.whl"), out.glob("*.tar.gz")
    return wheel, sdist


def test_wheel_holds_the_xdp_object_and_no_sources(dists):
    names = zipfile.ZipFile(dists[0]).namelist()
    assert "pyxsw/bpf/pyxsw.bpf.o" in names
    assert any(n.startswith("pyxsw/_core.") and n.endswith(".so") for n in names), names
    assert not [n for n in names if n.endswith((".c", ".h", ".pyx", ".pxd"))], names
    meta = zipfile.ZipFile(dists[0]).read(f"pyxsw-{pyxsw.__version__}.dist-info/METADATA")
    for line in (b"Requires-Dist: uvloop", b"Requires-Dist: msgpack",
                 b"License-Expression: BSD-2-Clause"):
        assert line in meta


def test_sdist_holds_every_source(dists):
    with tarfile.open(dists[1]) as t:
        top = f"pyxsw-{pyxsw.__version__}/"
        names = {n[len(top):] for n in t.getnames() if n.startswith(top)}
    tracked = subprocess.run(["git", "ls-files", "xdp", "pyxsw", "conf"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split()
    wanted = {n for n in tracked
              if n.startswith("conf/") or n.endswith((".c", ".h", ".pyx", ".pxd", ".py"))}
    wanted |= {"README.md", "LICENSE", "CHANGELOG.md", "pyproject.toml", "setup.py"}
    assert wanted <= names, sorted(wanted - names)
    assert not [n for n in names
                if n.startswith(("pyxsw/bpf/", "tests/")) or n == "pyxsw/_core.c"], names


@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_installed_package_runs_a_switch(kind, dists, tmp_path, lab_factory, short_dir):
    """Installed from the wheel or (built again by pip) from the sdist: --version, a switch
    over a 2-host lab with a ping through it, `ctl status` with the version, SIGTERM; then
    the XDP object taken away."""
    venv = tmp_path / "venv"
    # No pip in the venv (ensurepip costs seconds): the tree's pip installs into it.
    run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path)
    dist = dists[0] if kind == "wheel" else dists[1]
    vbin = venv / "bin"
    run(PIP + ["--python", vbin / "python", "install", "-q", dist], cwd=tmp_path,
        timeout=BUILD_TIMEOUT)
    where = run([vbin / "python", "-c", "import pyxsw; print(pyxsw.__file__)"], cwd=tmp_path)
    assert where.stdout.startswith(str(venv)), where.stdout
    version = run([vbin / "pyxsw", "--version"], cwd=tmp_path).stdout
    assert version == f"pyxsw {pyxsw.__version__}\n"

    lab = lab_factory(hosts=2)
    sock, cfg = short_dir / "sw.sock", tmp_path / "sw.toml"
    cfg.write_text(f'[switch]\nname = "pkg"\ncores = [{CORE}]\n\n'
                   f'[management]\nsocket = "{sock}"\n\n'
                   + "".join(f'[[port]]\nname = "{p}"\n\n' for p in lab.ports))
    log = open(tmp_path / "run.log", "w+")
    proc = subprocess.Popen([vbin / "pyxsw", "run", "-c", cfg], cwd=tmp_path, env=clean_env(),
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        def status():
            return subprocess.run([vbin / "pyxsw", "ctl", "-s", sock, "status"], cwd=tmp_path,
                                  env=clean_env(), capture_output=True, text=True, timeout=30)
        assert wait_until(lambda: proc.poll() is None and status().returncode == 0,
                          timeout=30, interval=0.2), _text(log)
        assert ping(lab, 0, 1, count=3) and ping(lab, 1, 0)
        assert f"version: {pyxsw.__version__}" in status().stdout
        proc.terminate()
        assert proc.wait(30) == 0, _text(log)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()

    # Without its XDP object the installation is at fault, not the file: exit 1, not 2.
    obj = Path(where.stdout.strip()).parent / "bpf" / "pyxsw.bpf.o"
    obj.unlink()
    r = subprocess.run([vbin / "pyxsw", "run", "-c", cfg], cwd=tmp_path, env=clean_env(),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and f"{obj} is missing" in r.stderr, r.stderr
