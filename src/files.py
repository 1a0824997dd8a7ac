"""Reading and writing the project's small files: atomic writes, strict JSON, one-line errors.

A results file, a plot, a config or a prediction file is written to a
temporary file beside its target and renamed over it, so that readers see the
old file or the new one, never a partial one. JSON is written with finite
numbers only (`NaN` is not JSON) and read with one line naming the file when
it cannot be read, is not UTF-8 or not JSON, or holds the wrong kind of value.

No MindSpore import here (nor in what this imports): the data converters, the
metrics and SQuAD's post-processing write through these functions without
loading it, and TensorFlow's protobuf, used by the TFRecord writers, is slower
in a process that has imported MindSpore.
"""

import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator

from src.errors import UserError
from src.staging import STAGING_PREFIX, OutputError

# mkstemp creates files readable by the owner only; configs are for everyone.
TEXT_FILE_MODE = 0o644
# How messages name the JSON type a file's top level must have.
JSON_TYPE_NAMES = {dict: "a JSON object", list: "a JSON list", str: "a string", int: "a number",
                   float: "a number", bool: "true or false", type(None): "null"}


class FileFormatError(UserError):
    """An input file cannot be read, is not UTF-8, or does not hold what the command expects."""


class NonFiniteError(UserError):
    """A checkpoint or a results file would hold inf or NaN."""


def replace_atomically(path: str, write: Callable[[str], None], suffix: str = "", mode: int | None = None) -> None:
    """Make `path` by `write(temporary_path)`, atomically.

    The temporary file is in the same directory; once written it gets `mode`
    (if given), is flushed to disk, and is renamed over `path`: readers see the
    old file or the new one, never a partial one. A failure leaves no
    temporary file behind, and an OSError (a full disk, a read-only directory)
    becomes an OutputError naming `path`.
    """
    directory = os.path.dirname(os.path.abspath(path))
    tmp_path = None
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp_path = tempfile.mkstemp(prefix=STAGING_PREFIX, suffix=suffix, dir=directory)
        os.close(fd)
        write(tmp_path)
        if mode is not None:
            os.chmod(tmp_path, mode)
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except OSError as error:
        raise OutputError(f"{path}: cannot write ({error.strerror or error}); any previous file there is "
                          "unchanged") from None
    finally:
        if tmp_path and os.path.exists(tmp_path):
            os.remove(tmp_path)


def write_text_atomic(text: str, path: str) -> None:
    """Write a small text file atomically, readable by everyone."""
    def write(tmp_path):
        with open(tmp_path, "w", encoding="utf-8") as f:
            f.write(text)
    replace_atomically(path, write, mode=TEXT_FILE_MODE)


def finite_json(value: object, where: str, **dumps_options) -> str:
    """`json.dumps(value)` refusing inf and NaN, which Python would write as `NaN`/`Infinity` (not JSON):
    NonFiniteError names `where` and the first such entry."""
    try:
        return json.dumps(value, allow_nan=False, **dumps_options)
    except ValueError:
        key, item = next((key, item) for key, item in json_leaves(value)
                         if isinstance(item, float) and not math.isfinite(item))
        raise NonFiniteError(f"{where}: not written: {key} is {item}, and JSON holds finite numbers only "
                             "(the model's outputs are not finite)") from None


def json_leaves(value: object, prefix: str = "") -> Iterator[tuple[str, object]]:
    """(dotted key, leaf) of nested dicts and lists, in order; list items are keyed by index."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else None
    if items is None:
        yield prefix, value
        return
    for key, item in items:
        yield from json_leaves(item, f"{prefix}.{key}" if prefix else str(key))


def file_named(path: str, flag: str = "") -> str:
    """How an error names the file `path`: after `flag`, the option that gave it, when there is one."""
    return f"{flag} {path}" if flag else path


def read_text(path: str, flag: str = "", what: str = "") -> str:
    """The whole text of the UTF-8 file `path`.

    Raises FileFormatError, one line naming the file (after `flag`, the
    option that gave it, when there is one), if it cannot be read ("cannot
    read `what`") or is not UTF-8.
    """
    where = file_named(path, flag)
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as error:
        raise FileFormatError(f"{where}: cannot read{' ' + what if what else ''} ({error.strerror})") from None
    except UnicodeDecodeError as error:
        raise FileFormatError(f"{where}: not UTF-8 ({error.reason} at byte {error.start})") from None


def read_json(path: str, flag: str = "", expected: type = dict) -> object:
    """The JSON value of the UTF-8 file `path`, whose top level must be an `expected` (dict: an object).

    Raises FileFormatError, one line naming the file (after `flag`, as
    `read_text`), if it cannot be read, is not UTF-8, is not JSON (with the
    line and column) or its top level is something else.
    """
    where = file_named(path, flag)
    text = read_text(path, flag)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise FileFormatError(f"{where}:{error.lineno}:{error.colno}: not valid JSON ({error.msg})") from None
    if not isinstance(value, expected):
        raise FileFormatError(f"{where}: expected {JSON_TYPE_NAMES[expected]} at the top level, "
                              f"got {JSON_TYPE_NAMES.get(type(value), type(value).__name__)}")
    return value
