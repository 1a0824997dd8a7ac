"""One pass over every data file before the first step: TFRecord checksums, column lengths and value ranges.

Why: MindSpore's TFRecordDataset does not verify the CRC32C checksums that
TFRecord files carry, so a damaged record trains silently, and a truncated file
fails deep in its reader with a traceback that prints raw bytes; a token id
beyond the vocabulary fails in the Gather kernel at whichever step reaches it.
`summarize` reads each file once, when a job first opens it, and names the file
and record of any such problem in one line (a `DatasetError`):

1. TFRecord framing and checksums (`tfrecord_payloads`): the record headers
   are walked in Python; the CRC32C of every length field and payload is
   computed with NumPy for many records at once (see `masked_crc32c`).
2. Column summaries (`read_summary`): every row is read with MindSpore's own
   reader, keeping per column the values per row, the smallest and largest
   value and whether all floats are finite. The jobs compare these against
   what the task and model accept (`check_columns`), before any model is built.
   A row of another length, or a record that is not a tf.train.Example, fails
   in MindSpore's reader: one line here too, though MindSpore also logs its
   own `[ERROR]` lines (its C++ log level is fixed when it is imported).

Summaries are kept for the process, keyed by path, size and modification time:
a job's checks, its training and its evaluation read each file once. For large
data (LARGE_DATA_BYTES) they are also kept across runs in the user's cache
directory, so a resume does not pay again. In a distributed run every rank
checks every file. Cost, measured on a loaded 2-core CPU for a 100 MB
pretraining shard (120,000 rows of 128 tokens): checksums 1.0-1.1 s, the
summary 1.1-2.4 s, the cached summary of a second run 0.07 s. (TensorFlow's own
reader, which also verifies checksums, took 1.1 s for the pass but 2.9 s to
import, in a child process so as not to slow MindSpore's protobuf: most checks,
of small files, would pay that import each time.)

MindRecord files carry no checksums (MindSpore 2.10's MindRecord offers
encryption, no integrity hash), and a flipped byte in one can crash
MindSpore's reader (a segmentation fault). Their summary is therefore read in
a child process, so that a crash becomes one line naming the file.
"""

import dataclasses
import json
import math
import os
import struct
import subprocess
import sys
import time

import numpy as np

from src.errors import UserError
from src.files import write_text_atomic

# TFRecord: [length: uint64][masked CRC32C of length: uint32][payload][masked CRC32C of payload: uint32].
LENGTH_BYTES = 8
CRC_BYTES = 4
CRC32C_POLYNOMIAL = 0x82F63B78  # Castagnoli, bit-reversed, as TFRecord (and iSCSI) use
CRC_MASK_DELTA = 0xA282EAD8  # TFRecord stores rotr(crc, 15) + delta (mod 2^32), "masked"
UINT32 = 0xFFFFFFFF
# Records whose checksums are computed together: bounds the padded byte matrix and its index array.
CRC_CHUNK_BYTES = 1 << 22
# Rows per batch of the summary pass.
SUMMARY_BATCH_ROWS = 4096
# Data of at least this size takes seconds to check: a progress line per file, summaries kept across runs.
LARGE_DATA_BYTES = 64 << 20
CACHE_FILE = os.path.join("bert_mindspore", "record_summaries.json")
# Longest MindSpore reason quoted in a message (its messages can hold raw record bytes).
MAX_REASON_CHARS = 160
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class DatasetError(UserError):
    """Data files or schema are missing, damaged, or disagree with what the job needs."""


@dataclasses.dataclass(frozen=True)
class ColumnSummary:
    """One column over all rows of a file: `length` values per row, their range, and (floats) finiteness."""
    length: int
    is_float: bool
    low: float
    high: float
    finite: bool = True


# (rows, {column: ColumnSummary}) of one file.
FileSummary = tuple[int, dict[str, ColumnSummary]]


@dataclasses.dataclass(frozen=True)
class Expect:
    """What a job accepts in one column: `length` values per row (None: any, the same in every file) and
    values in [low, high] (None: unbounded); `source` names what sets `high` (for the message)."""
    length: int | None = None
    low: int | None = None
    high: int | None = None
    source: str = ""


def _crc_table():
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(CRC32C_POLYNOMIAL), table >> 1).astype(np.uint32)
    return table


CRC_TABLE = _crc_table()


