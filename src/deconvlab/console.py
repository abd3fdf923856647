"""Process plumbing of the command line (:mod:`deconvlab.cli`): one-line errors and warnings, Ctrl-C, exit codes.

Every failure a user can cause prints ONE line, ``deconvlab: error: <what to do>``, on stderr and exits with status
2 (as argparse does for usage errors). Anything unexpected (a bug) is one line too, with status 70
(``EX_SOFTWARE``); Ctrl-C at any point exits 130, and SIGTERM (``kill``, a job scheduler) 143 after the same
clean-up, so neither leaves a half-written file behind. Output piped into a reader that stops early (``| head -1``)
ends quietly with 141, as coreutils' tools do. ``DECONVLAB_DEBUG=1`` shows the traceback behind an error.
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import math
import os
import select
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Callable, Iterator
from io import StringIO
from pathlib import Path
from typing import Any

from .checks import SEED_MAX
from .config import import_keras
from .errors import ArgumentError, DeconvlabError

PROG = "deconvlab"
EX_SOFTWARE = 70  # sysexits.h: an internal error (a bug), told apart from the user errors' 2
EX_INTERRUPTED = 130  # 128 + SIGINT, what shells expect from an interrupted program
EX_BROKEN_PIPE = 141  # 128 + SIGPIPE, what `seq 1e9 | head -1` reports for seq
# Python's default for SIGTERM ends the process at once: no finally runs, so write_atomic's temporary file stays.
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class UsageError(DeconvlabError):
    """A command line argparse rejected (unknown option, missing argument, bad number)."""


class OneLineParser(argparse.ArgumentParser):
    """argparse with one-line errors (argparse's own error prints the usage block too)."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(f"{message} (see `{self.prog} --help`)")

    def _print_message(self, message: str, file: Any = None) -> None:
        # argparse's own swallows OSError, so unbuffered `--help | head -c0` exited 0: the write's failure is
        # left to run(), as for every other command's output (a closed pipe is 141, a full disk an error line).
        if message and (file := file or sys.stderr) is not None:
            file.write(message)


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """Show warnings as ``deconvlab: warning: ...`` on one line, without the source line Python adds."""

    def show(message, category, filename, lineno, file=None, line=None):
        _to_stderr(f"{PROG}: warning: {' '.join(str(message).split())}")

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def one_line(text: str) -> str:
    return " ".join(str(text).split()) or "unknown error"


def fail(message: str) -> None:
    _to_stderr(f"{PROG}: error: {one_line(message)}")


def _to_stderr(line: str) -> None:
    """Print one line on stderr; where stderr cannot be written (a closed pipe) the line is lost, as Python's own
    warnings are, and the exit status stays the command's rather than a traceback's."""
    if sys.stderr is None:  # pythonw: print(file=None) would write to stdout
        return
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):  # ValueError: a closed file
        _to_devnull(sys.stderr)  # what is still buffered would fail again in the flush at exit (status 120)


def info(message: str, quiet: bool = False) -> None:
    if not quiet:
        print(message, flush=True)


def debug() -> bool:
    return os.environ.get("DECONVLAB_DEBUG", "").strip() not in ("", "0")


class Interrupts:
    """Counts SIGINTs (and SIGTERMs) while a command runs, so a Ctrl-C that a library swallows (a bare
    ``except:`` during TensorFlow's start-up, a worker thread) still ends the run: :meth:`checkpoint` raises it
    again before anything is written, and :func:`run` reports it at the end."""

    def __init__(self) -> None:
        self.count = 0
        self.signum = signal.SIGINT  # the last stop signal received; the exit status is 128 + it
        self.wrote: list[Path] = []  # outputs already in place, for an honest "interrupted" line
        self.note = "nothing was written"

    def handler(self, signum, frame) -> None:
        self.count += 1
        self.signum = signum
        raise KeyboardInterrupt

    def checkpoint(self) -> None:
        if self.count:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield  # signal handlers can only be set from the main thread; Python's default then applies
            return
        previous = {signum: signal.signal(signum, self.handler) for signum in _STOP_SIGNALS}
        stderr = sys.stderr
        # A KeyboardInterrupt raised inside a library's C-to-Python callback (TensorFlow's nest.flatten) can make
        # the library print a traceback of its own on the way out; after a Ctrl-C only run()'s line is shown.
        sys.stderr = _MutedAfterInterrupt(stderr, self)
        try:
            yield
        finally:
            sys.stderr = stderr
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def message(self) -> str:
        if self.wrote:
            return f"interrupted after writing {', '.join(map(str, self.wrote))}"
        return f"interrupted; {self.note}"


