"""An on-disk cache of finished local-training results, so that a resumed run does not retrain.

A run is deterministic, so resuming one means replaying its event simulation from the
start; this cache makes the replay cheap. Each entry holds what one client produced
*before* sealing (its float32 parameters, sample count and training loss), keyed by a
SHA-256 digest of everything the result depends on: the model name, the training
settings, the client's data (the data set's bytes and its shard's indices), the job's seed
and the base model's parameters. Sealing (the finiteness check and encryption) runs again
on load; decryption is exact, so the outputs match those of an uninterrupted run.

Entries are authenticated: each ends with an HMAC-SHA256 tag under a per-run secret key
(`hmac.key`, 32 random bytes, created with permissions 0600 in a 0700 folder). An entry
whose tag, size or header does not match (written by another run, edited, truncated) is
rejected with a warning, deleted and its job retrained: it is never used. What the cache
exposes is said in docs/reliability.md: the plaintext parameters of every finished job,
readable by the run's owner, until the run finishes (or fails before any job finished).

An entry is one raw file, written through a temporary file and a rename (a run killed at
any moment leaves only whole entries): a 72-byte header (magic, job key, sample count,
loss, parameter count), the parameters as little-endian float32, and the 32-byte tag.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import stat
import struct
import tempfile
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fl.training import LocalResult, TrainConfig

__all__ = ["ENTRY_OVERHEAD", "KEY_NAME", "ResultCache"]

_MAGIC = b"PPAFLRC\x02"
_HEADER = struct.Struct("<8s40sqdq")  # magic, job key (hex), num_samples, train_loss, num_params
_TAG_BYTES = 32
ENTRY_OVERHEAD = _HEADER.size + _TAG_BYTES  # bytes of an entry beyond its 4 bytes per parameter
KEY_NAME = "hmac.key"
_SECRET_BYTES = 32
_TEMP_PREFIX = ".tmp-"
_SUFFIX = ".bin"
log = logging.getLogger("ppafl.cache")


def _digest_tensor(h: Any, t: torch.Tensor) -> None:
    h.update(str((tuple(t.shape), str(t.dtype))).encode())
    h.update(t.contiguous().numpy().data)  # hashed in place: no copy of the data set


def _secret(directory: Path) -> bytes:
    """The run's cache key: created (0600) on first use; replaced if it is not a private key file."""
    path = directory / KEY_NAME
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        st = os.lstat(path)
        private = stat.S_ISREG(st.st_mode) and not st.st_mode & 0o077 and st.st_uid == os.getuid()
        if private and st.st_size == _SECRET_BYTES:
            return path.read_bytes()
        log.warning(
            "the resume cache's key %s is %s; it is replaced, so the jobs cached under it are retrained",
            path, "readable by others or not a file of this user" if not private else "damaged",
        )
        path.unlink()
        return _secret(directory)
    secret = secrets.token_bytes(_SECRET_BYTES)
    with os.fdopen(fd, "wb") as f:
        f.write(secret)
    return secret