def _initial_register_terms(max_length):
    """[max_length + 1] uint32: the CRC register after n zero bytes fed from the initial value ~0.

    The register is linear in (initial value, bytes): the register of a message
    from ~0 is its register from 0 XOR this term for the message's length.
    """
    terms = np.empty(max_length + 1, np.uint32)
    register = UINT32
    for n in range(max_length + 1):
        terms[n] = register
        register = int(CRC_TABLE[register & 0xFF]) ^ (register >> 8)
    return terms


def _crc32c_rows(data, starts, lengths):
    """CRC32C of the byte ranges data[start:start + length], one NumPy step per byte position.

    Records are left-padded with zeros to the longest: from a zero register,
    leading zero bytes leave the register at zero, so all rows run in lockstep.
    """
    width = int(lengths.max(initial=0))
    offsets = np.arange(width)[None, :] - (width - lengths)[:, None]   # [R, W]; < 0 is padding
    padded = np.where(offsets >= 0, data[starts[:, None] + np.maximum(offsets, 0)], 0).astype(np.uint8)
    register = np.zeros(len(starts), np.uint32)
    for column in np.ascontiguousarray(padded.T):                        # W steps over [R] bytes
        register = CRC_TABLE[(register ^ column) & 0xFF] ^ (register >> 8)
    return register ^ _initial_register_terms(width)[lengths] ^ np.uint32(UINT32)


