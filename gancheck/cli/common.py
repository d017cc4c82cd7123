"""What every command shares: one-line errors, number parsing, the generator options, progress."""

from __future__ import annotations

import functools
import sys

import typer

from gancheck.errors import GancheckError

EXIT_GATE = 1
EXIT_USAGE = 2


def fail(message: str, code: int = EXIT_USAGE):
    typer.echo(f"gancheck: error: {message}", err=True)
    raise typer.Exit(code)


def handle_errors(fn):
    """User errors become one line on stderr and exit status 2, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except GancheckError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            typer.echo("gancheck: interrupted; files already written are intact", err=True)
            raise typer.Exit(130)
        except MemoryError:
            fail("out of memory; lower --batch-size or --chunk-size")
        except OSError as exc:  # a full disk or a vanished directory while writing results
            fail(f"{exc.strerror or exc}: {exc.filename or ''}; files already written are intact, fix the cause and rerun (with --resume for an audit)")

    return wrapper


def parse_count(text: str, name: str) -> int:
    """``1e6``, ``100000`` or ``100_000`` as an int."""
    try:
        value = float(str(text).replace("_", ""))
    except ValueError:
        raise GancheckError(f"{name} must be a number such as 10000 or 1e6, got {text!r}") from None
    if value != int(value) or value < 0:
        raise GancheckError(f"{name} must be a whole non-negative number, got {text!r}")
    return int(value)


def parse_pairs(items: list[str] | None, flag: str) -> dict:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise GancheckError(f"{flag} takes NAME=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def set_threads(threads: int | None) -> None:
    if not threads:
        return
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
    except ImportError:
        pass
    try:
        import faiss

        faiss.omp_set_num_threads(threads)
    except ImportError:
        pass


# Options of every command that runs a generator.
LAYOUT = typer.Option("auto", "--layout", help="Generator output layout: auto, nchw or nhwc.")
VALUE_RANGE = typer.Option("auto", "--range", help="Generator output value range: auto, -1,1, 0,1 or 0,255.")
PRIOR = typer.Option("normal", "--prior", help="Latent prior: normal, uniform (on [-t, t]) or truncnormal (|z| <= t).")
TRUNCATION = typer.Option(2.0, "--truncation", help="The bound t of the uniform and truncnormal priors.")
LATENT_INPUT = typer.Option(None, "--latent-input", help="ONNX input that takes the latent (default: guessed from names and types).")
LATENT_SHAPE = typer.Option(None, "--latent-shape", help="Latent shape for TorchScript/callable generators, e.g. 512 or 100,1,1.")
INPUTS = typer.Option(None, "--input", help="Fixed value for another generator input, NAME=VALUE (class label, truncation, noise mode). Repeatable.")


def generator_options(layout, value_range, prior, truncation, latent_input, latent_shape, inputs) -> dict:
    """The generator options above as ``load_generator`` keywords."""
    shape = tuple(parse_count(s, "--latent-shape") for s in latent_shape.split(",")) if latent_shape else None
    return dict(layout=layout, value_range=value_range, prior=prior, truncation=truncation, latent_input=latent_input,
                latent_shape=shape, inputs=parse_pairs(inputs, "--input"))


def interactive(quiet: bool) -> bool:
    return not quiet and sys.stdout.isatty()


class progress_bar:
    """A Rich progress bar with throughput and ETA; a no-op when not shown."""

    def __init__(self, show: bool):
        self.show = show
        self.tasks = {}

    def __enter__(self):
        if not self.show:
            return None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        class Rate(TextColumn):
            def render(self, task):
                speed = task.finished_speed or task.speed
                from rich.text import Text

                return Text(f"{speed:,.0f} img/s" if speed else "", style="cyan")

        self.progress = Progress(TextColumn("{task.description:>8}"), BarColumn(), MofNCompleteColumn(), Rate(""),
                                 TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())
        self.progress.start()
        return self.update

    def update(self, stage: str, done: int, total: int) -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(stage, total=total)
        self.progress.update(self.tasks[stage], completed=done)

    def __exit__(self, *exc):
        if self.show:
            self.progress.stop()
        return False
