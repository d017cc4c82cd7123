"""Which source reads a generator spec, and with which options: one ordered table, not import order.

:data:`CLAIMS` is read top to bottom and its first matching rule names the built-in source. Only
when none matches are the third-party sources asked, each through its ``accepts(spec)``; a
third-party source is declared by an entry point in the group ``gancheck.sources``, named after its
kind (``npz = "my_package.source:NpzSource"``). So no plug-in can take a spec from a built-in
source, and a spec two plug-ins accept is refused rather than given to whichever loaded first.

:func:`load_generator` then refuses every option the chosen source does not take, naming the option
as its CLI flag; only the settings of the run itself (:data:`SETTINGS`) go silently to the sources
that take them.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from gancheck.errors import GancheckError
from gancheck.options import AUDIT_OPTIONS
from gancheck.sources.base import SOURCES, Source
from gancheck.sources.torch_files import pt2_kind, what_file

V2_MODEL_URL = re.compile(r"^https?://[^/]+(/.*)?/v2/models/[^/]+(/versions/[^/]+)?/?$")
URL = re.compile(r"^https?://")
CALLABLE_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".torchscript", ".jit")


def _importable(spec: str) -> bool:
    """True when the top-level package of ``package.module:attr`` can be found (nothing is imported),
    so that a plug-in's ``npz:images.npz`` is not read as a module named ``npz``."""
    top = spec.partition(":")[0].partition(".")[0]
    try:
        return top in sys.modules or importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False


@dataclass(frozen=True)
class Claim:
    """One rule of the table: specs that ``matches(spec, options)`` are read by the source ``kind``."""

    kind: str
    rule: str
    matches: Callable[[str, dict], bool]


#: The built-in rules, first match wins. The JSON service's URL rule comes twice: a URL given with a
#: request template is always one; any other URL but an inference server model's is one too (and
#: then asks for the template).
CLAIMS: tuple[Claim, ...] = (
    Claim("cmd", "cmd:PROGRAM ARGS", lambda spec, o: spec.startswith("cmd:")),
    Claim("json", "an http(s):// URL given with --request-template",
          lambda spec, o: bool(URL.match(spec)) and o.get("request_template") is not None),
    Claim("oip", "an http(s)://HOST/v2/models/NAME URL", lambda spec, o: bool(V2_MODEL_URL.match(spec))),
    Claim("json", "any other http(s):// URL", lambda spec, o: bool(URL.match(spec))),
    Claim("folder", "an existing directory", lambda spec, o: Path(spec).is_dir()),
    Claim("onnx", "a path ending in .onnx", lambda spec, o: spec.lower().endswith(".onnx")),
    # By contents as well as suffix: torch.export.save writes any name it is given (model.pt too).
    Claim("pt2", "a path ending in .pt2, or any file that is a PyTorch 2 archive",
          lambda spec, o: Path(spec).suffix.lower() == ".pt2" or pt2_kind(spec) is not None),
    Claim("torchscript", f"a path ending in {', '.join(TORCHSCRIPT_SUFFIXES)}",
          lambda spec, o: Path(spec).suffix.lower() in TORCHSCRIPT_SUFFIXES),
    Claim("callable", "package.module:attr whose package can be found",
          lambda spec, o: bool(CALLABLE_SPEC.match(spec)) and _importable(spec)),
)

#: Each built-in kind in words: one of them (errors about a spec), and all of them (which take an option).
KINDS: dict[str, tuple[str, str]] = {
    "cmd": ("a generator program", "generator programs (cmd:)"),
    "json": ("a JSON service", "JSON services"),
    "oip": ("an inference server model", "inference server models"),
    "folder": ("a folder of images", "folders of images"),
    "onnx": ("an ONNX file", "ONNX files"),
    "pt2": ("a PyTorch 2 file", "PyTorch 2 files (.pt2)"),
    "torchscript": ("a TorchScript file", "TorchScript files"),
    "callable": ("a Python callable", "Python callables"),
}

#: The formats read, as the error for a spec no source claims lists them.
FORMATS = ("an ONNX file (.onnx)", "a torch.export program or AOTInductor package (.pt2)", f"a TorchScript file ({'/'.join(TORCHSCRIPT_SUFFIXES)})", "a folder of images",
           "a Python callable (package.module:attr)", "an inference server model (http(s)://HOST/v2/models/NAME)",
           "a JSON service (http(s)://... with --request-template)", "a program (cmd:PROGRAM ARGS)")

#: Kinds that several built-ins share, named as a group when exactly they take an option.
GROUPS: tuple[tuple[frozenset, str], ...] = (
    (frozenset({"oip", "json"}), "HTTP generators"),
    (frozenset({"cmd", "oip", "json"}), "generators reached over HTTP or run as a program"),
    (frozenset({"cmd", "oip", "json", "onnx", "pt2", "torchscript", "callable"}), "generators with latents"),
)

