"""One writer per run directory: an exclusive OS lock (``filelock``, flock underneath) on a sibling
file ``.NAME.lock``, beside a note of the holder's pid and start time.

The kernel drops the lock when its process dies, however it dies, so a lock left by a killed run is
never an obstacle: the next process simply takes it (its note is overwritten). The lock file sits
beside the run directory, not in it, because the directory itself is replaced when a run finishes.

A clean release removes the lock file (filelock itself leaves it, so that waiters share one inode).
That is safe because the file is unlinked while the lock is still held and every taker checks,
once it holds the lock, that the path still names the inode it locked: a process that opened the
file just before it was removed, and locked that orphan after the release, sees the mismatch and
tries again on the path's current file, so two writers can never both hold the run.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path

from filelock import FileLock, Timeout

from gancheck.errors import GancheckError


def lock_path(out: Path) -> Path:
    out = Path(out).absolute()
    return out.parent / f".{out.name}.lock"


class RunLock:
    """``with RunLock(out):`` holds the run directory ``out`` for this process, or refuses at once."""

    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.path = lock_path(self.out)
        self.note = self.path.with_name(self.path.name + ".json")
        self.lock = FileLock(str(self.path), timeout=0, thread_local=False)

    def __enter__(self) -> "RunLock":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._acquire()
        except Timeout:
            raise GancheckError(f"{self.out} is in use by another gancheck process ({self._holder()}); wait for it to "
                                "finish or stop it, or choose another --out") from None
        except OSError as exc:
            raise GancheckError(f"cannot lock {self.out} ({exc.strerror or exc}); choose a writable --out") from None
        started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        try:
            self.note.write_text(json.dumps({"pid": os.getpid(), "started": started}))
        except OSError:
            pass  # the note only helps the message of a refused second process
        return self

    def _acquire(self, tries: int = 5) -> None:
        """Take the lock on the file the path names now (see the module's note on removal)."""
        for _ in range(tries):
            self.lock.acquire()
            if self._holds_path():
                return
            self.lock.release()  # an orphan a finishing holder had just removed: take the new file
        raise Timeout(str(self.path))

    def _holds_path(self) -> bool:
        fd = getattr(getattr(self.lock, "_context", None), "lock_file_fd", None)
        if fd is None:  # a filelock without the descriptor at hand: the file is then never removed
            return True
        try:
            return os.path.samestat(os.stat(self.path), os.fstat(fd))
        except FileNotFoundError:
            return False

    def __exit__(self, *exc) -> None:
        self.note.unlink(missing_ok=True)
        if getattr(getattr(self.lock, "_context", None), "lock_file_fd", None) is not None:
            self.path.unlink(missing_ok=True)  # still held: a taker that opened it now sees the mismatch
        self.lock.release()

    def _holder(self) -> str:
        try:
            note = json.loads(self.note.read_text())
            return f"pid {note['pid']}, started {note['started']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "pid unknown"
