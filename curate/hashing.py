"""The sha256 of files on disk: ingest provenance, emit manifests and the GGUF export cache use it."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def sha256_of(path: str | os.PathLike, *, salt: bytes = b"") -> str:
    """Hex sha256 of a file's bytes, or of every file under a folder in sorted path order; `salt` first."""
    if not os.path.exists(path):       # rglob would find nothing, and the hash would be of nothing
        raise FileNotFoundError(f"no such file or folder: {path}")
    files = [path] if os.path.isfile(path) else sorted(str(p) for p in Path(path).rglob("*") if p.is_file())
    digest = hashlib.sha256(salt)
    buffer = bytearray(1 << 20)        # one buffer read into, not a new bytes object per chunk
    view = memoryview(buffer)
    for file in files:
        with open(file, "rb", buffering=0) as handle:
            while size := handle.readinto(buffer):
                digest.update(view[:size])
    return digest.hexdigest()