#: Settings of the run as a whole, which every caller passes: each source that takes one gets it,
#: the others ignore it (they are no user choice about the source). ``timeout`` and ``http_retries``
#: are the run's --timeout and --retries, which the pipeline applies to every generator call; a
#: source that makes calls of its own (HTTP requests, a program's answers) applies them there too.
SETTINGS = ("device", "threads", "batch_size", "timeout", "http_retries")

#: Keyword -> CLI flag for keywords :data:`gancheck.options.AUDIT_OPTIONS` does not declare and
#: whose flag is not ``--`` + the keyword with dashes.
FLAGS = {"http_retries": "--retries"}


def flag(option: str) -> str:
    """The CLI flag of a ``load_generator`` keyword (``max_rps`` -> ``--max-rps``, ``inputs`` -> ``--input``)."""
    declared = AUDIT_OPTIONS.get(option)
    return declared.flag if declared is not None else FLAGS.get(option, "--" + option.replace("_", "-"))


def builtin_kinds() -> list[str]:
    """The built-in source kinds in the table's order, each once."""
    return list(dict.fromkeys(c.kind for c in CLAIMS))


def load_generator(spec: str, **options) -> Source:
    """The source that reads ``spec`` (see :data:`CLAIMS`), built with ``options``.

    ``None`` values mean "not given" and are dropped; :data:`SETTINGS` go only to sources that take
    them; any other option the chosen source does not take is refused with one line.
    """
    spec = str(spec)
    cls = claim(spec, options)
    given = {k: v for k, v in options.items() if v is not None}
    refused = [k for k in given if k not in cls.options and k not in SETTINGS]
    if refused:
        raise GancheckError(_inapplicable(refused[0], cls, spec))
    return cls(spec, **{k: v for k, v in given.items() if k in cls.options})


def claim(spec: str, options: dict | None = None) -> type[Source]:
    """The source class that reads ``spec``: the first built-in rule that matches, else the one
    third-party source that accepts it; a one-line GancheckError when none or several do."""
    options = options or {}
    for rule in CLAIMS:
        if rule.matches(spec, options):
            return SOURCES.in_process(rule.kind)
    accepted, broken = [], []
    for name in _third_party():
        try:
            cls = SOURCES[name]
            if cls.accepts(spec):
                accepted.append(name)
        except GancheckError as exc:
            broken.append(exc)
        except Exception as exc:  # the plug-in's own accepts() failing
            broken.append(GancheckError(f"the generator source {name!r} ({SOURCES.origin(name)}) failed to decide on {spec} "
                                        f"({type(exc).__name__}: {exc}); fix or uninstall that plug-in"))
    if len(accepted) > 1:
        a, b = accepted[:2]
        raise GancheckError(f"two generator sources accept {spec}: {a!r} ({SOURCES.origin(a)}) and {b!r} ({SOURCES.origin(b)}); "
                            "uninstall one of them")
    if accepted:
        return SOURCES[accepted[0]]
    if broken:
        raise broken[0]
    if CALLABLE_SPEC.match(spec):
        return SOURCES.in_process("callable")  # which says what cannot be imported
    raise GancheckError(_unclaimed(spec))


def _third_party() -> list[str]:
    """Sources not in the table: declared by entry points (one that takes a built-in's name is
    refused when loaded) or registered in this process by other code."""
    return [k for k in SOURCES.names() if k not in KINDS or k in SOURCES.declared()]


def _unclaimed(spec: str) -> str:
    formats = ", ".join(FORMATS)
    plugins = [k for k in SOURCES.names() if k not in KINDS]
    if plugins:
        formats += f", and through plug-ins: {', '.join(plugins)}"
    path = Path(spec)
    if path.is_file():
        also = ", nor a format a plug-in reads" if plugins else ""
        what = what_file(path)
        it = f" (it is {what})" if what else ""
        return f"{spec} is neither an ONNX file, a PyTorch 2 file nor a TorchScript file{also}{it}; formats read: {formats}"
    if path.exists():
        return f"{spec} is neither a file nor a folder; formats read: {formats}"
    return f"generator not found: {spec} (formats read: {formats})"


def _what(cls: type[Source]) -> str:
    return KINDS[cls.kind][0] if cls.kind in KINDS else f"the {cls.kind} source"


def _inapplicable(option: str, cls: type[Source], spec: str) -> str:
    takers = frozenset(k for k in builtin_kinds() if option in SOURCES.in_process(k).options)
    named = next((words for kinds, words in GROUPS if kinds == takers), None)
    if named is None and takers:
        plural = [KINDS[k][1] for k in builtin_kinds() if k in takers]
        named = ", ".join(plural[:-1]) + " and " + plural[-1] if len(plural) > 1 else plural[0]
    if named is None:
        takes = ", ".join(flag(k) for k in cls.options if k not in SETTINGS) or "none"
        return f"{flag(option)} is not an option of {_what(cls)} ({spec}); its options are: {takes}"
    return f"{flag(option)} applies to {named}, not to {_what(cls)} ({spec}); drop it"