def masked_crc32c(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """TFRecord's masked CRC32C of data[start:start + length] for every (start, length); [N] uint32.

    Rows are sorted by length and taken in chunks of about CRC_CHUNK_BYTES, so
    that records of similar length share a padded matrix. Made for BERT rows (a
    few KiB each): one NumPy step per byte of the longest record in a chunk.
    """
    starts, lengths = np.asarray(starts, np.int64), np.asarray(lengths, np.int64)
    crcs = np.empty(len(starts), np.uint32)
    order = np.argsort(lengths, kind="stable")
    first = 0
    while first < len(order):
        rows = max(1, CRC_CHUNK_BYTES // max(1, int(lengths[order[first]])))
        chunk = order[first:first + rows]
        crcs[chunk] = _crc32c_rows(data, starts[chunk], lengths[chunk])
        first += len(chunk)
    crc = crcs.astype(np.uint64)
    return ((((crc >> 15) | (crc << 17)) + CRC_MASK_DELTA) & UINT32).astype(np.uint32)


def _stored_crcs(data, positions):
    """The little-endian uint32 at each of `positions`."""
    positions = np.asarray(positions, np.int64)
    return sum(data[positions + k].astype(np.uint32) << np.uint32(8 * k) for k in range(CRC_BYTES))


def _damaged(path, record, offset, part):
    return DatasetError(f"{path}: record {record} (byte {offset}): its {part} fails its checksum: the file is damaged "
                        "or not TFRecord; regenerate it or copy it again")


def tfrecord_payloads(path: str, data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(starts, lengths) of the payloads of TFRecord bytes `data` (a uint8 array), every checksum verified.

    Raises a DatasetError naming the first damaged or missing record (counted
    from 1, with its byte offset): a wrong checksum of a length or a payload,
    or a file that ends inside a record.
    """
    raw = memoryview(data)
    headers, lengths = [], []
    position, size = 0, len(data)
    while position < size:
        if position + LENGTH_BYTES + CRC_BYTES > size:
            raise DatasetError(f"{path}: truncated: the file ends inside the header of record {len(headers) + 1} "
                               f"(byte {position}): regenerate or copy it again")
        (length,) = struct.unpack_from("<Q", raw, position)
        end = position + LENGTH_BYTES + CRC_BYTES + length + CRC_BYTES
        if end > size:
            if masked_crc32c(data, [position], [LENGTH_BYTES])[0] != _stored_crcs(data, [position + LENGTH_BYTES])[0]:
                raise _damaged(path, len(headers) + 1, position, "length field")
            raise DatasetError(f"{path}: truncated: record {len(headers) + 1} (byte {position}) needs {end - size} "
                               "more bytes than the file has: regenerate or copy it again")
        headers.append(position)
        lengths.append(length)
        position = end
    headers, lengths = np.array(headers, np.int64), np.array(lengths, np.int64)
    starts = headers + LENGTH_BYTES + CRC_BYTES
    bad_length = masked_crc32c(data, headers, np.full(len(headers), LENGTH_BYTES)) != _stored_crcs(
        data, headers + LENGTH_BYTES)
    bad_payload = masked_crc32c(data, starts, lengths) != _stored_crcs(data, starts + lengths)
    first_bad = np.flatnonzero(bad_length | bad_payload)
    if first_bad.size:
        record = int(first_bad[0])
        raise _damaged(path, record + 1, int(headers[record]), "length field" if bad_length[record] else "data")
    return starts, lengths


def verify_tfrecord(path: str) -> int:
    """The number of records of the TFRecord file `path`, after checking every checksum."""
    if os.path.getsize(path) == 0:
        return 0
    # Mapped, not read: the pages are read as the checksums reach them, and a large shard is not held in memory.
    return len(tfrecord_payloads(path, np.memmap(path, np.uint8, mode="r"))[0])


def _reader(path, dataset_format, **options):
    import mindspore.dataset as ds  # imported here: the checksum pass and the tests of it do not need MindSpore

    if dataset_format == "tfrecord":
        return ds.TFRecordDataset([path], shuffle=False, **options)
    return ds.MindDataset([path], shuffle=False, **options)


def _reason(error):
    """MindSpore's one-line reason in `error`, short and printable, without the raw record bytes it may quote."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip().startswith("[ERROR]")]
    reason = lines[0].removeprefix("[ERROR]").split(" bytes:")[0].strip() if lines else ""
    return f" ({reason})" if reason and reason.isprintable() and len(reason) <= MAX_REASON_CHARS else ""


def read_summary(path: str, dataset_format: str) -> FileSummary:
    """{column: ColumnSummary} and the row count of one file, read in full with MindSpore's reader.

    The first row sets each column's length and type; every later row must
    agree (MindSpore refuses a row of another length, reported here in one line).
    """
    import mindspore as ms

    try:
        first = next(_reader(path, dataset_format, num_samples=1).create_dict_iterator(output_numpy=True,
                                                                                      num_epochs=1), None)
        if first is None:
            return 0, {}
        options = {}
        if dataset_format == "tfrecord":  # read integers as int64, so that no id wraps around before its check
            schema = ms.dataset.Schema()
            for name, values in first.items():
                schema.add_column(name, de_type=ms.float32 if values.dtype.kind == "f" else ms.int64,
                                  shape=[int(values.size)])
            options = dict(schema=schema)
        reader = _reader(path, dataset_format, **options).batch(SUMMARY_BATCH_ROWS, drop_remainder=False)
        summary, rows = {}, 0
        for batch in reader.create_dict_iterator(output_numpy=True, num_epochs=1):
            rows += len(next(iter(batch.values())))
            summary = {name: _merge(summary.get(name), values) for name, values in batch.items()}
    except RuntimeError as error:
        raise DatasetError(f"{path}: cannot read its rows as {dataset_format} (a damaged file, another format, or "
                           f"rows of different lengths){_reason(error)}") from None
    return rows, summary


def _merge(summary, values):
    """`summary` (or None) extended by a batch `values` [rows, length]."""
    values = values.reshape(len(values), -1)
    is_float = values.dtype.kind == "f"
    finite = bool(np.isfinite(values).all()) if is_float else True
    shown = values[np.isfinite(values)] if is_float and not finite else values
    low = float(shown.min()) if shown.size else math.inf
    high = float(shown.max()) if shown.size else -math.inf
    if summary is not None:
        low, high, finite = min(low, summary.low), max(high, summary.high), finite and summary.finite
    return ColumnSummary(values.shape[1], is_float, low, high, finite)


def _summary_to_json(rows, summary):
    return json.dumps({"rows": rows, "columns": {name: dataclasses.asdict(column)
                                                 for name, column in summary.items()}})


def _summary_from_json(text):
    loaded = json.loads(text)
    return loaded["rows"], {name: ColumnSummary(**column) for name, column in loaded["columns"].items()}


def read_summary_in_child(path: str, dataset_format: str) -> FileSummary:
    """`read_summary` in a child process: a reader crash (damaged MindRecord) becomes one DatasetError."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [PROJECT_ROOT, os.environ.get("PYTHONPATH")]))}
    child = subprocess.run([sys.executable, "-m", "src.record_check", dataset_format, path],
                           capture_output=True, text=True, env=env, check=False)
    if child.returncode == 0:
        return _summary_from_json(child.stdout.strip().splitlines()[-1])
    message = child.stderr.strip().splitlines()[-1] if child.stderr.strip() else ""
    if message.startswith("error: "):
        raise DatasetError(message.removeprefix("error: "))
    raise DatasetError(f"{path}: MindSpore's {dataset_format} reader crashed on it (exit status "
                       f"{child.returncode}): the file is damaged; {dataset_format} files carry no checksums, "
                       "regenerate it")


def read_file(path: str, dataset_format: str) -> FileSummary:
    """(rows, {column: ColumnSummary}) of one file: checksums first (TFRecord), then every row."""
    if dataset_format == "tfrecord":
        verify_tfrecord(path)
        return read_summary(path, dataset_format)
    return read_summary_in_child(path, dataset_format)


def _file_key(path, dataset_format):
    """What identifies a file's contents for the caches: real path, size, modification time, format."""
    status = os.stat(path)
    return json.dumps([os.path.realpath(path), status.st_size, status.st_mtime_ns, dataset_format])


def cache_path() -> str:
    """The file of summaries kept across runs (large data only), in the user's cache directory."""
    return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), CACHE_FILE)


def _load_cache():
    try:
        with open(cache_path(), encoding="utf-8") as f:
            stored = json.load(f)
        return stored if isinstance(stored, dict) else {}
    except (OSError, ValueError):
        return {}  # none yet, or unreadable: the files are read again


def _save_cache(stored):
    """Keep the summaries of files still there unchanged; a cache that cannot be written costs a re-read."""
    def unchanged(key):
        path, *_, dataset_format = json.loads(key)
        return os.path.isfile(path) and _file_key(path, dataset_format) == key

    try:
        write_text_atomic(json.dumps({key: value for key, value in stored.items() if unchanged(key)}), cache_path())
    except UserError:
        pass


# Summaries read by this process, by _file_key.
_SUMMARIES = {}


def summarize(files: list[str], dataset_format: str) -> dict[str, FileSummary]:
    """{path: (rows, {column: ColumnSummary})} of `files`, each read once per process.

    Data of LARGE_DATA_BYTES or more gets a progress line per file read, and its
    summaries are kept across runs (`cache_path`, by path, size and modification
    time), so that a resume or a second job on the same files does not read them again.
    """
    large = sum(os.path.getsize(path) for path in files) >= LARGE_DATA_BYTES
    stored = _load_cache() if large else {}
    summaries, new = {}, 0
    for index, path in enumerate(files):
        key = _file_key(path, dataset_format)
        if key not in _SUMMARIES and key in stored:
            _SUMMARIES[key] = _summary_from_json(stored[key])
        if key not in _SUMMARIES:
            started = time.perf_counter()
            _SUMMARIES[key] = read_file(path, dataset_format)
            if large:
                stored[key], new = _summary_to_json(*_SUMMARIES[key]), new + 1
                print(f"checked data file {index + 1} of {len(files)}, {path}: {_SUMMARIES[key][0]} rows, "
                      f"{os.path.getsize(path) / 1e6:.0f} MB in {time.perf_counter() - started:.1f} s", flush=True)
        summaries[path] = _SUMMARIES[key]
    if new:
        _save_cache(stored)
    return summaries


def check_columns(summaries: dict[str, FileSummary], expected: dict[str, Expect],
                  task: str = "this job") -> None:
    """Every file of `summaries` must hold the `expected` columns ({column: Expect}) with the lengths and
    values `task` (e.g. "the classifier", for the message) accepts, the same lengths in every file, and
    finite floats."""
    lengths = {}
    for path, (rows, columns) in summaries.items():
        if rows == 0:
            raise DatasetError(f"{path}: empty file (no rows): regenerate it or leave it out")
        missing = [name for name in expected if name not in columns]
        if missing:
            raise DatasetError(f"{path}: no column{'s' * (len(missing) > 1)} {', '.join(missing)}; {task} reads "
                               f"{', '.join(expected)} (this file has {', '.join(sorted(columns))})")
        for name, expect in expected.items():
            column = columns[name]
            wanted = expect.length if expect.length is not None else lengths.setdefault(name, column.length)
            if column.length != wanted:
                raise DatasetError(f"{path}: column {name} has {column.length} values per row, {task} reads "
                                   f"{wanted}: is this data made for another task, seq_length or file set?")
            if not column.finite:
                raise DatasetError(f"{path}: column {name} holds NaN or infinite values")
            _check_range(path, name, column, expect)


def _check_range(path, name, column, expect):
    for value, outside in ((column.low, expect.low is not None and column.low < expect.low),
                           (column.high, expect.high is not None and column.high > expect.high)):
        if outside:
            shown = int(value) if not column.is_float else value
            raise DatasetError(f"{path}: column {name} holds {shown}, which does not fit {expect.source} "
                               f"(expected {expect.low}..{expect.high})")


def main(argv: list[str]) -> None:
    """Child-process entry: print the JSON summary of one file (`read_summary_in_child`)."""
    dataset_format, path = argv
    try:
        print(_summary_to_json(*read_summary(path, dataset_format)))
    except DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv[1:])
