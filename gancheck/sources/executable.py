"""A generator shipped as a program: ``cmd:./generate --batch`` is started once and spoken to over
its standard input and output.

Framing (docs/sources.md): every message, both ways, is an 8-byte little-endian unsigned length
followed by that many bytes of a NumPy ``.npy`` file (no pickles). gancheck writes a latent batch,
float32 ``(N, *latent_shape)``; the program answers with the image batch ``(N, C, H, W)`` or
``(N, H, W, C)``. A message of length 0 asks the program to exit. Its standard error is kept and
its last lines are shown if it fails.
"""

from __future__ import annotations

import atexit
import io
import os
import select
import shlex
import shutil
import struct
import subprocess
import threading
import time

import numpy as np

from gancheck.errors import GancheckError
from gancheck.files import file_sha256
from gancheck.sources.base import register
from gancheck.sources.cache import CachedSource
from gancheck.sources.latents import LatentPrior

PREFIX = "cmd:"
_LENGTH = struct.Struct("<Q")
MAX_MESSAGE = 1 << 34  # 16 GiB: anything longer is garbage, not an image batch


def write_message(stream, array: np.ndarray) -> None:
    """One framed ``.npy`` message (for programs written in Python, and for the tests)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    stream.write(_LENGTH.pack(buf.tell()) + buf.getvalue())
    stream.flush()


def read_message(stream) -> np.ndarray | None:
    """The next framed ``.npy`` message from ``stream``; None at the end (length 0 or EOF)."""
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size or _LENGTH.unpack(head)[0] == 0:
        return None
    return np.load(io.BytesIO(stream.read(_LENGTH.unpack(head)[0])), allow_pickle=False)


@register("cmd")
class ProgramGenerator(CachedSource):
    """``cmd:PROGRAM ARGS``: the program runs once for the whole audit (in the current directory);
    each batch is one request and one answer, within ``timeout`` seconds."""

    options = ("layout", "value_range", "batch_size", "prior", "truncation", "latent_shape", "inputs", "timeout")

    def __init__(self, spec: str, prior: str = "normal", truncation: float = 2.0, latent_shape=None, inputs: dict | None = None,
                 timeout: float = 60.0, **kw):
        super().__init__(**kw)
        self.spec = spec
        self.argv = shlex.split(spec[len(PREFIX):])
        if not self.argv:
            raise GancheckError("cmd: names no program; write e.g. 'cmd:./generate --batch'")
        exe = shutil.which(self.argv[0]) or (self.argv[0] if os.path.isfile(self.argv[0]) else None)
        if exe is None or not os.access(exe, os.X_OK):
            raise GancheckError(f"generator program {self.argv[0]!r} not found or not executable; give a path such as ./generate (chmod +x) or a command on PATH")
        if not latent_shape:
            raise GancheckError(f"{spec}: give the program's latent shape with --latent-shape (e.g. 512 or 100,1,1)")
        if inputs:
            raise GancheckError(f"{spec}: a program takes latents only; --input and --sweep need an ONNX file or an inference server")
        if timeout < 0:
            raise GancheckError(f"--timeout must not be negative (0: no limit), got {timeout}")
        self.exe = os.path.abspath(exe)
        self.latent_prior = LatentPrior(tuple(int(s) for s in latent_shape), prior, truncation)
        self.timeout = float(timeout)
        self.proc = None
        self.lock = threading.Lock()
        self.stderr_tail = b""

    def _start(self) -> subprocess.Popen:
        if self.proc is None or self.proc.poll() is not None:
            try:
                self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
            except OSError as exc:
                raise GancheckError(f"cannot start generator program {self.argv[0]!r} ({exc.strerror or exc})") from None
            threading.Thread(target=self._drain_stderr, args=(self.proc,), daemon=True).start()
            atexit.register(self.close)
        return self.proc

    def _drain_stderr(self, proc) -> None:
        for line in iter(proc.stderr.readline, b""):
            self.stderr_tail = (self.stderr_tail + line)[-2000:]

    def generate(self, z: np.ndarray) -> np.ndarray:
        with self.lock:
            proc = self._start()
            try:
                write_message(proc.stdin, z.astype(np.float32, copy=False))
            except (BrokenPipeError, OSError):
                self._fail("stopped reading its input")
            out = self._answer(proc, len(z))
        if out.ndim < 3 or out.shape[0] != len(z) or not np.issubdtype(out.dtype, np.number):
            self._fail(f"answered {len(z)} latents with a {out.dtype} array of shape {list(out.shape)}; expected ({len(z)}, C, H, W) or ({len(z)}, H, W, C) images")
        return out

    def _answer(self, proc, n: int) -> np.ndarray:
        deadline = time.monotonic() + (self.timeout or float("inf"))
        head = self._read(proc, _LENGTH.size, deadline)
        length = _LENGTH.unpack(head)[0]
        if not 0 < length <= MAX_MESSAGE:
            self._fail(f"wrote a frame of length {length}, which is not a length-prefixed .npy message (see docs/sources.md)")
        body = self._read(proc, length, deadline)
        try:
            return np.load(io.BytesIO(body), allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            self._fail(f"wrote a frame that is not a .npy array ({exc})")

    def _read(self, proc, size: int, deadline: float) -> bytes:
        fd, parts, got = proc.stdout.fileno(), [], 0
        while got < size:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                self._fail(f"gave no answer within --timeout {self.timeout:g} s")
            chunk = os.read(fd, min(size - got, 1 << 20))
            if not chunk:
                try:
                    status = proc.wait(2)
                    time.sleep(0.05)  # let its last words on stderr arrive
                except subprocess.TimeoutExpired:
                    status = None
                self._fail("closed its output" if status is None else f"exited with status {status}")
            parts.append(chunk)
            got += len(chunk)
        return b"".join(parts)

    def _fail(self, problem: str):
        self.close(kill=True)
        tail = self.stderr_tail.decode("utf-8", "replace").strip().splitlines()
        said = f"; its last error output: {tail[-1][:200]}" if tail else ""
        raise GancheckError(f"generator program {self.spec[len(PREFIX):]!r} {problem}{said}; finished shards are kept: fix it and rerun with --resume")

    def close(self, kill: bool = False) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            if not kill:
                proc.stdin.write(_LENGTH.pack(0))
                proc.stdin.close()
                proc.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    def setting(self) -> dict:
        return {"kind": self.kind, "command": self.argv, "latent_prior": self.latent_prior.to_dict()}

    def describe(self) -> dict:
        return dict(self.setting(), output=self.format.to_dict(), sha256=file_sha256(self.exe))
