"""Small helpers shared by test modules (tests/ is on pytest's pythonpath)."""

import struct
import zlib
from pathlib import Path

import numpy as np
import torch


def n_params(module: torch.nn.Module) -> int:
    """The number of scalar parameters of ``module``."""
    return sum(p.numel() for p in module.parameters())


def _png(width: int, height: int, depth: int, rows: bytes) -> bytes:
    """A grey PNG: signature, IHDR, one IDAT holding ``rows`` (filter bytes included), IEND."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, depth, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def png_size_bomb(path: Path, width: int, height: int) -> None:
    """A PNG of a few bytes whose header declares ``width x height`` pixels."""
    path.write_bytes(_png(width, height, 8, b"\x00" * 1000))


def png16(path: Path, grey: np.ndarray) -> None:
    """A 16-bit grey PNG of ``grey`` (uint16, (H, W)); Pillow opens it as mode ``I;16``."""
    h, w = grey.shape
    path.write_bytes(
        _png(w, h, 16, b"".join(b"\x00" + row.astype(">u2").tobytes() for row in grey))
    )
