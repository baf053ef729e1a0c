"""perf/: the parts that are plain computation and argument checks (the runs themselves are
`make bench`'s, never the suite's: no speed is asserted here)."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "perf"))

import fwd_rate  # noqa: E402
import measure  # noqa: E402


def test_worker_rates_are_per_window_and_per_frame():
    w0 = [dict(loops=100, idle_loops=90, wakeups=0, rx_kicks=0, tx_kicks=5, frames_from_rx=640,
               frames_to_tx=640, frames_to_fill=600, frames_from_completion=600)]
    w1 = [dict(loops=1100, idle_loops=890, wakeups=0, rx_kicks=64, tx_kicks=105,
               frames_from_rx=13440, frames_to_tx=13440, frames_to_fill=12600,
               frames_from_completion=12600)]
    r = measure.worker_rates(w0, w1, forwarded=12800)
    assert r["busy_passes"] == 200 and r["frames_from_rx"] == 12800
    assert r["rx_frames_per_busy_pass"] == 64.0
    assert r["tx_frames_per_kick"] == 128.0
    assert r["rx_kicks_per_frame"] == 0.005
    assert r["passes_per_frame"] == round(1000 / 12800, 3)
    assert r["fill_frames_per_pass"] == 12.0
    # a window with no pass or no frame says so, never divides by zero
    idle = measure.worker_rates(w0, w0, forwarded=0)
    assert idle["rx_frames_per_busy_pass"] is None and idle["passes_per_frame"] is None


@pytest.mark.parametrize("ports", ["1", "2,65", "0"])
def test_ports_outside_what_a_switch_holds_are_refused(monkeypatch, capsys, ports):
    monkeypatch.setattr(sys, "argv", ["fwd_rate.py", "--only", "pyxsw", "--ports", ports])
    with pytest.raises(SystemExit) as e:
        fwd_rate.parse_args()
    assert e.value.code == 2 and "--ports must be 2..64" in capsys.readouterr().err


def test_ports_are_parsed(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["fwd_rate.py", "--only", "pyxsw", "--ports", "2,16,64"])
    assert fwd_rate.parse_args().ports == [2, 16, 64]


def test_fastpath_options_are_parsed(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["fwd_rate.py", "--only", "pyxsw", "--fastpath-modes",
                                      "poll,interrupt"])
    a = fwd_rate.parse_args()
    assert not a.fastpath and a.modes == ["poll"] and a.fastpath_modes == ["poll", "interrupt"]
    monkeypatch.setattr(sys, "argv", ["fwd_rate.py", "--only", "pyxsw", "--fastpath"])
    assert fwd_rate.parse_args().fastpath
    monkeypatch.setattr(sys, "argv", ["fwd_rate.py", "--fastpath-modes", "fast"])
    with pytest.raises(SystemExit) as e:
        fwd_rate.parse_args()
    assert e.value.code == 2 and "--fastpath-modes take" in capsys.readouterr().err


def test_fastpath_rows_are_labelled_apart():
    label = fwd_rate.label
    assert label({"system": "pyxsw", "mode": "poll"}) == "pyxsw (poll)"
    assert label({"system": "pyxsw", "mode": "poll", "fastpath": True}) == \
        "pyxsw (poll, fastpath)"
    assert label({"system": "pyxsw", "mode": "interrupt", "fastpath": True,
                  "fdb_macs": 1000}) == "pyxsw (interrupt, fastpath, 1000 MACs)"
    assert label({"system": "bridge", "mode": None}) == "bridge"


def test_the_fastpath_share_is_of_the_ports_own_frames():
    st = lambda rx, fast: {"p0": {"rx_packets": rx, "tx_packets": 0,  # noqa: E731
                                  "fastpath": {"rx_packets": fast, "tx_packets": 0}}}
    assert measure.fastpath_share(st(100, 0), st(1100, 990), "p0") == {
        "fastpath_packets": 990, "packets": 1000, "share": 0.99}
    assert measure.fastpath_share(st(5, 5), st(5, 5), "p0")["share"] is None
    assert measure.fastpath_share(st(0, 0), st(0, 0), "p0", "tx")["share"] is None