class _MutedAfterInterrupt:
    """sys.stderr that drops what is written once a SIGINT has arrived (see :meth:`Interrupts.watching`)."""

    def __init__(self, stream: Any, state: Interrupts) -> None:
        self._stream, self._state = stream, state

    def write(self, text: str) -> int:
        return len(text) if self._state.count else self._stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


#: The running command's interrupt state; :func:`run` starts a fresh one for every command.
state = Interrupts()


def start_keras(cpu_only: bool = False) -> Any:
    """import_keras, whose start-up log (replayed on a failure, a Ctrl-C included) only DECONVLAB_DEBUG shows:
    every failure here is reported in one line by :func:`run`."""
    replay = StringIO()
    try:
        with contextlib.redirect_stderr(replay):
            keras = import_keras(cpu_only=cpu_only)
    except BaseException:
        if debug():
            sys.stderr.write(replay.getvalue())
        raise
    state.checkpoint()
    return keras


def count(option: str, value: int | None, minimum: int = 1, maximum: int | None = None) -> int | None:
    """An integer option that, when given, is in [minimum, maximum]; 0 never silently means "the default"."""
    if value is not None and (value < minimum or (maximum is not None and value > maximum)):
        upper = f" and <= {maximum:,}" if maximum is not None else ""
        raise ArgumentError(f"{option} {value}: pass an integer >= {minimum}{upper}")
    return value


def tile_side(value: int) -> int:
    """``--tile`` of evaluate and benchmark: 0 (whole images) or a side of at least 2, as ``tile_predict`` takes."""
    if value < 0 or value == 1:
        raise ArgumentError(f"--tile {value}: pass 0 (whole images) or a tile side >= 2")
    return value


