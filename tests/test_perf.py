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


def test_the_report_has_the_8021q_row_against_the_same_runs_testpmd():
    import report
    r = lambda system, pps, mode=None: {"system": system, "mode": mode, "available": True,  # noqa: E731
                                        "forwarded_pps": pps}
    doc = {"fwd_64": {"results": [r("testpmd", 4.5e5), r("pyxsw", 5e5, "poll")]},
           "fwd_64_trunk": {"results": [r("testpmd", 5e5), r("pyxsw", 5.5e5, "poll")]}}
    lines = report.markdown(doc).splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith("| 802.1Q"))
    assert lines[i + 2] == "| pyxsw (poll) | 0.550 | 1.10x | 1.10x |"
    assert not any(line.startswith("| 802.1Q") for line in
                   report.markdown({"fwd_64": doc["fwd_64"]}).splitlines())
