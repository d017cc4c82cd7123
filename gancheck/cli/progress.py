"""What a command says while it works, on stderr or a terminal:

- on a terminal: a Rich display (bars with throughput and ETA); notices print above the bars;
- otherwise (CI logs, files): plain lines on stderr, one when a stage starts and one when it ends,
  and a progress line at most every :data:`INTERVAL` seconds (count, rate, ETA);
- ``--quiet``: nothing.
"""

from __future__ import annotations

import os
import sys
import time

from gancheck.formatting import format_count, format_number

#: seconds between two progress lines of one stage in a log (``GANCHECK_PROGRESS_INTERVAL`` overrides)
INTERVAL = 30.0
STAGE_NAMES = {"anchors": "anchor images", "samples": "collection samples", "fit": "fit samples", "floor": "noise-floor samples",
               "reference": "reference images", "generated": "generated images",
               "train": "training images", "holdout": "held-out images"}


def duration(seconds: float) -> str:
    """``4.2 s``, ``3 min 12 s``, ``1 h 02 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def choose_mode(quiet: bool, as_json: bool = False) -> str:
    """``rich`` on a terminal, ``lines`` in a log, ``off`` with --quiet."""
    if quiet:
        return "off"
    if not as_json and sys.stdout.isatty() and sys.stderr.isatty():
        return "rich"
    return "lines"


class _Stage:
    def __init__(self, name: str, total: int, now: float):
        self.name, self.total, self.start, self.last_line, self.done = name, total, now, now, 0
        self.first: int | None = None  # done at the first update: samples a resumed run already had
        self.finished = False

    def rate(self, now: float) -> float:
        """Images per second processed in this process (a resumed run's earlier samples not counted)."""
        return (self.done - (self.first or 0)) / max(now - self.start, 1e-9)


class LogLines:
    """Progress as plain lines on ``stream`` (stderr): for CI logs and files."""

    def __init__(self, stream=None, interval: float | None = None, clock=time.monotonic):
        self.stream = stream or sys.stderr
        env = os.environ.get("GANCHECK_PROGRESS_INTERVAL")
        self.interval = float(env) if interval is None and env else (INTERVAL if interval is None else interval)
        self.clock = clock
        self.stages: dict[str, _Stage] = {}
        self.current: _Stage | None = None

    def log(self, message: str) -> None:
        print(f"gancheck: {message}", file=self.stream, flush=True)

    def update(self, stage: str, done: int, total: int) -> None:
        now = self.clock()
        st = self.stages.get(stage)
        if st is None or (st.finished and done < st.done):  # a new stage (or the same name in a re-audit)
            if self.current is not None and not self.current.finished:
                self._end(self.current, now)
            st = self.stages[stage] = self.current = _Stage(stage, total, now)
            self.log(f"{STAGE_NAMES.get(stage, stage)}: started, {format_count(total)} to process")
        st.done, st.total = done, total
        st.first = done if st.first is None else st.first
        if st.finished:
            return
        if done >= total:
            self._end(st, now)
        elif now - st.last_line >= self.interval and done > st.first:
            st.last_line = now
            rate = st.rate(now)
            eta = (total - done) / rate if rate > 0 else float("inf")
            self.log(f"{STAGE_NAMES.get(stage, stage)}: {format_count(done)} of {format_count(total)} ({100 * done / total:.0f}%), "
                     f"{format_number(rate)} images/s, about {duration(eta)} left")

    def _end(self, st: _Stage, now: float) -> None:
        st.finished = True
        took = now - st.start
        rate = f" ({format_number(st.rate(now))} images/s)" if took > 0 and st.done > (st.first or 0) else ""
        name = STAGE_NAMES.get(st.name, st.name)
        if st.done >= st.total:
            self.log(f"{name}: finished {format_count(st.done)} in {duration(took)}{rate}")
        else:  # interrupted (SIGTERM, Ctrl-C, an error): say where it stopped, not "finished"
            self.log(f"{name}: stopped at {format_count(st.done)} of {format_count(st.total)} after {duration(took)}{rate}")

    def close(self) -> None:
        if self.current is not None and not self.current.finished:
            self._end(self.current, self.clock())


class RichBars:
    """Progress as Rich bars with throughput and ETA on the terminal; notices print above them."""

    def __init__(self):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
        from rich.text import Text

        class Rate(TextColumn):
            def render(self, task):
                speed = task.finished_speed or task.speed
                return Text(f"{speed:,.0f} img/s" if speed else "", style="cyan")

        self.progress = Progress(TextColumn("{task.description:>8}"), BarColumn(), MofNCompleteColumn(), Rate(""),
                                 TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())
        self.tasks: dict[str, int] = {}
        self.progress.start()

    def log(self, message: str) -> None:
        self.progress.console.print(message, style="dim", highlight=False, markup=False)

    def update(self, stage: str, done: int, total: int) -> None:
        task = self.tasks.get(stage)
        if task is not None and done < self.progress.tasks[task].completed:  # the same stage again (a re-audit)
            task = None
        if task is None:
            task = self.tasks[stage] = self.progress.add_task(stage, total=total, completed=done)  # a resumed run's start
        self.progress.update(task, completed=done, total=total)

    def close(self) -> None:
        self.progress.stop()


class Reporter:
    """``with Reporter(mode) as rep:`` gives ``rep.update`` (the API's ``progress``) and ``rep.log``
    (its ``log``), both no-ops with ``mode == "off"``; ``rep.say`` prints a last line in a log."""

    def __init__(self, mode: str):
        self.mode = mode
        self.sink = None
        self.start = time.monotonic()

    def __enter__(self) -> "Reporter":
        self.sink = {"rich": RichBars, "lines": LogLines}.get(self.mode, lambda: None)()
        return self

    def __exit__(self, *exc) -> bool:
        if self.sink is not None:
            self.sink.close()
        return False

    def update(self, stage: str, done: int, total: int) -> None:
        if self.sink is not None:
            self.sink.update(stage, done, total)

    def log(self, message: str) -> None:
        if self.sink is not None:
            self.sink.log(message)

    @property
    def progress(self):
        return self.update if self.sink is not None else None

    @property
    def logger(self):
        return self.log if self.sink is not None else None

    def elapsed(self) -> str:
        return duration(time.monotonic() - self.start)
