"""Small helpers shared by test modules (tests/ is on pytest's pythonpath)."""

import hashlib
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


def small_mnist(
    folder: Path, n_train: int = 12, n_test: int = 6, gzipped: tuple[str, ...] = ()
) -> dict[str, bytes]:
    """Write the four MNIST IDX files into ``folder`` with few random digits (labels cycle
    through 0..9), those named in ``gzipped`` as ``.gz``; return each file's decompressed
    content by its plain name."""
    from mistnet.data.digits import write_idx

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.arange(n_test) % 10,
    }
    content = {}
    for stem, array in arrays.items():
        write_idx(folder / stem, array)
        content[stem] = (folder / stem).read_bytes()
        if stem in gzipped:
            (folder / stem).unlink()
            write_idx(folder / f"{stem}.gz", array)
    return content


def md5s(content: dict[str, bytes]) -> dict[str, str]:
    """The MD5 of each file's content (to stand in for the canonical MNIST table)."""
    return {stem: hashlib.md5(raw).hexdigest() for stem, raw in content.items()}


def fill_small_mnist_cache(monkeypatch, folder: Path, n_train: int = 60, n_test: int = 20) -> None:
    """Put a small MNIST (every class in every split) into the data cache, as
    ``mist data download mnist --from`` would, its digests standing in for the canonical ones
    (``MNIST_MD5``) for the rest of the test."""
    from mistnet.data import mnist

    md5 = md5s(small_mnist(folder, n_train, n_test))
    monkeypatch.setattr(mnist, "MNIST_MD5", md5)
    mnist.install_mnist(folder, md5=md5)
