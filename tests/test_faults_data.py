"""Fault injection (issue 17, cases 1, 11, 22) on the data-making commands, run in-process on tiny data.

Each failure must end with one line naming the flag or file, exit status 2, no traceback, the previous
outputs byte-identical, and no staging or partial file left behind (src/staging.py).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from src import create_finetune_data, create_pretraining_data, staging
from src.dataset import create_bert_dataset
from src.errors import UserError
from tests.helpers import mounted_tmpfs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO, "tests", "data", "finetune")
TNEWS = os.path.join(FIXTURES, "tnews.json")
TNEWS_LABELS = os.path.join(FIXTURES, "tnews_labels.json")
CHINESE = os.path.join(REPO, "data", "vocab", "bert-base-chinese-vocab.txt")
UNCASED = os.path.join(REPO, "data", "vocab", "bert-base-uncased-vocab.txt")
SMALL_RECORDS = 12          # the previous good run's TNEWS records (small enough for the tiny filesystem)
CORPUS = "the quick brown fox jumps over the lazy dog.\nit was not amused.\n\nan other document.\nwith lines.\n"
PRETRAIN_FLAGS = [f"--vocab_file={UNCASED}", "--max_seq_length=16", "--max_predictions_per_seq=3",
                  "--dupe_factor=2"]
# A tmpfs this small holds one small run's outputs but not a second, larger run.
SMALL_FILESYSTEM = "96k"


# ---------------------------------------------------------------- helpers

def run(main, argv, capsys):
    """(exit status, stderr) of a command's wrapped `main` run in-process."""
    try:
        main(argv)
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code
    return code, capsys.readouterr().err


def assert_one_error_line(code, stderr, *culprits):
    """Exit 2, exactly one `error:` line, naming every culprit, and no traceback."""
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1, stderr
    assert all(culprit in errors[0] for culprit in culprits), errors[0]
    assert "Traceback" not in stderr


def snapshot(directory):
    """{relative path: bytes} of every file (hidden ones too) and every directory (None) under `directory`."""
    found = {}
    for root, directories, files in os.walk(directory):
        for name in directories:
            found[os.path.relpath(os.path.join(root, name), directory)] = None
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                found[os.path.relpath(os.path.join(root, name), directory)] = f.read()
    return found


def finetune_argv(output_dir, input_file=TNEWS, *extra):
    return ["--task=tnews", f"--input_file={input_file}", f"--output_dir={output_dir}", f"--vocab_file={CHINESE}",
            f"--label_file={TNEWS_LABELS}", "--max_seq_length=32", *extra]


def pretrain_argv(output_dir, corpus, *extra):
    return [f"--input_file={corpus}", f"--output_dir={output_dir}", *PRETRAIN_FLAGS, *extra]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A small TNEWS file, a label file lacking every label but the first, and a pretraining corpus."""
    root = tmp_path_factory.mktemp("inputs")
    with open(TNEWS, encoding="utf-8") as f:
        (root / "tnews_small.json").write_text("".join(f.readlines()[:SMALL_RECORDS]), encoding="utf-8")
    with open(TNEWS_LABELS, encoding="utf-8") as f:
        (root / "one_label.json").write_text(f.readline(), encoding="utf-8")
    (root / "corpus.txt").write_text(CORPUS, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def previous_runs(inputs, tmp_path_factory):
    """Good outputs of an earlier run of each command, to copy into a test's output directory."""
    root = tmp_path_factory.mktemp("previous")
    create_finetune_data.main(finetune_argv(root / "finetune", inputs / "tnews_small.json"))
    create_pretraining_data.main(pretrain_argv(root / "pretrain", inputs / "corpus.txt", "--num_output_shards=2"))
    return root


def previous_outputs(previous_runs, command, destination):
    shutil.copytree(previous_runs / command, destination, dirs_exist_ok=True)
    return snapshot(destination)


# ---------------------------------------------------------------- case 1: whole or nothing

def test_failed_conversion_leaves_the_previous_outputs_byte_identical(inputs, previous_runs, tmp_path, capsys):
    before = previous_outputs(previous_runs, "finetune", tmp_path / "out")
    code, stderr = run(create_finetune_data.main,
                       finetune_argv(tmp_path / "out", TNEWS, f"--label_file={inputs / 'one_label.json'}"), capsys)
    assert_one_error_line(code, stderr, f"{TNEWS}:", "is not in the label map")
    assert snapshot(tmp_path / "out") == before


def test_failed_conversion_into_a_new_directory_leaves_nothing(inputs, tmp_path, capsys):
    code, stderr = run(create_finetune_data.main,
                       finetune_argv(tmp_path / "new" / "out", TNEWS, f"--label_file={inputs / 'one_label.json'}"),
                       capsys)
    assert_one_error_line(code, stderr, f"{TNEWS}:", "is not in the label map")
    assert os.listdir(tmp_path) == []  # new/ and new/out/ were made by the run and removed again


