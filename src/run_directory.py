"""Run directories: the folders a job writes into, and the rules that keep runs from spoiling each other's files.

Every job that writes an output directory (run_pretrain.py, the three
fine-tuning jobs, pretrain_eval.py) holds its directories with
`hold_directories` for the whole run:

* before any work, each directory is created and proven writable: a file in
  the way, a read-only or missing parent is one line naming the flag;
* one run per directory at a time: the run locks `<directory>/.run.lock`
  (an exclusive `flock`, which the kernel drops when the process dies) and
  writes its pid, host, command and start time into it. A second run is
  refused in one line naming the holder. A lock file whose lock is free was
  left by a run that died (kill -9, power loss): it is taken over, with a note;
* temporary files (`.tmp-*`, of atomic writes and MindSpore's own checkpoint
  writer) left there by a killed save are removed once the lock is held: the
  lock proves that no live run is writing them. The lock is released (its file
  removed) when the run ends, also on an error.

`check_not_replacing` refuses to start a run that would replace a previous
run's results unless the job's `overwrite` key is true. Writes themselves are
atomic (`src.files.replace_atomically`), so a failed run leaves the
previous files as they were.

The lock relies on the filesystem's `flock`: local disks and NFSv4 honour it
across processes and hosts. In a distributed run only the process that writes
metrics (rank 0) holds the lock; its checkpoint directory, where every server's
first process saves (see run_pretrain.saves_checkpoints), is held by rank 0 too,
so servers sharing one filesystem do not refuse each other.

No MindSpore import here: the checks run before the framework is loaded.
"""

import contextlib
import datetime
import errno
import fcntl
import json
import os
import shlex
import socket
import sys
import tempfile
from collections.abc import Iterable, Iterator

from src.staging import STAGING_PREFIX, OutputError, missing_directories

LOCK_FILE = ".run.lock"
# flock errors of filesystems without locking; the run goes on unlocked, with a note.
NO_LOCKING_ERRNOS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL)
# Bytes of a lock file read to name its holder (a pid, a host, a command line and a time).
HOLDER_READ_BYTES = 65536


def check_writable(directory: str, flag: str) -> None:
    """Create `directory` (with its parents) and prove a file can be written there, before any work."""
    missing_directories(directory, flag)  # a file where a directory is expected: one line
    try:
        os.makedirs(directory, exist_ok=True)
        descriptor, probe = tempfile.mkstemp(prefix=STAGING_PREFIX, dir=directory)
        os.close(descriptor)
        os.remove(probe)
    except OSError as error:
        raise OutputError(f"{flag} {directory}: not writable ({error.strerror})") from None


@contextlib.contextmanager
def hold_directories(directories: Iterable[tuple[str, str]]) -> Iterator[None]:
    """Hold the run's output directories, given as (path, flag) pairs, until the block ends.

    Each distinct directory ("" means none) is checked writable, locked, and
    cleared of stale temporary files, in order.
    """
    with contextlib.ExitStack() as stack:
        held = set()
        for directory, flag in directories:
            if not directory or os.path.realpath(directory) in held:
                continue
            held.add(os.path.realpath(directory))
            check_writable(directory, flag)
            stack.enter_context(directory_lock(directory, flag))
            remove_temporary_files(directory)
        yield


@contextlib.contextmanager
def directory_lock(directory: str, flag: str) -> Iterator[None]:
    """Lock `directory` for this run (see the module docstring); the lock file is removed at the end."""
    path = os.path.join(directory, LOCK_FILE)
    descriptor = acquire(path, directory, flag)
    if descriptor is None:
        yield
        return
    try:
        previous = read_holder(descriptor)
        if previous is not None:
            print(f"note: {flag} {directory}: taking over {path} from {describe(previous)}, which ended "
                  "without releasing it", file=sys.stderr)
        write_holder(descriptor)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)  # before closing: a run waiting on this file then sees it gone and makes a new one
        os.close(descriptor)


def acquire(path: str, directory: str, flag: str) -> int | None:
    """An open descriptor of the lock file `path`, exclusively locked; None where the filesystem cannot lock."""
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = read_holder(descriptor)
            os.close(descriptor)
            raise OutputError(f"{flag} {directory} is in use by {describe(holder)} (lock {path}); wait for it "
                              f"to end or choose another --{flag}") from None
        except OSError as error:
            os.close(descriptor)
            if error.errno not in NO_LOCKING_ERRNOS:
                raise OutputError(f"{flag} {directory}: cannot lock {path} ({error.strerror})") from None
            print(f"note: {flag} {directory}: the filesystem cannot lock files ({error.strerror}); "
                  "a concurrent run there would not be noticed", file=sys.stderr)
            return None
        if same_file(descriptor, path):
            return descriptor
        os.close(descriptor)  # its holder ended and removed the file meanwhile: lock the new one


def same_file(descriptor: int, path: str) -> bool:
    """Whether `path` still names the file open as `descriptor`."""
    try:
        return os.path.samestat(os.fstat(descriptor), os.stat(path))
    except FileNotFoundError:
        return False


def read_holder(descriptor: int) -> dict | None:
    """The holder record in an open lock file: a dict, {} if unreadable, None if the file is empty."""
    text = os.pread(descriptor, HOLDER_READ_BYTES, 0).decode("utf-8", errors="replace")
    if not text.strip():
        return None
    try:
        holder = json.loads(text)
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def write_holder(descriptor: int) -> None:
    """Name this process in its lock file, for the message a second run prints."""
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": shlex.join(sys.argv),
              "started": datetime.datetime.now().isoformat(timespec="seconds")}
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, (json.dumps(holder) + "\n").encode("utf-8"), 0)
    os.fsync(descriptor)


def describe(holder: dict | None) -> str:
    """A run named by its lock file's record, for one line."""
    if not holder:
        return "another run (not named in its lock file)"
    return (f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('started')} "
            f"({holder.get('command')})")


def remove_temporary_files(directory: str) -> None:
    """Delete the temporary files of interrupted writes in a locked `directory`, with a note."""
    stale = sorted(name for name in os.listdir(directory)
                   if name.startswith(STAGING_PREFIX) and os.path.isfile(os.path.join(directory, name)))
    for name in stale:
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(directory, name))
    if stale:
        print(f"note: removed {len(stale)} temporary file(s) of an interrupted run from {directory}: "
              f"{', '.join(stale)}", file=sys.stderr)


def check_not_replacing(outputs: Iterable[tuple[str, str]], overwrite: bool, resume_hint: str = "") -> None:

    """Refuse a run that would replace the results of a previous one, unless `overwrite`.

    Args:
        outputs (list): (path, flag) of the files this run writes, `flag` naming their directory.
        overwrite (bool): the job's `overwrite` key: replace them (a note lists them).
        resume_hint (str): how to continue the previous run instead, if the job can.
    """
    existing = [(path, flag) for path, flag in outputs if os.path.lexists(path)]
    if not existing:
        return
    if overwrite:
        print(f"note: overwrite: replacing {', '.join(path for path, _ in existing)} of a previous run")
        return
    path, flag = existing[0]
    raise OutputError(f"{flag} {os.path.dirname(path)} holds {os.path.basename(path)} of a previous run; "
                      f"{resume_hint}set --overwrite true to replace it, or choose another --{flag}")