def positive(option: str, value: float | None) -> float | None:
    """A float option that, when given, is finite and > 0."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise ArgumentError(f"{option} {value:g}: pass a finite number > 0")
    return value


def seed(value: int) -> int:
    if not 0 <= value <= SEED_MAX:
        raise ArgumentError(f"--seed {value}: pass an integer from 0 to {SEED_MAX} (2**32 - 1)")
    return value


def user_path(text: str) -> Path:
    """A path argument with "~" expanded, as read_image and check_output_path expand it: the same-file guard and
    the bit-depth hint must look at the file those read and write."""
    try:
        return Path(text).expanduser()
    except RuntimeError as exc:  # "~nosuchuser/x.png": pathlib cannot find that home folder
        raise argparse.ArgumentTypeError(f"{text}: {exc}") from None


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


def run(command: Callable[[], int]) -> int:
    """Run one command (argument parsing included) under the rules above; returns the exit status."""
    global state
    state = current = Interrupts()
    verbose = debug()
    try:
        with current.watching(), one_line_warnings(), _printable_file_names():
            try:
                code = int(command())
                current.checkpoint()  # a Ctrl-C some library swallowed still ends in 130
            except SystemExit as exc:  # --help and --version
                code = int(exc.code or 0) if isinstance(exc.code, int) or exc.code is None else 2
            if sys.stdout is not None:  # a closed pipe fails here, not in the interpreter's flush at exit (status 120)
                sys.stdout.flush()
            return code
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt) or (current.count and isinstance(exc, Exception)):
            # After a Ctrl-C, whatever breaks next (a library half imported, an interrupt swallowed and turned
            # into another error) is its consequence: report the interruption, not that.
            if verbose:  # where it was stopped, e.g. to see what hung; still status 130
                traceback.print_exc()
            fail(current.message())
            _settle_stdout()
            return 128 + current.signum if current.count else EX_INTERRUPTED
        if isinstance(exc, BrokenPipeError) and _stdout_reader_gone():  # `| head` has all it wanted: no error
            _to_devnull(sys.stdout)
            return EX_BROKEN_PIPE
        if verbose or not isinstance(exc, Exception):
            raise
        fail(failure(exc))
        _settle_stdout()
        return EX_SOFTWARE if is_bug(exc) else 2


@contextlib.contextmanager
def _printable_file_names() -> Iterator[None]:
    """A stdout that can print every file name while a command runs, where it is strict.

    A file name that is not valid UTF-8 (bytes from an old Latin-1 archive) reaches Python with surrogates, which
    a UTF-8 locale's strict stdout refuses: ``wrote <name>`` then failed as a bug (status 70) after the file was
    written. ``surrogateescape`` (Python's choice in the C locale) prints the name's own bytes, as ``ls`` does. A
    stdout in another encoding (a Latin-1 locale, a Windows code page into a pipe) cannot encode "日本.png" either:
    there ``backslashreplace`` prints escapes.
    """
    stream = sys.stdout
    if getattr(stream, "errors", None) != "strict" or not hasattr(stream, "reconfigure"):
        yield
        return
    utf8 = codecs.lookup(stream.encoding or "ascii").name == "utf-8"
    stream.reconfigure(errors="surrogateescape" if utf8 else "backslashreplace")
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):  # a closed stdout: run() reports that, not this
            stream.reconfigure(errors="strict")


def _settle_stdout() -> None:
    """After an error line: where stdout cannot take what is still buffered (a full disk, `> /dev/full`), drop it,
    so the interpreter's flush at exit does not print a second error and turn status 2 into 120."""
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except (OSError, ValueError):  # ValueError: a closed file
        _to_devnull(sys.stdout)


def _stdout_reader_gone() -> bool:
    """Whether stdout is a pipe whose reader has closed it: a broken pipe elsewhere (a socket) is an error."""
    try:
        poller = select.poll()  # not on Windows: there every broken pipe is reported as an error
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(event & select.POLLERR for _, event in poller.poll(0))
    except (AttributeError, ValueError, OSError):
        return False


def _to_devnull(stream: Any) -> None:
    """Point a stream's descriptor at os.devnull, so the interpreter's flush at exit of what is still buffered does
    not fail again (Python's documentation, signal module, "Note on SIGPIPE")."""
    try:
        fd = stream.fileno()
    except (AttributeError, ValueError, OSError):  # no descriptor (None, or a test's capture): nothing to flush there
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def is_bug(exc: Exception) -> bool:
    return not isinstance(exc, (DeconvlabError, OSError, MemoryError))


def failure(exc: Exception) -> str:
    """The one line for an exception that ended a command."""
    if isinstance(exc, DeconvlabError):
        return str(exc)
    if isinstance(exc, OSError):  # e.g. a disk that filled up mid-run
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror or exc}{where}; check the path, free space and permissions"
    if isinstance(exc, MemoryError):
        return "out of memory: pass a smaller --tile, or crop the image"
    # The last resort: a bug, reported in one line rather than a traceback.
    return (f"unexpected {type(exc).__name__}: {one_line(str(exc))[:300]}; rerun with DECONVLAB_DEBUG=1 to see "
            "the traceback, and please report it")


__all__ = ["EX_BROKEN_PIPE", "EX_INTERRUPTED", "EX_SOFTWARE", "PROG", "SEED_MAX", "Interrupts", "OneLineParser",
           "UsageError", "count", "debug", "fail", "failure", "info", "is_bug", "one_line", "one_line_warnings",
           "positive", "run", "same_file", "seed", "start_keras", "state", "user_path"]
