"""An on-disk cache of finished local-training results, so that a resumed run does not retrain.

A run is deterministic, so resuming one means replaying its event simulation from the
start; this cache makes the replay cheap. Each entry holds what one client produced
*before* sealing (its float32 parameters, sample count and training loss), keyed by a
digest of everything the result depends on: the model name, the training settings, the
client's data (the data set's bytes and its shard's indices), the job's seed and the
base model's parameters. Sealing (the finiteness check and encryption) runs again on
load; decryption is exact, so the outputs match those of an uninterrupted run.

Entries are `.npz` files (no pickle), written through a temporary file and a rename:
a run killed at any moment leaves only whole entries. An unreadable entry is a miss.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from fl.training import LocalResult, TrainConfig

__all__ = ["ResultCache"]

_FORMAT = 1
_TEMP_PREFIX = ".tmp-"


def _digest_tensor(h: hashlib.blake2b, t: torch.Tensor) -> None:
    h.update(str((tuple(t.shape), str(t.dtype))).encode())
    h.update(t.contiguous().numpy())  # hashed in place: no copy of the data set


class ResultCache:
    """Training results of one run, one file per finished job, in `directory`."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        for stale in self.directory.glob(f"{_TEMP_PREFIX}*"):  # left by a kill during a write
            stale.unlink(missing_ok=True)
        self.hits = 0
        self.misses = 0
        self.write_error: str | None = None  # why storing stopped (e.g. a full disk), if it did
        self._data: tuple[int, int, str] | None = None  # (id(x), id(y), digest) of the data set

    def __len__(self) -> int:
        return sum(1 for _ in self.directory.glob("*.npz"))

    def data_digest(self, x: torch.Tensor, y: torch.Tensor) -> str:
        """Digest of a training set (computed once per data set and cache)."""
        if self._data is None or self._data[:2] != (id(x), id(y)):
            h = hashlib.blake2b(digest_size=16)
            _digest_tensor(h, x)
            _digest_tensor(h, y)
            self._data = (id(x), id(y), h.hexdigest())
        return self._data[2]

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
        h = hashlib.blake2b(digest_size=20)
        settings = (_FORMAT, model, train.epochs, train.batch_size, repr(train.lr), repr(train.prox_mu), seed)
        h.update(repr(settings).encode())
        h.update(data_digest.encode())
        h.update(np.ascontiguousarray(shard, dtype=np.int64))
        h.update(np.ascontiguousarray(base_params, dtype=np.float32))
        return h.hexdigest()

    def get(self, key: str, num_params: int) -> LocalResult | None:
        """The stored result for `key`, or None (never stored, or unreadable: then it is removed)."""
        path = self.directory / f"{key}.npz"
        try:
            with np.load(path, allow_pickle=False) as z:
                params, num_samples, loss = z["params"], int(z["num_samples"]), float(z["train_loss"])
                stored_key = str(z["key"])
        except FileNotFoundError:
            self.misses += 1
            return None
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            path.unlink(missing_ok=True)
            self.misses += 1
            return None
        if stored_key != key or params.dtype != np.float32 or params.shape != (num_params,):
            path.unlink(missing_ok=True)
            self.misses += 1
            return None
        self.hits += 1
        return LocalResult(params=params, num_samples=num_samples, train_loss=loss)

    def put(self, key: str, result: LocalResult) -> None:
        """Store one result atomically (a temporary file renamed into place).

        A write that fails (a full disk, a quota) stops storing for the rest of the run, with one
        warning: the run goes on, and only resuming it after an interruption retrains more jobs.
        """
        if self.write_error is not None:
            return
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(prefix=_TEMP_PREFIX, suffix=".npz", dir=self.directory)
            with os.fdopen(fd, "wb") as f:
                np.savez(
                    f,
                    key=np.array(key),
                    params=np.asarray(result.params, dtype=np.float32),
                    num_samples=np.int64(result.num_samples),
                    train_loss=np.float64(result.train_loss),
                )
            os.replace(tmp, self.directory / f"{key}.npz")
        except OSError as exc:
            self.write_error = f"{type(exc).__name__}: {exc}"
            warnings.warn(
                f"the training-result cache in {self.directory} stopped storing results ({self.write_error}); "
                "the run goes on, but if it is interrupted, resuming it retrains the jobs not stored",
                RuntimeWarning,
                stacklevel=2,
            )
        finally:
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)
