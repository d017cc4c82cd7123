"""Every option of an audit, declared once: its keyword, flags, default, value name, kind, where it
goes and its help. The CLI builds its flags from these (:mod:`gancheck.cli.declared`), the Python API
checks and splits its keywords with them (:func:`split_audit_options`), and the run's settings take
their defaults from them (:class:`gancheck.run.config.AuditConfig`).

Where an option goes (``target``): ``config`` (a setting of the measurement, in the run's
fingerprint), ``generator`` (the generator source's own option: a source that does not take it
refuses it), ``embedder`` (the embedder's own option, refused likewise), ``run`` (how the audit is
run and written), ``cli`` (the command line only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from gancheck.defaults import BATCH_SIZE, CHUNK_SIZE, SHARD_SIZE
from gancheck.errors import GancheckError

#: The largest collection or anchor count accepted (beyond it a run could never finish here).
MAX_COUNT = 10**12
KINDS = ("count", "int", "float", "str", "path", "flag", "list")
TARGETS = ("config", "generator", "embedder", "run", "cli")


@dataclass(frozen=True)
class Option:
    """One option: ``name`` is its Python keyword, ``flags`` its command-line spellings, ``kind`` one
    of :data:`KINDS` (``count``: a whole number that may be written 1e6)."""

    name: str
    flags: tuple[str, ...]
    default: Any
    metavar: str | None
    kind: str
    target: str
    help: str = ""
    show_default: str | bool = True
    envvar: str | None = None
    #: the command line's default when it differs from the API's (``--out`` has one, the API none)
    cli_default: Any = None

    @property
    def flag(self) -> str:
        return self.flags[0]


AUDIT_OPTIONS: dict[str, Option] = {o.name: o for o in [
    Option('n', ('--n',), 10_000, 'N', 'count', 'config',
           help='Size of the collection C, in samples (each compared with every anchor); accepts 1e6-style numbers.'),
    Option('anchors', ('--anchors',), 1_000, 'N', 'count', 'config',
           help='Number of anchors A (drawn apart from C) whose MCCS is computed; accepts 1e4-style numbers.'),
    Option('seed', ('--seed',), 0, 'SEED', 'int', 'config',
           help='Seed; every latent is reproducible from (seed, sample index).'),
    Option('embedder', ('--embedder',), "pixel", 'NAME', 'str', 'run',
           help='Embedder that turns each image into an identity descriptor: pixel, dlib, insightface, or onnx:PATH (any ONNX model).'),
    Option('theta', ('--theta',), None, 'D', 'float', 'config', show_default="the embedder's",
           help='Largest distance at which two images share an identity, as a normalised angular distance (Eq. 4, 0 to 1).'),
    Option('radius', ('--radius',), None, 'D', 'float', 'config', show_default="the embedder's",
           help='Radius r of the neighbour counts N_r and dense modes, as a normalised angular distance (Eq. 4, 0 to 1).'),
    Option('mccs_form', ('--mccs-form',), "paper", 'paper|reference', 'str', 'config',
           help="paper: Eq. 7, 1/(1-ln m) in (0,1]; reference: the published code's formula 1/(-log10 m). The formula alone does not reproduce the paper's tables: add --protocol reference for that."),
    Option('protocol', ('--protocol',), "independent", 'independent|reference', 'str', 'config',
           help="independent: anchors drawn apart from C (Eq. 8); reference: the published code's protocol, anchors are C's first samples and each anchor's m counts itself (matters at small --n). With --mccs-form reference it compares exactly with the paper's tables."),
    Option('out', ('--out',), None, 'DIR', 'path', 'run', cli_default="gancheck-run",
           help='Run directory: report.html (open it in a browser), report.json, manifest.json and the Parquet tables. Written beside it as .DIR.partial and moved into place when the run has finished.'),
    Option('overwrite', ('--overwrite',), False, None, 'flag', 'run',
           help='Replace a run already in --out.'),
    Option('as_json', ('--json',), False, None, 'flag', 'cli',
           help='Print report.json to stdout (and nothing else); progress lines still go to stderr unless --quiet.'),
    Option('quiet', ('--quiet', '-q'), False, None, 'flag', 'cli',
           help="Print nothing but errors and failed gates. Without it: progress bars and a summary on a terminal; elsewhere (CI logs) a line per stage, a progress line every 30 s and a last line with the verdict and the report's path, on stderr."),
    Option('batch_size', ('--batch-size',), BATCH_SIZE, 'N', 'int', 'config',
           help='Images generated and embedded per batch; results do not depend on it.'),
    Option('chunk_size', ('--chunk-size',), CHUNK_SIZE, 'N', 'int', 'config',
           help='Collection samples per statistics tile; results do not depend on it.'),
    Option('backend', ('--backend',), "auto", 'auto|blas|faiss', 'str', 'config',
           help='Statistics backend: numpy matrix products (blas) or FAISS range search; results do not depend on it.'),
    Option('device', ('--device',), "auto", 'auto|cpu|cuda', 'str', 'run',
           help='Where the generator and the embedder run (auto: CUDA when present).'),
    Option('threads', ('--threads',), None, 'N', 'int', 'run', show_default='all cores',
           help='CPU threads for BLAS, FAISS and onnxruntime.'),
    Option('gates', ('--fail-if',), None, "'KEY>BOUND'", 'list', 'run',
           help="Gate: exit 1 when a report value crosses a bound, e.g. 'mccs.mean>0.45', 'worst_mode.neighbor_fraction>=0.02' or 'verdict.collapse>0'. Repeatable."),
    Option('top_k', ('--top-k',), 24, 'K', 'int', 'config',
           help='How many distinct dense modes to list (an anchor within r of a listed mode is not a new mode).'),
    Option('layout', ('--layout',), "auto", 'auto|nchw|nhwc', 'str', 'generator',
           help='Generator output layout: auto (detected from a probe batch), channels first or last.'),
    Option('value_range', ('--range',), "auto", 'auto|-1,1|0,1|0,255', 'str', 'generator',
           help='Generator output value range: auto (detected from a probe batch), [-1, 1], [0, 1] or [0, 255].'),
    Option('prior', ('--prior',), "normal", 'normal|uniform|truncnormal', 'str', 'generator',
           help='Latent prior: standard normal, uniform on [-t, t], or normal truncated to |z| <= t (t: --truncation).'),
    Option('truncation', ('--truncation',), 2.0, 'T', 'float', 'generator',
           help='The bound t of the uniform and truncnormal priors, in latent units (standard deviations).'),
    Option('latent_input', ('--latent-input',), None, 'NAME', 'str', 'generator',
           help='ONNX or torch.export program input that takes the latent (default: guessed from names and types).'),
    Option('latent_shape', ('--latent-shape',), None, 'SHAPE', 'str', 'generator',
           help='Latent shape for TorchScript/callable generators, e.g. 512 or 100,1,1.'),
    Option('inputs', ('--input',), None, 'NAME=VALUE', 'list', 'generator',
           help='Fixed value for another generator input, NAME=VALUE (class label, truncation, noise mode). Repeatable.'),
    Option('align', ('--align',), None, 'detect|fixed|detect-cnn', 'str', 'embedder', show_default='detect',
           help="Face embedders: detect (detector + 5 landmarks), fixed (pre-aligned crop; ArcFace frame, or FFHQ/CelebA-HQ frame with --embedder-opt frame=ffhq) or, for dlib, detect-cnn (dlib's CNN face detector). dlib runs as ONNX; --embedder-opt engine=dlib runs dlib's own code."),
    Option('insightface_dir', ('--insightface-dir',), None, 'DIR', 'path', 'embedder', envvar='GANCHECK_INSIGHTFACE_DIR',
           help='Directory holding the InsightFace model pack (e.g. ~/.insightface/models).'),
    Option('embedder_opts', ('--embedder-opt',), None, 'KEY=VALUE', 'list', 'embedder',
           help='Extra embedder option KEY=VALUE (e.g. size=32 for pixel, input_size=112 for onnx). Repeatable.'),
    Option('no_face', ('--no-face',), "exclude", 'exclude|keep', 'str', 'config',
           help="Images where the embedder finds no face: exclude them from C, or keep them as one 'no face' point."),
    Option('save_embeddings', ('--save-embeddings',), False, None, 'flag', 'config',
           help="Also write the collection's embeddings to embeddings.parquet."),
    Option('reference', ('--reference',), None, 'DIR', 'path', 'run',
           help='Folder of real images: adds precision, recall, density, coverage and the Fréchet distance in descriptor space.'),
    Option('junit', ('--junit',), None, 'FILE', 'path', 'run',
           help='Write JUnit XML with one test case per --fail-if gate, for CI systems.'),
    Option('resume', ('--resume',), False, None, 'flag', 'run',
           help='Continue a killed or failed run in --out from its finished shards (same settings required).'),
    Option('shard_size', ('--shard-size',), SHARD_SIZE, 'N', 'int', 'config',
           help='Collection samples per checkpointed shard (what --resume redoes at most).'),
    Option('on_nan', ('--on-nan',), "stop", 'stop|skip', 'str', 'config',
           help='Generator images with NaN/Inf: stop with an error, or skip and count them.'),
    Option('retries', ('--retries',), 2, 'N', 'int', 'config',
           help='Retries of a generator or embedder batch that raises, before the run stops (finished shards are kept).'),
    Option('executor', ('--executor',), "local", 'local|ray', 'str', 'config',
           help='local (this process) or ray (shards spread over Ray workers).'),
    Option('workers', ('--workers',), 1, 'N', 'int', 'config',
           help='Ray workers (one per GPU or CPU group).'),
    Option('ray_address', ('--ray-address',), None, 'ADDR', 'str', 'config', show_default='start a local cluster',
           help='Address of an existing Ray cluster.'),
    Option('calibrator', ('--calibrator',), None, 'FILE', 'path', 'run',
           help='Audit the calibrated sampler in this file (from `gancheck calibrate`) instead of the plain prior.'),
    Option('force', ('--force',), False, None, 'flag', 'run',
           help='Use --calibrator even though it was built for another generator.'),
    Option('allow_inconclusive', ('--allow-inconclusive',), False, None, 'flag', 'run',
           help="Let --fail-if gates pass on an inconclusive run (degenerate descriptors or images, see report.json's degenerate)."),
    Option('request_template', ('--request-template',), None, 'FILE', 'path', 'generator',
           help='JSON service over HTTP: the template saying where the latents go and where the images come back (docs/sources.md).'),
    Option('concurrency', ('--concurrency',), 1, 'N', 'int', 'generator',
           help='HTTP generators: requests in flight at once (each batch is split across them).'),
    Option('max_rps', ('--max-rps',), None, 'R', 'float', 'generator',
           help='HTTP generators: at most R requests per second.'),
    Option('timeout', ('--timeout',), 1800.0, 'S', 'float', 'config',
           help='Seconds one generator or embedder call (a batch, an HTTP request, a cmd: answer) may take before it counts as hung: retried per --retries, then the run stops resumably. 0: no limit.'),
    Option('token_env', ('--token-env',), "GANCHECK_HTTP_TOKEN", 'VAR', 'str', 'generator',
           help='HTTP generators: environment variable holding a bearer token (the token itself is never an option nor recorded).'),
    Option('ca_file', ('--ca-file',), None, 'FILE', 'path', 'generator',
           help="HTTPS generators: CA certificate(s) to verify the server with (default: the system's)."),
    Option('sweep', ('--sweep',), None, 'NAME=onehot:K|NAME=values:A,B', 'str', 'run',
           help='Audit each value of a conditioning input as its own sub-run (same seeds and embedder) and rank the classes; --fail-if then also takes max_class.KEY and classes.LABEL.KEY.'),
    Option("neighbors_k", ("--neighbors-k",), 80, "K", "int", "config",
           help="Nearest collection samples kept per dense mode for the report's mosaics (Python API only)."),
]}
#: Options of the Python API that the command line does not offer.
API_ONLY = ("neighbors_k",)


def default(name: str) -> Any:
    """The declared default of audit option ``name``."""
    return AUDIT_OPTIONS[name].default


def parse_count(text, name: str, minimum: int = 0, maximum: int = MAX_COUNT) -> int:
    """``1e6``, ``100000``, ``100_000`` (or an int) as an int in [minimum, maximum]."""
    try:
        value = float(str(text).replace("_", ""))
    except ValueError:
        raise GancheckError(f"{name} must be a number such as 10000 or 1e6, got {text!r}") from None
    if not math.isfinite(value) or value != int(value) or value < 0:
        raise GancheckError(f"{name} must be a whole non-negative number, got {text!r}")
    if not minimum <= value <= maximum:
        raise GancheckError(f"{name} must lie between {minimum:,} and {maximum:,}, got {text!r}")
    return int(value)


def parse_pairs(items, flag: str) -> dict:
    """``["K=V", ...]`` (or a dict) as ``{K: V}``."""
    if isinstance(items, dict):
        return dict(items)
    out = {}
    for item in items or []:
        key, sep, value = str(item).partition("=")
        if not sep or not key:
            raise GancheckError(f"{flag} takes NAME=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def split_audit_options(options: dict) -> dict[str, dict]:
    """The audit keywords ``options`` by target: ``{"config": ..., "generator": ..., "embedder": ...,
    "run": ...}``, each checked against the declarations (an unknown keyword is an error, never
    ignored) and converted (counts parsed, ``inputs``/``embedder_opts`` read as NAME=VALUE).
    Generator and embedder options left at None are not passed on, so that the plug-in's own
    default applies and a plug-in that does not take an option only sees it when it was given."""
    unknown = sorted(set(options) - set(AUDIT_OPTIONS) - {"generator_options", "embedder_options", "progress", "log", "argv", "html"})
    if unknown:
        raise GancheckError(f"unknown audit option {', '.join(unknown)}; the options are those of `gancheck audit --help` "
                            "(as Python keywords: --mccs-form is mccs_form)")
    parts: dict[str, dict] = {t: {} for t in TARGETS}
    parts["generator"] = dict(options.get("generator_options") or {})
    parts["embedder"] = dict(options.get("embedder_options") or {})
    for key in ("progress", "log", "argv", "html"):
        if key in options:
            parts["run"][key] = options[key]
    for name, value in options.items():
        opt = AUDIT_OPTIONS.get(name)
        if opt is None:
            continue
        if opt.kind == "count" and value is not None:
            value = parse_count(value, opt.flag)
        if opt.kind == "float" and value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise GancheckError(f"{opt.flag} must be a finite number not below 0, got {value!r}")
        if opt.target in ("generator", "embedder"):
            _plug_in_option(parts[opt.target], opt, value)
        else:
            parts[opt.target][name] = value
    return parts


def _plug_in_option(into: dict, opt: Option, value) -> None:
    """A generator or embedder option as its plug-in's keyword (None: not given, not passed)."""
    if value is None or (opt.kind == "list" and not value):
        return
    if opt.name == "embedder_opts":
        into.update(parse_pairs(value, opt.flag))
    elif opt.name == "inputs":
        into["inputs"] = parse_pairs(value, opt.flag)
    elif opt.name == "latent_shape":
        into["latent_shape"] = tuple(parse_count(s, opt.flag) for s in value.split(",")) if isinstance(value, str) else tuple(value)
    elif opt.name == "insightface_dir":
        into["model_dir"] = str(value)
    else:
        into[opt.name] = str(value) if opt.kind == "path" else value
