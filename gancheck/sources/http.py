"""Generators reached over HTTP: an inference server speaking the Open Inference Protocol (the
KServe v2 REST protocol of Triton, KServe, Seldon MLServer, ...), or an in-house JSON service
described by a request template (docs/sources.md).

Requests go out ``concurrency`` at a time, at most ``max_rps`` per second, each retried with
backoff on 5xx, 429, timeouts and dropped connections. A bearer token is read from the environment
variable named by ``token_env``: it is never an option value, so it never reaches the manifest.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import socket
import ssl
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from gancheck.dotted import dotted_get
from gancheck.errors import GancheckError
from gancheck.sources.base import register
from gancheck.sources.cache import CachedSource, cache_key
from gancheck.sources.conditions import RandomCondition, is_random
from gancheck.sources.latents import LatentPrior
from gancheck.sources.onnx_generator import fixed_input, parse_value

TOKEN_ENV = "GANCHECK_HTTP_TOKEN"
V2_DTYPES = {"FP32": np.float32, "FP64": np.float64, "FP16": np.float16, "INT64": np.int64, "INT32": np.int32,
             "INT16": np.int16, "INT8": np.int8, "UINT8": np.uint8, "UINT16": np.uint16, "BOOL": np.bool_}
_LATENT_NAMES = ("z", "latent", "latents", "noise", "input", "x")
_SENT = {"binary": "application/octet-stream", "json": "application/json"}


class Endpoint:
    """One HTTP(S) endpoint: kept-alive connections per thread, a shared rate limit, retries."""

    def __init__(self, url: str, timeout: float = 60.0, retries: int = 3, max_rps: float | None = None,
                 token_env: str = TOKEN_ENV, ca_file: str | None = None):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise GancheckError(f"{url} is not an http:// or https:// URL")
        if timeout < 0 or retries < 0 or (max_rps is not None and max_rps <= 0):
            raise GancheckError("--max-rps must be positive and --timeout and --retries not negative (--timeout 0: no limit)")
        self.url, self.parts, self.timeout, self.retries = url.rstrip("/"), parts, float(timeout), int(retries)
        self.interval = 1.0 / max_rps if max_rps else 0.0
        token = os.environ.get(token_env or TOKEN_ENV)
        self.auth = {"Authorization": f"Bearer {token}"} if token else {}
        self.token_env = token_env or TOKEN_ENV
        self.context = None
        if parts.scheme == "https":
            self.context = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
        self.local = threading.local()
        self.lock = threading.Lock()
        self.next_slot = 0.0

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            port = self.parts.port
            if self.context is not None:
                conn = http.client.HTTPSConnection(self.parts.hostname, port, timeout=self.timeout or None, context=self.context)
            else:
                conn = http.client.HTTPConnection(self.parts.hostname, port, timeout=self.timeout or None)
            self.local.conn = conn
        return conn

    def _wait_turn(self) -> None:
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            slot = max(now, self.next_slot)
            self.next_slot = slot + self.interval
        if slot > now:
            time.sleep(slot - now)

    def _once(self, method: str, path: str, body: bytes | None, headers: dict):
        self._wait_turn()
        conn = self._connection()
        try:
            conn.request(method, path, body=body, headers=dict(headers, **self.auth))
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        except BaseException:
            conn.close()
            self.local.conn = None
            raise

    def call(self, method: str, url: str, body: bytes | None = None, headers: dict | None = None, retries: int | None = None):
        """(status, headers, body) of one request, retried with backoff on 5xx, 429 and transport
        errors; 4xx answers come back to the caller."""
        parts = urlsplit(url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        problem = ""
        retries = self.retries if retries is None else retries
        for attempt in range(retries + 1):
            if attempt:
                time.sleep(min(0.2 * 2 ** (attempt - 1), 5.0))
            try:
                status, head, data = self._once(method, path, body, headers or {})
            except ssl.SSLError as exc:
                raise GancheckError(f"{self.url}: TLS failed ({exc.reason or exc}); give the server's CA certificate with --ca-file") from None
            except (TimeoutError, OSError, http.client.HTTPException) as exc:
                problem = self._transport_problem(exc)
                continue
            if status >= 500 or status == 429:
                problem = f"HTTP {status} ({_brief(data)})"
                continue
            return status, head, data
        raise GancheckError(f"{self.url}: {problem} after {retries + 1} {'try' if retries == 0 else 'tries'}; finished shards are kept: "
                            "fix the server and rerun with --resume")

    def _transport_problem(self, exc: BaseException) -> str:
        if isinstance(exc, TimeoutError) or "timed out" in str(exc):
            return f"no answer within --timeout {self.timeout:g} s"
        if isinstance(exc, ConnectionRefusedError):
            return "connection refused (is the server running on that host and port?)"
        if isinstance(exc, socket.gaierror):
            return f"cannot resolve the host name {self.parts.hostname!r} (check the URL)"
        return f"connection failed ({type(exc).__name__}: {exc})"

    def check(self, status: int, data: bytes, what: str) -> None:
        """One line for a 4xx answer to ``what``."""
        if status < 400:
            return
        if status in (401, 403):
            raise GancheckError(f"{self.url}: HTTP {status} to {what} ({_brief(data)}); put a valid bearer token in the "
                                f"environment variable {self.token_env} (named by --token-env)")
        if status == 404:
            raise GancheckError(f"{self.url}: HTTP 404 to {what}: the server does not know this model ({_brief(data)}); check the model name in the URL")
        raise GancheckError(f"{self.url}: HTTP {status} to {what} ({_brief(data)})")


def _brief(data: bytes) -> str:
    text = data.decode("utf-8", "replace").strip().replace("\n", " ")
    return (text[:160] + "...") if len(text) > 160 else (text or "empty body")


def _json(data: bytes, url: str, what: str):
    try:
        return json.loads(data)
    except ValueError:
        raise GancheckError(f"{url}: the answer to {what} is not JSON ({_brief(data)})") from None


def _check_rows(out: np.ndarray, n: int, url: str, expect: tuple | None = None, dtype=None) -> np.ndarray:
    """A response tensor must hold one image per requested sample (and the declared shape/datatype)."""
    if out.ndim < 3 or out.shape[0] != n:
        raise GancheckError(f"{url}: the response has shape {list(out.shape)} for {n} samples; expected ({n}, C, H, W) or ({n}, H, W, C) images")
    if expect and any(e >= 0 and e != s for e, s in zip(expect, out.shape[1:])):
        raise GancheckError(f"{url}: the response has shape {list(out.shape)}, not the model's declared [-1, {', '.join(map(str, expect))}]")
    if not (np.issubdtype(out.dtype, np.number)):
        raise GancheckError(f"{url}: the response holds {out.dtype} values, not image numbers")
    return out


def encode_v2(tensors: dict, outputs: list[str], binary: bool) -> tuple[bytes, dict]:
    """An Open Inference Protocol request body and its headers; ``binary`` uses the binary tensor
    extension (a JSON header, then the raw little-endian tensor bytes in input order)."""
    inputs, blobs = [], []
    for name, (array, datatype) in tensors.items():
        entry = {"name": name, "shape": list(array.shape), "datatype": datatype}
        if binary:
            blob = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = array.reshape(-1).tolist()
        inputs.append(entry)
    header = {"inputs": inputs, "outputs": [{"name": o, "parameters": {"binary_data": binary}} for o in outputs]}
    head = json.dumps(header, separators=(",", ":")).encode()
    if not binary:
        return head, {"Content-Type": _SENT["json"]}
    return head + b"".join(blobs), {"Content-Type": _SENT["binary"], "Inference-Header-Content-Length": str(len(head))}


def decode_v2(data: bytes, headers: dict, name: str, url: str) -> np.ndarray:
    """The output tensor ``name`` of an Open Inference Protocol response (JSON or binary extension)."""
    size = headers.get("inference-header-content-length")
    head = _json(data[: int(size)] if size else data, url, "an inference request")
    offset = int(size) if size else 0
    for out in head.get("outputs", []):
        dtype = V2_DTYPES.get(out.get("datatype"))
        nbytes = (out.get("parameters") or {}).get("binary_data_size")
        if out.get("name") == name:
            if dtype is None:
                raise GancheckError(f"{url}: output {name!r} has datatype {out.get('datatype')!r}; expected a numeric tensor such as FP32")
            shape = tuple(int(s) for s in out.get("shape", []))
            if nbytes is not None:
                array = np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<"), count=int(nbytes) // np.dtype(dtype).itemsize, offset=offset)
            else:
                array = np.asarray(out.get("data", []), dtype=dtype)
            if array.size != int(np.prod(shape)):
                raise GancheckError(f"{url}: output {name!r} declares shape {list(shape)} but holds {array.size} values")
            return array.astype(array.dtype.newbyteorder("="), copy=False).reshape(shape)
        offset += int(nbytes or 0)
    raise GancheckError(f"{url}: the response has no output {name!r} (outputs: {', '.join(o.get('name', '?') for o in head.get('outputs', []))})")


def _pick_latent(inputs: list[dict], given: dict, chosen: str | None, url: str) -> dict:
    by_name = {i["name"]: i for i in inputs}
    if chosen is not None:
        if chosen not in by_name:
            raise GancheckError(f"--latent-input {chosen!r} is not an input of {url}; its inputs are {', '.join(by_name)}")
        return by_name[chosen]
    free = [i for i in inputs if i["name"] not in given and i.get("datatype") in ("FP32", "FP64", "FP16")]
    named = [i for i in free if i["name"].lower() in _LATENT_NAMES]
    if named or free:
        return (named or free)[0]
    raise GancheckError(f"{url} declares no floating-point input for the latent (inputs: {', '.join(by_name)}); name it with --latent-input")


@register("oip")
class InferenceServerGenerator(CachedSource):
    """A model on an Open Inference Protocol server, ``http(s)://HOST:PORT/v2/models/NAME``: input
    names, shapes and datatypes come from the model's metadata; other inputs than the latent get
    fixed values from ``inputs`` (``{name: "value"}``)."""

    options = ("layout", "value_range", "batch_size", "prior", "truncation", "latent_input", "inputs", "concurrency",
               "max_rps", "timeout", "token_env", "ca_file", "http_retries", "binary")

    def __init__(self, url: str, prior: str = "normal", truncation: float = 2.0, latent_input: str | None = None,
                 inputs: dict | None = None, concurrency: int = 1, max_rps: float | None = None, timeout: float = 60.0,
                 token_env: str = TOKEN_ENV, ca_file: str | None = None, http_retries: int = 3, binary: str = "auto", **kw):
        super().__init__(**kw)
        if binary not in ("auto", "on", "off") or int(concurrency) < 1:
            raise GancheckError(f"binary must be auto, on or off and --concurrency at least 1 (got {binary!r}, {concurrency})")
        self.endpoint = Endpoint(url, timeout, http_retries, max_rps, token_env, ca_file)
        self.url, self.concurrency, self.binary = self.endpoint.url, int(concurrency), binary
        status, _, data = self.endpoint.call("GET", self.url)
        self.endpoint.check(status, data, "the metadata request")
        self.metadata = _json(data, self.url, "the metadata request")
        model_inputs = self.metadata.get("inputs") or []
        outputs = self.metadata.get("outputs") or []
        if not model_inputs or not outputs:
            raise GancheckError(f"{self.url}: the model's metadata lists no inputs or no outputs; the server must declare them (GET {self.url})")
        given = dict(inputs or {})
        names = {i["name"]: i for i in model_inputs}
        unknown, latent = sorted(set(given) - set(names)), _pick_latent(model_inputs, given, latent_input, self.url)
        missing = sorted(set(names) - set(given) - {latent["name"]})
        if unknown or missing:
            raise GancheckError(f"{self.url}: inputs {', '.join(unknown + missing)} are {'unknown' if unknown else 'not given'}; the model's inputs are "
                                f"{', '.join(names)}: give each one besides the latent with --input NAME=VALUE")
        shape = [int(s) for s in latent.get("shape", [])]
        if len(shape) < 2 or any(s < 1 for s in shape[1:]):
            raise GancheckError(f"{self.url}: latent input {latent['name']!r} has shape {shape}; it must be a batch (-1, d) with fixed sizes after the batch axis")
        self.latent_name, self.latent_type = latent["name"], latent["datatype"]
        self.latent_prior = LatentPrior(tuple(shape[1:]), prior, truncation)
        self.random = {n: (RandomCondition.parse(n, t), names[n]) for n, t in given.items() if is_random(t)}
        self.extra = {n: (parse_value(t, V2_DTYPES.get(names[n]["datatype"], np.float32)), names[n]) for n, t in given.items() if not is_random(t)}
        self.output = outputs[0]
        self.mode = {"off": "json", "on": "binary"}.get(binary)  # None: decided by the first request
        self.mode_lock = threading.Lock()

    def _tensors(self, z: np.ndarray, indices: np.ndarray | None = None) -> dict:
        tensors = {self.latent_name: (z.astype(V2_DTYPES[self.latent_type], copy=False), self.latent_type)}
        for name, (value, meta) in self.extra.items():
            tensors[name] = (fixed_input(name, value, [s if s >= 0 else None for s in meta["shape"]], len(z)), meta["datatype"])
        for name, (condition, meta) in self.random.items():  # drawn per sample from (seed, index)
            shape = [s if s >= 0 else None for s in meta["shape"]]
            tensors[name] = (condition.draw(self.seed, indices, V2_DTYPES[meta["datatype"]], shape), meta["datatype"])
        return tensors

    def _probe_binary(self, z: np.ndarray) -> None:
        """With ``binary="auto"``, one binary request decides: a server that refuses it (an error
        answer or a dropped connection) is spoken to in JSON."""
        first = None if self.current_indices is None else np.asarray(self.current_indices)[:1]
        body, headers = encode_v2(self._tensors(z[:1], first), [self.output["name"]], True)
        try:
            status, head, data = self.endpoint.call("POST", self.url + "/infer", body, headers, retries=0)
            works = status < 400 and len(decode_v2(data, head, self.output["name"], self.url)) == 1
        except GancheckError:
            works = False
        self.mode = "binary" if works else "json"

    def request(self, z: np.ndarray, indices: np.ndarray | None = None) -> np.ndarray:
        if self.mode is None:
            with self.mode_lock:
                if self.mode is None:
                    self._probe_binary(z)
        indices = self.current_indices if indices is None else indices
        body, headers = encode_v2(self._tensors(z, indices), [self.output["name"]], self.mode == "binary")
        status, head, data = self.endpoint.call("POST", self.url + "/infer", body, headers)
        self.endpoint.check(status, data, "an inference request")
        out = decode_v2(data, head, self.output["name"], self.url)
        return _check_rows(out, len(z), self.url, tuple(self.output.get("shape", [])[1:]))

    def generate(self, z: np.ndarray) -> np.ndarray:
        return self.request(z)

    def setting(self) -> dict:
        return {"kind": self.kind, "model": self.metadata.get("name"), "inputs": self.metadata.get("inputs"),
                "output": self.output, "latent_input": self.latent_name, "latent_prior": self.latent_prior.to_dict(),
                "fixed_inputs": {k: v.tolist() for k, (v, _) in self.extra.items()},
                "random_inputs": {k: c.to_dict() for k, (c, _) in self.random.items()}}

    def describe(self) -> dict:
        # The model's identity is its name and signature, not the host it is served from: a
        # restarted or moved server continues the same run.
        return dict(self.setting(), output_format=self.format.to_dict(), versions=self.metadata.get("versions"),
                    sha256=cache_key(dict(self.setting(), versions=self.metadata.get("versions"))))


def _lookup(doc, path: str, url: str):
    """``a.b[0].c`` in a JSON document."""
    try:
        return dotted_get(doc, path)
    except LookupError:
        raise GancheckError(f"{url}: the response has no {path!r} (the template's \"images\" path); check --request-template") from None


def _fill(template, values: dict):
    """The request body: every string equal to a placeholder replaced by its value."""
    if isinstance(template, dict):
        return {k: _fill(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [_fill(v, values) for v in template]
    return values.get(template, template) if isinstance(template, str) else template


def _uses(template, name: str) -> bool:
    return json.dumps(template).count(json.dumps(name)) > 0


def decode_png_list(items, url: str) -> np.ndarray:
    """(N, H, W, 3) uint8 from base64 PNG strings (a ``data:image/png;base64,`` prefix is allowed)."""
    from PIL import Image

    out = []
    for item in items if isinstance(items, list) else []:
        try:
            raw = base64.b64decode(str(item).split(",", 1)[-1], validate=False)
            with Image.open(io.BytesIO(raw)) as im:
                out.append(np.asarray(im.convert("RGB")))
        except Exception:
            raise GancheckError(f"{url}: an image in the response is not a base64 PNG; check \"image_encoding\" in --request-template") from None
    if not out:
        raise GancheckError(f"{url}: the response's images are not a list of base64 PNG strings")
    return np.stack(out)


def read_template(path: str | None, url: str) -> dict:
    if not path:
        raise GancheckError(f"{url} is not an inference server model URL (/v2/models/NAME); for a plain JSON service give "
                            "--request-template FILE saying where the latents go and the images come back (docs/sources.md)")
    try:
        template = json.loads(Path(path).read_text())
    except OSError as exc:
        raise GancheckError(f"cannot read --request-template {path} ({exc.strerror})") from None
    except ValueError as exc:
        raise GancheckError(f"--request-template {path} is not JSON ({exc})") from None
    body = template.get("body") if isinstance(template, dict) else None
    if body is None or "images" not in template or not (_uses(body, "$latents") or _uses(body, "$seeds")):
        raise GancheckError(f"--request-template {path} needs \"body\" (with \"$latents\" or \"$seeds\" in it) and \"images\" (where the images "
                            "are in the response); see docs/sources.md")
    if template.get("image_encoding", "array") not in ("array", "png_base64"):
        raise GancheckError(f"--request-template {path}: \"image_encoding\" must be \"array\" or \"png_base64\"")
    if _uses(body, "$latents") and not template.get("latent_shape"):
        raise GancheckError(f"--request-template {path}: give \"latent_shape\" (e.g. [128]) for a body with \"$latents\"")
    return template


@register("json")
class JsonServiceGenerator(CachedSource):
    """A plain JSON service, ``http(s)://...``, described by a request template (docs/sources.md).

    With ``$latents`` in the body it is a latent generator like any other. With ``$seeds`` instead it
    takes only seeds: sample index ``i`` is the service's seed ``seed_offset + i``, the anchors are
    indices ``0..A-1`` and the collection ``A..A+n-1`` (disjoint), and like a folder of images the
    run is a diagnosis only: there is no latent to calibrate."""

    options = ("layout", "value_range", "batch_size", "prior", "truncation", "request_template", "concurrency", "max_rps",
               "timeout", "token_env", "ca_file", "http_retries")

    def __init__(self, url: str, request_template: str | None = None, prior: str = "normal", truncation: float = 2.0,
                 concurrency: int = 1, max_rps: float | None = None, timeout: float = 60.0, token_env: str = TOKEN_ENV,
                 ca_file: str | None = None, http_retries: int = 3, **kw):
        super().__init__(**kw)
        self.template = read_template(request_template, url)
        self.endpoint = Endpoint(url, timeout, http_retries, max_rps, token_env, ca_file)
        self.url, self.concurrency = self.endpoint.url, max(1, int(concurrency))
        self.seeded = not _uses(self.template["body"], "$latents")
        self.seed_offset = int(self.template.get("seed_offset", 0))
        if not self.seeded:
            self.latent_prior = LatentPrior(tuple(int(s) for s in self.template["latent_shape"]), prior, truncation)

    def latents(self, indices: np.ndarray) -> np.ndarray:
        return self.seed_offset + np.asarray(indices, np.int64) if self.seeded else super().latents(indices)

    def anchor_indices(self, n: int) -> np.ndarray:
        return super().anchor_indices(n) if not self.seeded else np.arange(n, dtype=np.int64)

    def collection_indices(self, n: int, n_anchors: int = 0) -> np.ndarray:
        return super().collection_indices(n, n_anchors) if not self.seeded else n_anchors + np.arange(n, dtype=np.int64)

    def request(self, z: np.ndarray, indices: np.ndarray | None = None) -> np.ndarray:
        values = {"$batch": len(z), "$seeds" if self.seeded else "$latents": z.tolist()}
        body = json.dumps(_fill(self.template["body"], values), separators=(",", ":")).encode()
        headers = dict({"Content-Type": "application/json"}, **self.template.get("headers", {}))
        status, _, data = self.endpoint.call(self.template.get("method", "POST"), self.url, body, headers)
        self.endpoint.check(status, data, "a generation request")
        images = _lookup(_json(data, self.url, "a generation request"), self.template["images"], self.url)
        if self.template.get("image_encoding", "array") == "png_base64":
            out = decode_png_list(images, self.url)
        else:
            try:
                out = np.asarray(images, dtype=np.float32)
            except (ValueError, TypeError):
                raise GancheckError(f"{self.url}: the response's {self.template['images']!r} is not a numeric array of images") from None
        return _check_rows(out, len(z), self.url)

    def generate(self, z: np.ndarray) -> np.ndarray:
        return self.request(z)

    def prepare(self, seed: int) -> None:
        if self.seeded:  # no latents: the probe asks for the first anchors' seeds
            self.seed = int(seed)
            self.format = self.format.resolve(self.request(self.latents(np.arange(8))))
            return
        super().prepare(seed)

    def setting(self) -> dict:
        keep = {k: v for k, v in self.template.items() if k != "headers"}  # headers may carry keys
        d = {"kind": self.kind, "template": keep}
        if self.seeded:
            d["seeds"] = f"service seed = {self.seed_offset} + sample index; anchors are indices 0..A-1, the collection A..A+n-1"
        else:
            d["latent_prior"] = self.latent_prior.to_dict()
        return d

    def describe(self) -> dict:
        return dict(self.setting(), output=self.format.to_dict(), sha256=cache_key(self.setting()))
