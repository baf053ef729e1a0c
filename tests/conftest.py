"""Shared fixtures.  System tests (marker `system`) build labs of network namespaces; every
name they make starts with a prefix unique to the test, and everything is removed in
`finally`, so a failing test leaves nothing behind and tests never see each other's hosts."""
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest


def _terminate(signum, frame):
    # SIGTERM (a CI timeout, `timeout`, a kill) would end pytest without running fixture
    # teardown, leaving namespaces and XDP programs behind: turn it into an interrupt,
    # which pytest unwinds through every finalizer.
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config):
    signal.signal(signal.SIGTERM, _terminate)

from pyxsw.lab import Lab, lab_down

_used_prefixes = set()


def new_prefix() -> str:
    # "t" + 4 hex + "-": 6 characters, so "{prefix}s999" and "{prefix}br" fit in 15.
    # Also unused on the machine: another test run may be going on at the same time.
    taken = [n for names in _names() for n in names] if os.geteuid() == 0 else []
    while True:
        p = f"t{secrets.token_hex(2)}-"
        if p not in _used_prefixes and not any(n.startswith(p) for n in taken):
            _used_prefixes.add(p)
            return p


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="system test: needs root")
    for item in items:
        if "system" in item.keywords:
            item.add_marker(skip)


def pytest_sessionfinish(session, exitstatus):
    # Belt and braces: whatever a crashed fixture left behind under a prefix of this run.
    if os.geteuid() == 0:
        for p in _used_prefixes:
            lab_down(p)


def _names():
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    return ([line.split()[0] for line in ns.splitlines() if line.strip()],
            [line.split(":")[1].strip().split("@")[0] for line in links.splitlines() if ":" in line])


def sweep(prefix):
    """Remove every link and namespace whose name starts with `prefix` (unique to one test,
    so nothing else can match); fail the test if something cannot be removed."""
    lab_down(prefix)
    namespaces, links = _names()
    for link in links:
        if link.startswith(prefix):
            subprocess.run(["ip", "link", "del", link], capture_output=True)
    for ns in namespaces:
        if ns.startswith(prefix):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    left = [n for names in _names() for n in names if n.startswith(prefix)]
    assert not left, f"could not remove {left}"


@pytest.fixture
def prefix():
    """A unique short prefix for the names this test makes (namespaces, links, bridges);
    whatever carries it is removed after the test."""
    p = new_prefix()
    yield p
    if os.geteuid() == 0:
        sweep(p)


@pytest.fixture
def lab_factory(prefix):
    """lab_factory(hosts=3, queues=1) -> a Lab that is up; torn down after the test, pass or
    fail.  The first lab uses the test's `prefix`; each further one gets a fresh prefix."""
    labs = []

    def make(hosts=3, queues=1):
        lab = Lab(hosts=hosts, prefix=prefix if not labs else new_prefix(), queues=queues)
        labs.append(lab)
        lab.up()
        return lab

    try:
        yield make
    finally:
        for lab in labs:
            lab.down()
        for lab in labs[1:]:
            sweep(lab.prefix)       # the first one's is swept by the `prefix` fixture


@pytest.fixture
def short_dir():
    """A temporary directory with a short path: a Unix socket path must fit in 108 bytes,
    which pytest's tmp_path may not."""
    d = tempfile.mkdtemp(prefix="pyxsw-t-")
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(params=["uvloop", "asyncio"])
def loop_kind(request):
    """The management tests run once on uvloop and once on plain asyncio."""
    return request.param
