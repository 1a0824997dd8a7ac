"""All of a command's outputs written whole or not at all: a staging directory moved into place on success.

The data-making commands write every output (records, schemas, label map,
stats) into a hidden staging directory inside their output directory, named
`.tmp-<host>@<pid>-<random>`. Only when everything is written are the files
flushed to disk and renamed into the output directory; a failure (bad record,
full disk, Ctrl-C) removes the staging directory and leaves the previous
outputs byte-identical. The renames take milliseconds; a crash during them
can leave some files of the old run beside the new ones.

A killed run cannot clean up. The next run into the same directory removes
staging entries whose name says they belong to a process on this host that
is no longer alive; entries of live processes, of other hosts (a shared
filesystem) and names without an owner are left alone, so a concurrent run's
staging is never touched. A run that created its output directory (and its
missing parents) removes them again if it fails and they are empty.

No MindSpore import here: the TFRecord writers must not load it (it slows
TensorFlow's protobuf).
"""

import contextlib
import fnmatch
import glob
import os
import re
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator, Sequence

from src.errors import UserError

STAGING_PREFIX = ".tmp-"
STAGING_NAME = re.compile(r"^" + re.escape(STAGING_PREFIX) + r"(?P<host>[^@/]+)@(?P<pid>\d+)-")


class OutputError(UserError):
    """An output path cannot be written (a file in the way, read-only, disk full) or would replace an input."""


def staging_prefix() -> str:
    """The name start of this process's staging entries: its host and pid, for `is_stale`."""
    return f"{STAGING_PREFIX}{socket.gethostname()}@{os.getpid()}-"


def process_alive(pid: int) -> bool:
    """Whether a process `pid` exists on this host (a reused pid counts as alive: its entry is kept)."""
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True


def is_stale(name: str) -> bool:
    """Whether `name` is a staging entry left by a dead process of this host."""
    owner = STAGING_NAME.match(name)
    if owner is None or owner["host"] != socket.gethostname():
        return False
    pid = int(owner["pid"])
    return pid != os.getpid() and not process_alive(pid)


def remove_stale_staging(directory: str) -> list[str]:
    """Remove the stale staging entries (directories or files) of `directory`; returns their names."""
    stale = sorted(name for name in os.listdir(directory) if is_stale(name))
    for name in stale:
        path = os.path.join(directory, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.remove(path)
    return stale


def missing_directories(path: str, flag: str) -> list[str]:
    """The directories `makedirs(path)` would create, deepest first; refuses a file in the way."""
    missing, current = [], os.path.abspath(path)
    while not os.path.lexists(current):
        missing.append(current)
        current = os.path.dirname(current)
    if not os.path.isdir(current):
        what = "is a file" if current == os.path.abspath(path) else f"lies under {current}, which is a file"
        raise OutputError(f"{flag} {path}: {what}; expected a directory")
    return missing


def check_inputs_are_not_outputs(inputs: dict[str, list[str]], output_dir: str, output_names: list[str],
                                 flag: str = "--output_dir") -> None:
    """Refuse an input file that this run would replace.

    Args:
        inputs (dict): flag -> list of input paths.
        output_names (iterable of str): the run's output file names (fnmatch patterns) in `output_dir`.
    """
    output_dir = os.path.realpath(output_dir)
    for input_flag, paths in inputs.items():
        for path in paths:
            real = os.path.realpath(path)
            if os.path.dirname(real) != output_dir:
                continue
            clash = [pattern for pattern in output_names if fnmatch.fnmatch(os.path.basename(real), pattern)]
            if clash:
                raise OutputError(f"{input_flag} {path} is also an output of this run ({clash[0]} in {flag}); "
                                  "move it or choose another output directory")


@contextlib.contextmanager
def staged_outputs(output_dir: str, flag: str = "--output_dir", replaced: Sequence[str] = ()) -> Iterator[str]:
    """Yield a new empty staging directory inside `output_dir`; move its files into `output_dir` if the block
    succeeds, discard them otherwise.

    Creates `output_dir` (refusing a path under a file or an unwritable one in one line, before any work)
    and removes stale staging entries of dead runs first. `replaced` are name patterns of old outputs that
    the new ones supersede (e.g. shards of another shard count): removed after the move. An OSError in the
    block or the move (e.g. a full disk) becomes one line naming `output_dir`.
    """
    created = missing_directories(output_dir, flag)
    try:
        staging = make_staging(output_dir, flag)
        try:
            yield staging
            commit(staging, output_dir, replaced)
        except OSError as error:
            reason = error.strerror or str(error)
            raise OutputError(f"{flag} {output_dir}: cannot write the outputs ({reason}); "
                              "the previous outputs are untouched") from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        for directory in created:  # deepest first: only those this run made, only if empty
            with contextlib.suppress(OSError):
                os.rmdir(directory)


def make_staging(output_dir: str, flag: str) -> str:
    """Create `output_dir` and this run's staging directory in it, after removing stale ones."""
    try:
        os.makedirs(output_dir, exist_ok=True)
        stale = remove_stale_staging(output_dir)
        staging = tempfile.mkdtemp(prefix=staging_prefix(), dir=output_dir)
    except OSError as error:
        raise OutputError(f"{flag} {output_dir}: not writable ({error.strerror})") from None
    if stale:
        print(f"note: removed {len(stale)} staging entries of dead runs from {output_dir}: {', '.join(stale)}",
              file=sys.stderr)
    return staging


def commit(staging: str, output_dir: str, replaced: Sequence[str]) -> None:
    """Flush every staged file to disk, rename it into `output_dir`, then drop superseded old outputs."""
    names = sorted(os.listdir(staging))
    for name in names:
        fsync(os.path.join(staging, name))
    for name in names:
        os.replace(os.path.join(staging, name), os.path.join(output_dir, name))
    for pattern in replaced:
        for old in glob.glob(os.path.join(glob.escape(output_dir), pattern)):
            if os.path.basename(old) not in names:
                os.remove(old)
    fsync(output_dir)  # the renames themselves


def fsync(path: str) -> None:
    """Flush a file's data, or a directory's entries, to disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
