"""Progress lines: throttled, plain text, correct rate and time left."""

from __future__ import annotations

import io

from gmmrefine.report.progress import Progress, format_duration


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_lines_are_throttled_plain_and_report_rate_and_time_left():
    clock, out = FakeClock(), io.StringIO()
    progress = Progress(1000, "reconstruct", stream=out, interval_s=1.0, clock=clock)
    for _ in range(10):           # 10 updates within 0.5 s: no line yet
        clock.t += 0.05
        progress.update(10)
    assert out.getvalue() == ""
    clock.t = 2.0                 # 200 done in 2 s: 100/s, 800 left -> 8 s
    progress.update(100)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[-1] == "reconstruct: 200/1000 particles, 100/s, 8s left"
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()
    clock.t = 2.1
    progress.update(800)          # the last update always prints
    assert out.getvalue().splitlines()[-1].startswith("reconstruct: 1000/1000")
    clock.t = 10.0
    assert progress.finish("done") == 10.0
    assert progress.messages == ["reconstruct: 1000 particles in 10s; done"]


def test_format_duration():
    assert [format_duration(s) for s in (5, 185, 7620)] == ["5s", "3m05s", "2h07m"]