class ResultCache:
    """Training results of one run, one authenticated file per finished job, in `directory`."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.directory.stat().st_mode & 0o077:
            self.directory.chmod(0o700)  # only the run's owner may read the clients' parameters
        self.remove_temporaries()  # left by a kill during a write
        self._secret = _secret(self.directory)
        self.hits = 0
        self.misses = 0
        self.rejected = 0  # entries that failed authentication (deleted, retrained)
        self.write_error: str | None = None  # why storing stopped (e.g. a full disk), if it did
        self._data: tuple[int, int, str] | None = None  # (id(x), id(y), digest) of the data set
        self._bases: dict[int, tuple[weakref.ref[np.ndarray], bytes]] = {}  # base model digests by array

    def __getstate__(self) -> dict[str, Any]:
        """Sent to worker processes without the per-process memos (weak references do not pickle)."""
        return {**self.__dict__, "_data": None, "_bases": {}}

    def __len__(self) -> int:
        return sum(1 for _ in self.directory.glob(f"*{_SUFFIX}"))

    @staticmethod
    def entry_nbytes(num_params: int) -> int:
        """Bytes on disk of one entry of a model with `num_params` parameters."""
        return ENTRY_OVERHEAD + 4 * num_params

    def data_digest(self, x: torch.Tensor, y: torch.Tensor) -> str:
        """Digest of a training set (computed once per data set and cache)."""
        if self._data is None or self._data[:2] != (id(x), id(y)):
            h = hashlib.sha256()
            _digest_tensor(h, x)
            _digest_tensor(h, y)
            self._data = (id(x), id(y), h.hexdigest())
        return self._data[2]

    def _base_digest(self, base: np.ndarray) -> bytes:
        """SHA-256 of a base model's float32 bytes, once per array object (the jobs of a round share one)."""
        known = self._bases.get(id(base))
        if known is not None and known[0]() is base:
            return known[1]
        digest = hashlib.sha256(np.ascontiguousarray(base, dtype=np.float32).data).digest()
        try:
            ref = weakref.ref(base)
        except TypeError:
            return digest
        for k in [k for k, (r, _) in self._bases.items() if r() is None]:
            del self._bases[k]
        self._bases[id(base)] = (ref, digest)
        return digest

    def key(
        self,
        *,
        model: str,
        train: TrainConfig,
        data_digest: str,
        shard: np.ndarray,
        seed: int,
        base_params: np.ndarray,
    ) -> str:
        """The entry name of one training job: a digest of everything its result depends on."""
        h = hashlib.sha256()
        settings = (_MAGIC, model, train.epochs, train.batch_size, repr(train.lr), repr(train.prox_mu), seed)
        h.update(repr(settings).encode())
        h.update(data_digest.encode())
        h.update(np.ascontiguousarray(shard, dtype=np.int64).data)
        h.update(self._base_digest(base_params))
        return h.hexdigest()[:40]

    def _reject(self, path: Path, why: str) -> None:
        """Count, delete and (the first time) report an entry that must not be used."""
        self.rejected += 1
        path.unlink(missing_ok=True)
        if self.rejected == 1:
            log.warning(
                "resume cache: %s %s, so it is not used: the job is trained again (entries of another run, "
                "or changed on disk, are never used; later rejections are counted in the manifest)",
                path.name, why,
            )

    def get(self, key: str, num_params: int) -> LocalResult | None:
        """The stored result for `key`, or None: never stored, or rejected (then deleted, with a warning)."""
        result = self._read(self.directory / f"{key}{_SUFFIX}", key, num_params)
        if result is None:
            self.misses += 1
        else:
            self.hits += 1
        return result

    def _read(self, path: Path, key: str, num_params: int) -> LocalResult | None:
        size = self.entry_nbytes(num_params)
        try:
            with open(path, "rb") as f:
                found = os.fstat(f.fileno()).st_size
                buf = bytearray(size)
                if found == size:
                    f.readinto(buf)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._reject(path, f"could not be read ({exc.strerror})")
            return None
        if found != size:
            self._reject(path, f"holds {found} bytes where a {num_params}-parameter entry has {size}")
            return None
        body = memoryview(buf)[:-_TAG_BYTES]
        if not hmac.compare_digest(hmac.digest(self._secret, body, "sha256"), bytes(buf[-_TAG_BYTES:])):
            self._reject(path, "failed its authentication check")
            return None
        magic, stored_key, num_samples, loss, n = _HEADER.unpack_from(buf)
        if magic != _MAGIC or stored_key != key.encode() or n != num_params:
            self._reject(path, "is authentic but belongs to another job")
            return None
        params = np.frombuffer(buf, dtype="<f4", count=n, offset=_HEADER.size).astype(np.float32, copy=False)
        return LocalResult(params=params, num_samples=int(num_samples), train_loss=float(loss))

    def remove_temporaries(self) -> None:
        """Delete temporary files of writes that never finished (an interrupt between creating and renaming)."""
        for stale in self.directory.glob(f"{_TEMP_PREFIX}*"):
            stale.unlink(missing_ok=True)

    def put(self, key: str, result: LocalResult) -> None:
        """Store one result atomically (a temporary file renamed into place), authenticated.

        A write that fails (a full disk, a quota) stops storing for the rest of the run, with one
        warning: the run goes on, and only resuming it after an interruption retrains more jobs.
        """
        if self.write_error is not None:
            return
        params = np.ascontiguousarray(result.params, dtype="<f4")
        header = _HEADER.pack(_MAGIC, key.encode(), int(result.num_samples), float(result.train_loss), params.size)
        mac = hmac.new(self._secret, header, "sha256")
        mac.update(params.data.cast("B"))
        try:
            _write_entry(self.directory / f"{key}{_SUFFIX}", (header, params.data.cast("B"), mac.digest()))
        except OSError as exc:
            self.write_error = f"{type(exc).__name__}: {exc}"
            log.warning(
                "the resume cache in %s stopped storing results (%s); the run goes on, but if it is "
                "interrupted, resuming it retrains the jobs not stored", self.directory, self.write_error,
            )


def _write_entry(path: Path, parts: tuple[bytes | memoryview, ...]) -> None:
    """Write `parts` to `path` through a temporary file (mode 0600) renamed into place."""
    fd, tmp = tempfile.mkstemp(prefix=_TEMP_PREFIX, suffix=_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            for part in parts:
                f.write(part)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
