"""replay.Progress: a tqdm bar on a terminal, structured ``replay_progress`` logs elsewhere."""

import io

import pytest
from structlog.testing import capture_logs

from consumer import replay


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_on_a_terminal_a_bar_shows_entries_rate_and_eta_and_ends_on_its_own_line(
    monkeypatch: pytest.MonkeyPatch,
):
    out = io.StringIO()
    with capture_logs() as logs:
        progress = replay.Progress(200, out=out, tty=True)
        progress.advance(50)
        progress.advance(150)
        progress.finish()
    text = out.getvalue()
    assert "replay" in text
    assert "200/200" in text
    assert "100%" in text
    assert "entries/s" in text  # the rate
    assert text.endswith("\n")
    assert not [e for e in logs if e["event"] == "replay_progress"]  # a bar, not log lines
    progress.close()  # idempotent (the interrupted path closes again)


def test_without_a_total_the_bar_counts_entries():
    out = io.StringIO()
    progress = replay.Progress(None, out=out, tty=True)
    progress.advance(1234)
    progress.finish()
    assert "1.23k" in out.getvalue()


def test_not_a_terminal_logs_progress_every_five_seconds_and_draws_nothing(
    monkeypatch: pytest.MonkeyPatch,
):
    clock = _Clock()
    monkeypatch.setattr(replay.time, "monotonic", clock)
    out = io.StringIO()
    with capture_logs() as logs:
        progress = replay.Progress(1000, out=out, tty=False)
        clock.now += 1.0
        progress.advance(100)  # under 5 s since the start: no line yet
        clock.now += 4.0
        progress.advance(100)  # 5 s: 200 entries in 5 s
        clock.now += 1.0
        progress.advance(100)
        progress.finish()
    lines = [e for e in logs if e["event"] == "replay_progress"]
    assert lines == [
        {
            "component": "replay",
            "event": "replay_progress",
            "log_level": "info",
            "entries": 200,
            "total": 1000,
            "entries_per_s": 40,
            "eta_s": 20.0,
        }
    ]
    assert out.getvalue() == ""
