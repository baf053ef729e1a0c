"""Counters are declared once (pyxsw/counters.py): the C enums are generated from the tables
and the core's dictionaries are built from them, so names cannot drift.  No root needed."""
from pathlib import Path

import pytest

from pyxsw import _core, counters

ROOT = Path(__file__).resolve().parent.parent


def test_the_generated_c_is_the_tables():
    """The build wrote what counters.py says now (a stale header would index wrongly)."""
    assert (ROOT / "xdp" / "pyxsw_counters.h").read_text() == counters.c_header()
    assert (ROOT / "pyxsw" / "includes" / "counters.pxd").read_text() == counters.cython_pxd()


def test_tables_are_well_formed():
    for fam in counters.FAMILIES:
        assert len(set(fam.names)) == len(fam.names), fam.name
        for c in fam.counters:
            assert c.kind in (counters.COUNTER, counters.GAUGE), c
            assert c.help and "\n" not in c.help, c
            assert c.name.isidentifier() and c.name == c.name.lower(), c


def test_port_summary_is_the_designs_port_counters():
    # design.md, "Port counters": the columns of `ctl port stats` and `pyxsw demo`
    assert counters.PORT_SUMMARY == ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes",
                                     "rx_dropped", "tx_dropped", "flooded")


def test_the_cores_dictionaries_are_the_tables():
    dp = _core.Datapath(umem=False, workers=2)
    p = dp.add_virtual_port("v0")
    assert [list(w) for w in dp.worker_stats()] == \
        [["queue", *counters.WORKER.names, "mode"]] * 2
    assert list(dp.fdb_counters()) == list(counters.FDB.names)
    assert list(dp.accounting()) == list(counters.POOL.names)
    st = dp.port_stats(p)
    assert list(st) == [*counters.PORT.names, "xdp", "fastpath", "queues"]
    assert list(st["xdp"]) == list(counters.PROG.names)         # no socket: no kernel figures
    assert st["fastpath"] == dict.fromkeys(counters.FASTPATH.names, 0)
    assert st["queues"] == []


@pytest.mark.parametrize("name", ["cache", "events_lost", "learn_busy", "frames_to_tx"])
def test_names_the_rpc_shows_stay(name):
    assert name in counters.WORKER.names
