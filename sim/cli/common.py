"""What every command line of ppafl shares: exit statuses, the console logger, Ctrl-C and SIGTERM, the guard that
keeps tracebacks from users, and argument types."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = [
    "EXECUTOR_NAMES",
    "EXIT_CODES",
    "EXIT_ERROR",
    "EXIT_INTERNAL",
    "EXIT_NO_MODEL",
    "EXIT_OK",
    "RUN_HINT",
    "Terminated",
    "console",
    "exit_code",
    "fraction",
    "guarded",
    "int_in",
    "out_dir",
    "positive_float",
    "seed",
    "sigterm_as_interrupt",
]

EXIT_OK, EXIT_INTERNAL, EXIT_ERROR, EXIT_NO_MODEL = 0, 1, 2, 3
EXECUTOR_NAMES = ("sequential", "batched", "process", "ray")  # fl.executors.EXECUTORS (torch-free here)
RUN_HINT = ("Point data.root at the folder that holds it (--set data.root=PATH), set data.download: true to fetch "
            "it, or run on the embedded data.dataset mnist5k")


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C."""


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    def _raise(_signum: int, _frame: object) -> None:
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, _raise)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def exit_code(exc: KeyboardInterrupt) -> int:
    """The shell's code for a run stopped by SIGTERM (143) or Ctrl-C / SIGINT (130)."""
    return 128 + int(signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)


def console(prog: str) -> None:
    """Show the `ppafl` logger's messages (resuming, cache size, warnings) on stderr as `PROG: message`.

    They show with --quiet too, which only hides the progress bar.
    """
    logger = logging.getLogger("ppafl")
    for old in [h for h in logger.handlers if getattr(h, "ppafl_console", False)]:
        logger.removeHandler(old)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{prog}: %(message)s"))
    handler.ppafl_console = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def int_in(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range: use {low:,} to {high:,}")
        return value

    return parse


def out_dir(text: str) -> str:
    """An --out value: a non-empty path (an empty one would write into the working directory)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty: name the output directory")
    if "\0" in text:
        raise argparse.ArgumentTypeError("holds a NUL character")
    return text


seed = int_in(0, 2**32 - 1)
"""A --seed value: an integer in the scenario's range (32 bits)."""


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number > 0")
    return value


def fraction(text: str) -> float:
    """An argparse type: a number in (0, 1]."""
    value = positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be in (0, 1]")
    return value


EXIT_CODES = """exit status: 0 finished; 2 bad input or a refused run (the message says why and how to fix it);
3 finished without making a global version (nothing was learned: see the warnings); 130 / 143 stopped by
Ctrl-C / SIGTERM (run the same command again to resume); 1 an internal error (please report it)."""


def guarded(prog: str, body: Callable[[], int], data_hint: str = RUN_HINT) -> int:
    """Run a command's `body` so that no traceback reaches the user.

    A known problem (bad scenario, missing data, refused resources, an unusable output
    folder, an optional package such as Ray not installed) is one line and exit 2; Ctrl-C before the run took over is exit 130; anything
    else is an internal error, one line and exit 1 (PPAFL_DEBUG=1 shows the traceback).
    `data_hint` replaces the data loader's advice with this command line's flags.
    """
    from crypto import CryptoError
    from fl.errors import DataError
    from sim.errors import PpaflError

    try:
        return body()
    except (PpaflError, DataError, CryptoError, OSError, ValueError, ImportError) as exc:  # ImportError: an extra
        message = str(exc)
        if isinstance(exc, DataError):
            from fl.data import FALLBACK_HINT

            message = message.replace(FALLBACK_HINT, data_hint.rstrip(".") + ".")
        print(f"{prog}: error: {message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt as exc:
        print(f"{prog}: {'terminated' if isinstance(exc, Terminated) else 'interrupted'}", file=sys.stderr)
        return exit_code(exc)
    except MemoryError:
        print(f"{prog}: error: ran out of memory; run a smaller scenario (fewer devices, a smaller model, "
              "encryption.mode modeled) or on a larger machine", file=sys.stderr)
        return EXIT_INTERNAL
    except Exception as exc:
        if os.environ.get("PPAFL_DEBUG"):
            raise
        print(f"{prog}: internal error: {type(exc).__name__}: {exc}. Please report it; set PPAFL_DEBUG=1 to see "
              "the traceback", file=sys.stderr)
        return EXIT_INTERNAL


