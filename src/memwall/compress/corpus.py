"""Text that ships with every Python: the standard library's own `.py` sources, as bytes.

Why: accuracy needs real text, and downloading a data set is not allowed to be a precondition.
Files are taken in sorted relative-path order (a fixed list for a given Python), every
`holdout_every`-th file goes to the held-out split, and each split is capped in bytes. Tokens
are raw bytes (vocabulary 256), so there is no tokenizer to download or train either.
"""

from __future__ import annotations

import hashlib
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import torch

from memwall.errors import MemwallError

SEPARATOR = b"\n\x00\n"  # between files: a byte that never appears in source text


@dataclass(frozen=True)
class Corpus:
    train: torch.Tensor  # uint8 bytes
    heldout: torch.Tensor
    files: int
    digest: str  # sha256 of both splits: the cache key of a model trained on them

    @property
    def vocab_size(self) -> int:
        return 256


def stdlib_files(root: Path | None = None) -> list[Path]:
    """Every `.py` file under the standard library, sorted; site-packages left out."""
    base = Path(root or sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in base.rglob("*.py") if "site-packages" not in p.parts and p.is_file())
    if not files:
        raise MemwallError(f"no Python sources found under {base} to train on")
    return files


def _take(files: list[Path], cap: int) -> bytes:
    out, n = [], 0
    for p in files:
        try:
            b = p.read_bytes()
        except OSError:
            continue
        out.append(b[: cap - n])
        n += len(out[-1]) + len(SEPARATOR)
        if n >= cap:
            break
        out.append(SEPARATOR)
    return b"".join(out)[:cap]


def load_corpus(train_bytes: int, heldout_bytes: int, holdout_every: int = 10) -> Corpus:
    """The two splits, capped; deterministic for a given Python installation."""
    files = stdlib_files()
    held = files[holdout_every - 1 :: holdout_every]
    held_set = set(held)
    train = [p for p in files if p not in held_set]
    tb, hb = _take(train, train_bytes), _take(held, heldout_bytes)
    digest = hashlib.sha256(tb + b"|" + hb).hexdigest()
    as_tensor = lambda b: torch.frombuffer(bytearray(b), dtype=torch.uint8)  # noqa: E731
    return Corpus(as_tensor(tb), as_tensor(hb), len(files), digest)
