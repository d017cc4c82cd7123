"""What every command shares: one-line errors, number parsing (:mod:`gancheck.options`), the generator options, signals."""

from __future__ import annotations

import functools
import math
import os
import signal
import sys

import typer

from gancheck.engine.pipeline import Stopped, pipeline_active, request_stop, stop_requested
from gancheck.cli.declared import parameter
from gancheck.errors import GancheckError
from gancheck.options import AUDIT_OPTIONS, parse_count, parse_pairs, split_audit_options  # noqa: F401  (the commands' parsers)

EXIT_GATE = 1
EXIT_USAGE = 2
#: More threads than this only exhausts the machine (OpenMP would start every one).
MAX_THREADS = 1024


def fail(message: str, code: int = EXIT_USAGE):
    typer.echo(f"gancheck: error: {message}", err=True)
    raise typer.Exit(code)


def debugging() -> bool:
    """``--debug`` (anywhere on the command line) or GANCHECK_DEBUG=1: tracebacks and third-party logs are shown."""
    return os.environ.get("GANCHECK_DEBUG", "") not in ("", "0")


def run_app(app) -> None:
    """Run the Typer ``app`` as the ``gancheck`` command: one line on stderr for every error, Typer's
    usage errors included; SIGTERM and SIGINT stop at the next batch; ``--debug`` anywhere shows
    tracebacks and third-party logs."""
    from typer._click.exceptions import UsageError

    args = sys.argv[1:]
    if "--debug" in args:
        args = [a for a in args if a != "--debug"]
        os.environ["GANCHECK_DEBUG"] = "1"
    quiet_third_party()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop_handler)
    try:
        code = app(args=args, prog_name="gancheck", standalone_mode=False)
    except UsageError as exc:
        path = exc.ctx.command_path if exc.ctx is not None else "gancheck"
        text = " ".join(exc.format_message().split()).rstrip(".")
        if text:  # empty after the help of a bare `gancheck`, already shown
            typer.echo(f"gancheck: error: {text}; see {path} --help", err=True)
        code = exc.exit_code
    except (typer.Abort, Stopped, KeyboardInterrupt) as exc:  # a signal outside any command's own handling
        name = exc.signal_name if isinstance(exc, Stopped) else "SIGINT"
        typer.echo(f"gancheck: stopped by {name}", err=True)
        code = 128 + int(getattr(signal, name))
    sys.exit(code if isinstance(code, int) else 0)


def _stop_handler(signum, frame):
    """First SIGTERM/SIGINT: stop at the next batch boundary; a second one stops at once."""
    name = signal.Signals(signum).name
    if stop_requested() or not pipeline_active():  # outside a pipeline there is no batch to wait for
        raise Stopped(name)
    request_stop(name)


def quiet_third_party() -> None:
    """Silence other libraries' log lines and warnings (onnxruntime, FAISS, Ray, deprecations) unless ``--debug``."""
    import logging
    import warnings

    if debugging():
        return
    warnings.filterwarnings("ignore")
    for name in ("ray", "faiss", "onnxruntime", "insightface", "PIL", "matplotlib"):
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_LOG_TO_STDERR", "0")


def handle_errors(fn):
    """Every error becomes one line on stderr: user errors exit 2, a stop asked for by a signal
    128 + its number; no traceback unless ``--debug``."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except GancheckError as exc:
            fail(" ".join(str(exc).split()))
        except (Stopped, KeyboardInterrupt) as exc:
            name = exc.signal_name if isinstance(exc, Stopped) else "SIGINT"
            typer.echo(f"gancheck: stopped by {name}; finished shards are kept: rerun the same command with --resume to continue", err=True)
            raise typer.Exit(128 + int(getattr(signal, name)))
        except MemoryError:
            fail("out of memory; lower --n (or split the audit into smaller runs) or --anchors; --batch-size and --chunk-size only bound the working memory")
        except OSError as exc:  # a full disk or a vanished directory while writing results
            fail(f"{exc.strerror or exc}: {exc.filename or ''}; files already written are intact, fix the cause and rerun (with --resume for an audit)")
        except Exception as exc:
            if debugging():
                raise
            text = (str(exc).strip().splitlines() or [""])[0][:300]
            fail(f"unexpected {type(exc).__name__}: {text}; rerun with --debug for the traceback and report it if the input looks valid")

    return wrapper


def positive(value, name: str):
    """``value`` unchanged when None or at least 1; otherwise a one-line error."""
    if value is not None and value < 1:
        raise GancheckError(f"{name} must be at least 1 (or left out for the default), got {value}")
    return value


def finite(value, name: str, low: float = 0.0, high: float = math.inf):
    """``value`` unchanged when None or a finite number in [low, high]; otherwise a one-line error."""
    if value is not None and not (math.isfinite(value) and low <= value <= high):
        raise GancheckError(f"{name} must be a finite number in [{low:g}, {high:g}], got {value}")
    return value


def set_threads(threads: int | None) -> None:
    positive(threads, "--threads")
    if threads is not None and threads > MAX_THREADS:
        raise GancheckError(f"--threads must be at most {MAX_THREADS} (this machine has {os.cpu_count()} cores), got {threads}")
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


# The generator options of every command that runs a generator, from their one declaration.
LAYOUT, VALUE_RANGE, PRIOR, TRUNCATION, LATENT_INPUT, LATENT_SHAPE, INPUTS = (
    parameter(AUDIT_OPTIONS[name]).default for name in ("layout", "value_range", "prior", "truncation", "latent_input", "latent_shape", "inputs"))


def generator_options(layout, value_range, prior, truncation, latent_input, latent_shape, inputs) -> dict:
    """The generator options above as ``load_generator`` keywords (those not given left out)."""
    return split_audit_options(dict(layout=layout, value_range=value_range, prior=prior, truncation=truncation, latent_input=latent_input,
                                    latent_shape=latent_shape, inputs=inputs))["generator"]