@pytest.mark.parametrize("flags, culprit", [(["--doc_stride=0"], "--doc_stride must be positive, got 0"),
                                            (["--max_seq_length=40", "--max_query_length=40"],
                                             "--max_seq_length (40) must exceed --max_query_length (40) + 3")])
def test_impossible_squad_windows_are_one_line(flags, culprit, tmp_path, capsys):
    code, stderr = run(create_finetune_data.main,
                       ["--task=squad", f"--input_file={os.path.join(FIXTURES, 'squad.json')}",
                        f"--vocab_file={UNCASED}", f"--output_dir={tmp_path / 'out'}", *flags], capsys)
    assert_one_error_line(code, stderr, culprit)
    assert os.listdir(tmp_path) == []  # the run's new directory is removed again


def test_empty_split_is_refused(previous_runs, tmp_path, capsys):
    before = previous_outputs(previous_runs, "finetune", tmp_path / "out")
    code, stderr = run(create_finetune_data.main, finetune_argv(tmp_path / "out", TNEWS, "--dev_fraction=0.001"),
                       capsys)
    assert_one_error_line(code, stderr, "--dev_fraction 0.001", "dev split empty")
    assert snapshot(tmp_path / "out") == before


# ---------------------------------------------------------------- before any work: paths

def test_an_input_the_run_would_replace_is_refused(inputs, previous_runs, tmp_path, capsys):
    before = previous_outputs(previous_runs, "finetune", tmp_path / "out")
    shutil.copy(TNEWS, tmp_path / "out" / "train.json")  # --dev_fraction writes train.json there
    before["train.json"] = (tmp_path / "out" / "train.json").read_bytes()
    code, stderr = run(create_finetune_data.main,
                       finetune_argv(tmp_path / "out", tmp_path / "out" / "train.json", "--dev_fraction=0.25"), capsys)
    assert_one_error_line(code, stderr, "--input_file", "train.json in --output_dir")
    assert snapshot(tmp_path / "out") == before

    pretrain_before = previous_outputs(previous_runs, "pretrain", tmp_path / "shards")
    shutil.copy(inputs / "corpus.txt", tmp_path / "shards" / "stats.json")
    pretrain_before["stats.json"] = (tmp_path / "shards" / "stats.json").read_bytes()
    code, stderr = run(create_pretraining_data.main,
                       pretrain_argv(tmp_path / "shards", tmp_path / "shards" / "stats.json", "--overwrite=true"),
                       capsys)
    assert_one_error_line(code, stderr, "--input_file", "stats.json in --output_dir")
    assert snapshot(tmp_path / "shards") == pretrain_before


def no_work(*args):
    raise AssertionError("the work started before the output path was checked")


