"""What a PyTorch file is, from its zip entries alone (nothing is loaded, torch is not imported):
a PyTorch 2 archive (a torch.export program or an AOTInductor package), TorchScript, a pickle."""

from __future__ import annotations

import zipfile
from pathlib import Path

#: The PyTorch formats read, as errors about a PyTorch file name them.
READ = ("gancheck reads torch.export programs (torch.export.save) and AOTInductor packages "
        "(torch._inductor.aoti_compile_and_package) as .pt2, TorchScript (torch.jit.save) as .pt")


def zip_names(path: str | Path) -> list[str]:
    """The entries of the zip archive at ``path``; empty when it is none (or cannot be read)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return []


def _base(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def pt2_kind(path: str | Path) -> str | None:
    """``"aoti"`` or ``"program"`` for a PyTorch 2 archive at ``path``, else None."""
    names = zip_names(path)
    if not any(_base(n) == "archive_format" for n in names):
        return None
    if any("/data/aotinductor/" in n for n in names):
        return "aoti"
    return "program" if any("/models/" in n and n.endswith(".json") for n in names) else None


def what_file(path: str | Path) -> str | None:
    """What a zip file that is no PyTorch 2 program or package is, in a few words; None for a file
    that is no zip archive (an ONNX file, a pickle) or is empty."""
    names = zip_names(path)
    if not names:
        return None
    if any(_base(n) == "archive_format" for n in names):
        return "a PyTorch 2 archive that holds neither a program nor an AOTInductor model"
    if any("/code/" in n for n in names):
        return "a TorchScript archive (torch.jit.save)"
    if any(_base(n) == "data.pkl" for n in names):
        return "a torch.save pickle (weights or a pickled module, not a program)"
    return "a zip archive of no PyTorch format"
