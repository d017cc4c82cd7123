"""The ``gancheck`` command line: parses, calls the Python API, renders. Nothing is computed here."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from gancheck.errors import GancheckError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Black-box diagnosis and calibration of GAN intra-mode collapse (Wu et al.).")

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


@app.command()
@handle_errors
def audit(
    generator: str = typer.Argument(..., help="The generator: an .onnx file, a TorchScript file (.pt), a Python callable package.module:attr, or a folder of its images."),
    n: str = typer.Option("1e4", "--n", help="Size of the collection C (samples compared with every anchor); accepts 1e6-style numbers."),
    anchors: str = typer.Option("1000", "--anchors", help="Number of anchors A (independent of C) whose MCCS is computed."),
    seed: int = typer.Option(0, "--seed", help="Seed; every latent is reproducible from (seed, sample index)."),
    embedder: str = typer.Option("pixel", "--embedder", help="Identity descriptor: pixel, dlib, insightface, or onnx:PATH."),
    theta: Optional[float] = typer.Option(None, "--theta", help="Largest normalised angular distance (Eq. 4, in [0, 1]) at which two images share an identity; default: the descriptor's."),
    radius: Optional[float] = typer.Option(None, "--radius", help="Radius r for neighbour counts N_r and dense modes; default: the descriptor's."),
    mccs_form: str = typer.Option("paper", "--mccs-form", help="paper: Eq. 7, 1/(1-ln m) in (0,1]; reference: the published code's 1/(-log10 m), to compare with the paper's tables."),
    out: Path = typer.Option(Path("gancheck-run"), "--out", help="Run directory for manifest.json, report.json and the Parquet tables."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a run already in --out."),
    as_json: bool = typer.Option(False, "--json", help="Print report.json to stdout (and nothing else)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary table (also automatic when stdout is not a terminal)."),
    batch_size: int = typer.Option(64, "--batch-size", help="Images generated and embedded per batch; results do not depend on it."),
    chunk_size: int = typer.Option(4096, "--chunk-size", help="Collection samples per statistics tile; results do not depend on it."),
    backend: str = typer.Option("auto", "--backend", help="Statistics backend: auto, blas (numpy matrix products) or faiss (range search)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda: where the generator and the descriptor run."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for BLAS, FAISS and onnxruntime (default: all cores)."),
    fail_if: Optional[List[str]] = typer.Option(None, "--fail-if", help="Gate: exit 1 when a report value crosses a bound, e.g. 'mccs.mean>0.45' or 'worst_mode.neighbor_fraction>=0.02'. Repeatable."),
    top_k: int = typer.Option(24, "--top-k", help="How many distinct dense modes to list (an anchor within r of a listed mode is not a new mode)."),
    layout: str = LAYOUT,
    value_range: str = VALUE_RANGE,
    prior: str = PRIOR,
    truncation: float = TRUNCATION,
    latent_input: Optional[str] = LATENT_INPUT,
    latent_shape: Optional[str] = LATENT_SHAPE,
    inputs: Optional[List[str]] = INPUTS,
    align: Optional[str] = typer.Option(None, "--align", help="Face descriptors: detect (detector + 5 landmarks) or fixed (pre-aligned crop; ArcFace frame, or FFHQ/CelebA-HQ frame with --embedder-opt frame=ffhq)."),
    insightface_dir: Optional[Path] = typer.Option(None, "--insightface-dir", envvar="GANCHECK_INSIGHTFACE_DIR", help="Directory holding the InsightFace model pack (e.g. ~/.insightface/models)."),
    embedder_opts: Optional[List[str]] = typer.Option(None, "--embedder-opt", help="Extra descriptor option KEY=VALUE (e.g. size=32 for pixel, input_size=112 for onnx). Repeatable."),
    no_face: str = typer.Option("exclude", "--no-face", help="Images where the descriptor finds no face: exclude them from C, or keep them as one 'no face' point."),
    save_embeddings: bool = typer.Option(False, "--save-embeddings", help="Also write the collection's embeddings to embeddings.parquet."),
    reference: Optional[Path] = typer.Option(None, "--reference", help="Folder of real images: adds precision, recall, density, coverage and the Fréchet distance in descriptor space."),
    junit: Optional[Path] = typer.Option(None, "--junit", help="Write JUnit XML with one test case per --fail-if gate, for CI systems."),
    resume: bool = typer.Option(False, "--resume", help="Continue a killed or failed run in --out from its finished shards (same settings required)."),
    shard_size: int = typer.Option(16384, "--shard-size", help="Samples per checkpointed shard of the collection."),
    on_nan: str = typer.Option("stop", "--on-nan", help="Generator images with NaN/Inf: stop with an error, or skip and count them."),
    retries: int = typer.Option(2, "--retries", help="Retries of a generator or descriptor batch that raises, before the run stops (finished shards are kept)."),
    executor: str = typer.Option("local", "--executor", help="local (this process) or ray (shards spread over Ray workers)."),
    workers: int = typer.Option(1, "--workers", help="Ray workers (one per GPU or CPU group)."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Address of an existing Ray cluster (default: start a local one)."),
    calibrator: Optional[Path] = typer.Option(None, "--calibrator", help="Audit the calibrated sampler in this file (from `gancheck calibrate`) instead of the plain prior."),
    force: bool = typer.Option(False, "--force", help="Use --calibrator even though it was built for another generator."),
):
    """Audit a generator for intra-mode collapse: MCCS per anchor, its mean and spread, dense modes."""
    from gancheck import api
    from gancheck.gates import Gate, describe

    gates = [Gate.parse(g) for g in fail_if or []]
    set_threads(threads)
    show = interactive(quiet) and not as_json
    with progress_bar(show) as on_progress:
        report = api.audit(
            generator, n=parse_count(n, "--n"), anchors=parse_count(anchors, "--anchors"), seed=seed, embedder=embedder,
            theta=theta, radius=radius, mccs_form=mccs_form, out=out, overwrite=overwrite, batch_size=batch_size,
            chunk_size=chunk_size, backend=backend, device=device, threads=threads, top_k=top_k, no_face=no_face,
            save_embeddings=save_embeddings, progress=on_progress, gates=gates, calibrator=calibrator, force=force,
            resume=resume, shard_size=shard_size, on_nan=on_nan, retries=retries, executor=executor, workers=workers,
            ray_address=ray_address, reference=reference, junit=junit, log=(lambda msg: typer.echo(msg, err=True)) if show else None,
            generator_options=generator_options(layout, value_range, prior, truncation, latent_input, latent_shape, inputs),
            embedder_options=dict(parse_pairs(embedder_opts, "--embedder-opt"), align=align,
                                  model_dir=str(insightface_dir) if insightface_dir else None),
            argv=sys.argv,
        )
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    elif show:
        render_summary(report, out)
    failed = [g for g in report.get("gates", []) if g["failed"]]
    for g in report.get("gates", []):
        if g["failed"] or show:
            typer.echo(describe(g), err=True)
    if failed:
        raise typer.Exit(EXIT_GATE)


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


def render_summary(report: dict, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    w = report["worst_mode"]
    table = Table(title=f"gancheck audit: {report['n_samples']:,} samples, {report['n_anchors']:,} anchors", title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    fmt = lambda x: "inf" if x is None else f"{x:.4f}"  # noqa: E731
    table.add_row(f"MCCS mean (form: {report['mccs_form']}, {report['mccs_formula']})", fmt(report["mccs"]["mean"]))
    if report["mccs"].get("mean_ci_low") is not None:
        table.add_row("MCCS mean, 95% bootstrap interval", f"{fmt(report['mccs']['mean_ci_low'])} - {fmt(report['mccs']['mean_ci_high'])}")
    table.add_row("MCCS std (sample)", fmt(report["mccs"]["std"]))
    table.add_row("worst mode MCCS", fmt(w["mccs"]))
    table.add_row("worst mode neighbours within r", f"{w['neighbors']:,} ({100 * w['neighbor_fraction']:.2f}%)")
    table.add_row("worst mode sample index", str(w["sample_index"]))
    table.add_row("theta / r", f"{report['theta']:.4f} / {report['radius']:.4f}")
    if report.get("skipped_nan"):
        table.add_row("images skipped for NaN/Inf", f"{report['skipped_nan']:,}")
    if report.get("no_face", {}).get("count"):
        table.add_row("images with no face", f"{report['no_face']['count']:,} ({100 * report['no_face']['rate']:.1f}%, {report['no_face']['policy']}d)")
    modes = Table(title="distinct dense modes", title_justify="left")
    for col in ("rank", "sample", "N_r", "fraction", "MCCS"):
        modes.add_column(col, justify="right")
    for m in report["modes"][:10]:
        modes.add_row(str(m["rank"]), str(m["sample_index"]), f"{m['neighbors']:,}", f"{100 * m['neighbor_fraction']:.2f}%", fmt(m["mccs"]))
    console = Console()
    console.print(table)
    console.print(modes)
    console.print(f"run directory: {out}  (open {out / 'report.html'} to see the modes)")


@app.command()
@handle_errors
def demo(
    out: Path = typer.Option(Path("gancheck-demo"), "--out", help="Run directory for the demo audit."),
    n: str = typer.Option("2e4", "--n", help="Collection size."),
    anchors: str = typer.Option("1000", "--anchors", help="Number of anchors."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary table."),
    as_json: bool = typer.Option(False, "--json", help="Print report.json to stdout."),
):
    """Audit the built-in demo generator (ships with the package; 6% of its draws collapse onto one image)."""
    from gancheck.demo import DEMO_MODEL

    audit(generator=str(DEMO_MODEL), n=n, anchors=anchors, out=out, overwrite=True, quiet=quiet, as_json=as_json,
          **_audit_defaults(exclude={"generator", "n", "anchors", "out", "overwrite", "quiet", "as_json"}))


def _audit_defaults(exclude: set) -> dict:
    """The audit command's defaults, for commands that call it with a few values changed."""
    import inspect

    return {k: (p.default.default if hasattr(p.default, "default") else p.default)
            for k, p in inspect.signature(audit.__wrapped__).parameters.items() if k not in exclude}


# Commands defined in their own modules register here, one line each.
from gancheck.thresholds import theta_command  # noqa: E402

app.command("theta")(handle_errors(theta_command))
from gancheck import report_cli  # noqa: E402,F401  (report, compare)
from gancheck.calibrate import cli as calibrate_cli  # noqa: E402,F401  (calibrate, sample)


def main():
    app(prog_name="gancheck")


if __name__ == "__main__":
    main()
