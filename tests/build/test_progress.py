"""Progress off a terminal: a few plain lines per loop, not thousands of carriage-return redraws."""

from __future__ import annotations

import io

from anime_pipeline.progress import LineProgress, progress, progress_bar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_output_of_a_long_loop_is_about_ten_lines() -> None:
    # Given a 10,000-item loop writing to a stream that is not a TTY (a CI log),
    # when it runs through the helper, then it prints one line per 10 % and no carriage returns.
    log = io.StringIO()
    seen = sum(1 for _ in progress(range(10_000), desc="embed", unit="batch", stream=log))
    lines = log.getvalue().splitlines()
    assert seen == 10_000
    assert 10 <= len(lines) <= 12
    assert "\r" not in log.getvalue()
    assert lines[0].startswith("embed:  10% 1000/10000 batch")
    assert lines[-1].startswith("embed: 100% 10000/10000 batch")


def test_terminal_gets_a_tqdm_bar() -> None:
    # On a terminal the helper draws tqdm's bar (carriage-return redraws) and yields every item.
    screen = _Terminal()
    assert list(progress(range(50), desc="bar", stream=screen)) == list(range(50))
    assert "\r" in screen.getvalue() and "50/50" in screen.getvalue()


def test_unknown_total_and_transient_loops_print_one_final_line() -> None:
    log = io.StringIO()
    list(progress(iter(range(5_000)), desc="stream", unit="rec", stream=log))
    list(progress(range(5_000), desc="inner", leave=False, stream=log))
    lines = log.getvalue().splitlines()
    assert [line.rsplit(" ", 1)[0] for line in lines] == ["stream: done 5000 rec", "inner: done 5000 it"]


def test_manual_bar_counts_blocks_and_disabled_bar_is_silent() -> None:
    # The teacher stage updates by blocks of rows: marks are crossed by whole blocks.
    log = io.StringIO()
    with progress_bar(total=10_000, desc="teacher", unit="anime", stream=log) as bar:
        for block in range(10):
            bar.update(1024 if block < 9 else 10_000 - 9 * 1024)
    lines = log.getvalue().splitlines()
    assert isinstance(bar, LineProgress) and len(lines) == 10
    assert lines[-1].startswith("teacher: 100% 10000/10000 anime")
    quiet = io.StringIO()
    with progress_bar(total=10, desc="off", disable=True, stream=quiet) as off:
        off.update(10)
    assert quiet.getvalue() == ""


def test_a_loop_that_stops_early_says_how_far_it_got() -> None:
    log = io.StringIO()
    with LineProgress(total=100, desc="partial", stream=log) as bar:
        bar.update(55)
    assert log.getvalue().splitlines()[-1].startswith("partial: done 55 it")