COMMANDS = {  # command -> (main, argv for an output directory, the function that does the work)
    "finetune": (create_finetune_data, lambda inputs, out: finetune_argv(out, inputs / "tnews_small.json"),
                 "convert_labelled_task"),
    "pretrain": (create_pretraining_data, lambda inputs, out: pretrain_argv(out, inputs / "corpus.txt"),
                 "create_all_instances"),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("layout, expected", [("file", "is a file; expected a directory"),
                                              ("under_file", "which is a file; expected a directory")])
def test_an_output_path_blocked_by_a_file_is_refused_before_any_work(command, layout, expected, inputs, tmp_path,
                                                                     capsys, monkeypatch):
    module, argv, work = COMMANDS[command]
    monkeypatch.setattr(module, work, no_work)
    (tmp_path / "blocker").write_text("a file, not a directory\n")
    output = tmp_path / "blocker" if layout == "file" else tmp_path / "blocker" / "sub" / "out"
    code, stderr = run(module.main, argv(inputs, output), capsys)
    assert_one_error_line(code, stderr, f"--output_dir {output}", expected)
    assert sorted(os.listdir(tmp_path)) == ["blocker"]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_read_only_output_directory_is_refused_before_any_work(command, inputs, tmp_path, capsys, monkeypatch):
    module, argv, work = COMMANDS[command]
    monkeypatch.setattr(module, work, no_work)
    with mounted_tmpfs(tmp_path / "ro", "size=64k,ro") as read_only:  # root ignores mode bits: mount it read-only
        code, stderr = run(module.main, argv(inputs, read_only / "out"), capsys)
        assert_one_error_line(code, stderr, f"--output_dir {read_only / 'out'}", "Read-only file system")


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_full_disk_ends_in_one_line_and_keeps_the_previous_outputs(command, inputs, previous_runs, tmp_path,
                                                                     capsys):
    bigger_runs = {
        "finetune": lambda out: finetune_argv(out, TNEWS, "--max_seq_length=128", "--dev_fraction=0.25"),
        "pretrain": lambda out: pretrain_argv(out, inputs / "corpus.txt", "--dupe_factor=200", "--overwrite=true")}
    module = COMMANDS[command][0]
    with mounted_tmpfs(tmp_path / "disk", f"size={SMALL_FILESYSTEM}") as disk:
        before = previous_outputs(previous_runs, command, disk / "out")
        code, stderr = run(module.main, bigger_runs[command](disk / "out"), capsys)
        assert_one_error_line(code, stderr, f"--output_dir {disk / 'out'}", "No space left on device")
        assert snapshot(disk / "out") == before


# ---------------------------------------------------------------- case 11: no empty shards

def test_fewer_instances_than_shards_gives_one_shard_per_instance(inputs, tmp_path, capsys):
    code, stderr = run(create_pretraining_data.main,
                       pretrain_argv(tmp_path / "out", inputs / "corpus.txt", "--num_output_shards=50"), capsys)
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    shards = sorted(name for name in os.listdir(tmp_path / "out") if name.startswith("part-"))
    assert code == 0 and stats["instances"] < 50 and "instead of --num_output_shards=50" in stderr
    assert shards == [f"part-{index:05d}-of-{stats['instances']:05d}.tfrecord"
                      for index in range(stats["instances"])]
    assert all(os.path.getsize(tmp_path / "out" / name) > 0 for name in shards)
    assert stats["shards"] == stats["instances"]


def test_overwriting_with_another_shard_count_replaces_every_old_shard(inputs, previous_runs, tmp_path, capsys):
    previous_outputs(previous_runs, "pretrain", tmp_path / "out")
    code, _ = run(create_pretraining_data.main,
                  pretrain_argv(tmp_path / "out", inputs / "corpus.txt", "--num_output_shards=3", "--overwrite=true"),
                  capsys)
    assert code == 0
    assert sorted(os.listdir(tmp_path / "out")) == [f"part-{index:05d}-of-00003.tfrecord" for index in range(3)] + [
        "schema.json", "stats.json"]


def test_the_loader_refuses_an_empty_shard_naming_it(previous_runs, tmp_path):
    previous_outputs(previous_runs, "pretrain", tmp_path / "out")
    empty = tmp_path / "out" / "part-00002-of-00003.tfrecord"
    empty.write_bytes(b"")
    with pytest.raises(UserError) as error:
        create_bert_dataset(data_dir=str(tmp_path / "out"), batch_size=1, do_shuffle=False)
    assert str(error.value).startswith(f"{empty}: empty file") and "\n" not in str(error.value)


# ---------------------------------------------------------------- case 22: what dead runs leave

def dead_pid():
    """The pid of a process that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_staging_of_dead_runs_is_removed_and_nothing_else(previous_runs, tmp_path, capsys):
    host = socket.gethostname()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        out = tmp_path / "out"
        previous_outputs(previous_runs, "finetune", out)
        dead = f".tmp-{host}@{dead_pid()}-"
        (out / f"{dead}abc12345").mkdir()
        (out / f"{dead}abc12345" / "train.tfrecord").write_bytes(b"half a file")
        (out / f"{dead}xyz98765.ckpt").write_bytes(b"half a checkpoint")
        kept = [f".tmp-{host}@{live.pid}-live1234", f".tmp-other-host@{dead_pid()}-elsewhere", ".tmp-noowner"]
        for name in kept:
            (out / name).mkdir()
        code, stderr = run(create_finetune_data.main, finetune_argv(out, TNEWS), capsys)
        assert code == 0 and "removed 2 staging entries of dead runs" in stderr
        assert sorted(name for name in os.listdir(out) if name.startswith(".")) == sorted(kept)
    finally:
        live.kill()
        live.wait()


def test_is_stale_only_for_dead_processes_of_this_host():
    host = socket.gethostname()
    assert staging.is_stale(f".tmp-{host}@{dead_pid()}-abcdefgh")
    assert not staging.is_stale(f".tmp-{host}@{os.getpid()}-abcdefgh")       # this very process
    assert not staging.is_stale(f".tmp-{host}@1-abcdefgh")                    # alive (init)
    assert not staging.is_stale(f".tmp-{host}x@{dead_pid()}-abcdefgh")       # another host
    assert not staging.is_stale(".tmp-abcdefgh.ckpt")                          # no owner recorded
    assert staging.staging_prefix() == f".tmp-{host}@{os.getpid()}-"


def test_a_killed_generator_leaves_staging_that_the_next_run_removes(inputs, tmp_path, capsys):
    out = tmp_path / "out"
    fifo = tmp_path / "corpus.fifo"
    os.mkfifo(fifo)  # the generator blocks reading it, with its staging directory already made
    killed = subprocess.Popen([sys.executable, "-m", "src.create_pretraining_data", *pretrain_argv(out, fifo)],
                              cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not (out.is_dir() and os.listdir(out)) and time.time() < deadline:
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    leftovers = os.listdir(out)
    assert len(leftovers) == 1 and leftovers[0].startswith(f".tmp-{socket.gethostname()}@{killed.pid}-")

    code, stderr = run(create_pretraining_data.main, pretrain_argv(out, inputs / "corpus.txt"), capsys)
    assert code == 0 and leftovers[0] in stderr
    assert sorted(os.listdir(out)) == ["part-00000-of-00001.tfrecord", "schema.json", "stats.json"]
