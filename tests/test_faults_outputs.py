"""Fault injection on output directories (issue 17, cases 7, 10, 12, 18 and killed saves).

Each case runs the real job on a tiny model and tiny data and checks how it
ends: exit status 2, one line naming the culprit, no traceback, the previous
outputs byte-identical, and no temporary file left behind. Read-only and full
filesystems are small tmpfs mounts (tests run as root; skipped where mounting
is not allowed).
"""

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

import pretrain_eval
import run_classifier
import run_ner
import run_pretrain
import run_squad
from src.checkpoint import read_checkpoint
from src.create_finetune_data import main as convert_main
from src.run_directory import LOCK_FILE
from src.training import checkpoint_paths
from tests.test_create_finetune_data import CHINESE, FIXTURES
from tests.test_run_pretrain import data_dir, metrics, tiny_args  # noqa: F401 (data_dir is a fixture)
from tests.helpers import mounted_tmpfs

SEQ = 32
CHINESE_VOCAB_SIZE = 21128
NUM_TNEWS_LABELS = 15
# A run that trains long enough to be caught while it runs.
LONG_RUN_STEPS = 400
WAIT_TIMEOUT_S = 120
# tmpfs sizes: the tiny pretraining checkpoint (embeddings of 30522 tokens and Lamb's two moments) is ~24 MB,
# so this fits one and not a second beside it.
ONE_CHECKPOINT_FS = "36m"
# A process that holds a directory as every job does, for as long as it lives.
HOLDER = ("import sys, time\nfrom src.run_directory import hold_directories\n"
          "with hold_directories([(sys.argv[1], 'output_dir')]):\n    print('held', flush=True)\n    time.sleep(600)\n")


# ---------------------------------------------------------------- helpers

def fails_with(capsys, main, argv, message):
    """Run `main(argv)`: exit 2 and one line on stderr containing `message`, no traceback.
    Returns what it printed (capsys's out and err)."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    printed = capsys.readouterr()
    assert exit_info.value.code == 2, printed.err
    lines = [line for line in printed.err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in printed.err, printed.err
    return printed


def snapshot(directory):
    """{relative path: bytes} of every file under `directory`."""
    files = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, directory)] = f.read()
    return files


def temporary_files(directory):
    return [name for _, _, names in os.walk(directory) for name in names if name.startswith(".tmp-")]


def start_holder(directory):
    """A live process holding `directory` (as a running job does); returns it once it holds it."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(directory)], stdout=subprocess.PIPE, text=True,
                              cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert holder.stdout.readline().strip() == "held"
    return holder


@pytest.fixture(scope="module")
def tnews(tmp_path_factory):
    """TNEWS fixture records, 75% train and 25% dev."""
    root = tmp_path_factory.mktemp("tnews")
    convert_main.__wrapped__(["--task=tnews", f"--input_file={os.path.join(FIXTURES, 'tnews.json')}",
                              f"--vocab_file={CHINESE}", f"--output_dir={root}", "--dev_fraction=0.25",
                              f"--max_seq_length={SEQ}",
                              f"--label_file={os.path.join(FIXTURES, 'tnews_labels.json')}"])
    return root


def classifier_args(tnews, output_dir, *extra):
    return ["--bert_network=tiny", f"--model.vocab_size={CHINESE_VOCAB_SIZE}", f"--model.seq_length={SEQ}",
            f"--output_dir={output_dir}", "--train_batch_size=32", "--eval_batch_size=32", "--epoch_num=1",
            f"--num_class={NUM_TNEWS_LABELS}", "--do_train=true", f"--train_data_file_path={tnews / 'train.tfrecord'}",
            *extra]


# ---------------------------------------------------------------- case 7: one run per directory

def test_every_job_refuses_a_directory_a_live_run_holds(data_dir, tnews, tmp_path, capsys):  # noqa: F811
    """Was: two runs in one output_dir interleaved metrics and collided on checkpoints."""
    held = tmp_path / "held"
    held.mkdir()
    (held / "notes.txt").write_text("a previous file\n")
    before = snapshot(held)
    holder = start_holder(held)
    try:
        expected = f"output_dir {held} is in use by pid {holder.pid}"
        fails_with(capsys, run_pretrain.main, tiny_args(data_dir, held, "--train_steps=1"), expected)
        fails_with(capsys, pretrain_eval.main, tiny_args(data_dir, held, "--load_checkpoint_path=any.ckpt"), expected)
        fails_with(capsys, run_classifier.main, classifier_args(tnews, held), expected)
        label_map = f"--label2id_file_path={tnews / 'label2id.json'}"
        fails_with(capsys, run_ner.main, classifier_args(tnews, held, label_map), expected)
        fails_with(capsys, run_squad.main, ["--do_eval=true", "--eval_data_file_path=x", f"--output_dir={held}",
                                            "--load_finetune_checkpoint_path=x.ckpt"], expected)
        # A model directory is held like the output directory.
        fails_with(capsys, run_classifier.main,
                   classifier_args(tnews, tmp_path / "free", f"--save_finetune_checkpoint_path={held}"),
                   f"save_finetune_checkpoint_path {held} is in use by pid {holder.pid}")
    finally:
        holder.kill()
        holder.wait()
    assert set(snapshot(held)) == set(before) | {LOCK_FILE}  # the killed holder's lock file stays
    assert {name: data for name, data in snapshot(held).items() if name != LOCK_FILE} == before


def test_a_live_run_refuses_a_second_and_a_killed_ones_lock_and_temporaries_are_taken_over(  # noqa: F811
        data_dir, tmp_path, capsys):
    """The real thing: run_pretrain in another process; a second run in its directory is refused naming it;
    once it is killed (mid-save or not), the next run resumes there, taking over its lock and removing its
    temporary files (here also a planted 8 MB `.tmp-*` file of a killed save)."""
    output = tmp_path / "run"
    args = tiny_args(data_dir, output, f"--train_steps={LONG_RUN_STEPS}", "--save_checkpoint_steps=1",
                     "--save_checkpoint_num=1", "--log_every_steps=1")
    first = subprocess.Popen([sys.executable, run_pretrain.__file__, *args], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + WAIT_TIMEOUT_S
        while time.time() < deadline and not checkpoint_paths(str(output / "checkpoints")):
            time.sleep(0.05)
        fails_with(capsys, run_pretrain.main, args, f"output_dir {output} is in use by pid {first.pid}")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    killed_save = output / "checkpoints" / ".tmp-killed.tmp"
    killed_save.write_bytes(os.urandom(8 << 20))
    newest = checkpoint_paths(str(output / "checkpoints"))[-1]
    resumed_to = int(newest.rsplit("_", 1)[1].split(".")[0]) + 1
    run_pretrain.main(tiny_args(data_dir, output, f"--train_steps={resumed_to}", "--save_checkpoint_steps=1",
                                "--save_checkpoint_num=1", f"--load_checkpoint_path={newest}"))
    err = capsys.readouterr().err
    assert f"taking over {output / LOCK_FILE} from pid {first.pid}" in err
    assert "temporary file(s) of an interrupted run" in err and "Traceback" not in err
    assert not temporary_files(output) and not (output / LOCK_FILE).exists()
    assert metrics(output)[-1]["step"] == resumed_to


# ---------------------------------------------------------------- case 12: nothing replaced silently

def test_a_fresh_run_keeps_a_previous_runs_metrics_which_a_resume_continues_past_a_torn_line(  # noqa: F811
        data_dir, tmp_path, capsys):
    """Was: a fresh run without checkpoints silently replaced metrics.jsonl and loss.png; and a crash while
    a record was appended left a torn line on which the resume died with a JSONDecodeError."""
    saving = ("--save_checkpoint_steps=1", "--save_checkpoint_num=2")
    run_pretrain.main(tiny_args(data_dir, tmp_path, "--train_steps=2", *saving))
    before = snapshot(tmp_path)
    assert {"metrics.jsonl", "loss.png"} <= set(before)
    fails_with(capsys, run_pretrain.main, tiny_args(data_dir, tmp_path, "--train_steps=2", "--enable_save_ckpt=false"),
               f"output_dir {tmp_path} holds metrics.jsonl of a previous run; resume it with --load_checkpoint_path, "
               "set --overwrite true to replace it")
    assert snapshot(tmp_path) == before

    with open(tmp_path / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write('{"step": 3, "loss": 7.')
    run_pretrain.main(tiny_args(data_dir, tmp_path, "--train_steps=3", *saving,
                                f"--load_checkpoint_path={tmp_path / 'checkpoints' / 'checkpoint_bert_step_2.ckpt'}"))
    assert "dropping its torn last line" in capsys.readouterr().out
    assert [record["step"] for record in metrics(tmp_path)] == [1, 2, 3]


def test_pretrain_eval_replaces_previous_results_only_with_overwrite(data_dir, tmp_path, capsys):  # noqa: F811
    results = tmp_path / "eval_results.json"
    results.write_text('{"earlier": "results"}\n')
    args = tiny_args(data_dir, tmp_path, "--load_checkpoint_path=missing.ckpt")
    fails_with(capsys, pretrain_eval.main, args,
               f"output_dir {tmp_path} holds eval_results.json of a previous run; set --overwrite true")
    # With overwrite the run starts (and here fails on its checkpoint): a failed run leaves the results as they were.
    printed = fails_with(capsys, pretrain_eval.main, args + ["--overwrite=true"],
                         "missing.ckpt: no such checkpoint file")
    assert f"note: overwrite: replacing {results} of a previous run" in printed.out
    assert results.read_text() == '{"earlier": "results"}\n' and not temporary_files(tmp_path)


def test_a_fine_tuning_run_does_not_replace_a_previous_model(tnews, tmp_path, capsys):
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    (model_dir / "classifier.ckpt").write_bytes(b"a previous model")
    fails_with(capsys, run_classifier.main,
               classifier_args(tnews, tmp_path / "run", f"--save_finetune_checkpoint_path={model_dir}"),
               f"save_finetune_checkpoint_path {model_dir} holds classifier.ckpt of a previous run; set --overwrite "
               "true to replace it")
    assert (model_dir / "classifier.ckpt").read_bytes() == b"a previous model"
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


# ---------------------------------------------------------------- cases 10 and 18: unwritable outputs, full disk

def test_an_unwritable_model_directory_is_found_before_training(tnews, tmp_path, capsys):
    """Was (case 10): found only after training, when the fine-tuned model was lost."""
    with mounted_tmpfs(tmp_path / "read_only", "size=1m,ro") as read_only:
        fails_with(capsys, run_classifier.main,
                   classifier_args(tnews, tmp_path / "run", f"--save_finetune_checkpoint_path={read_only}"),
                   f"save_finetune_checkpoint_path {read_only}: not writable (Read-only file system)")
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # no step was taken
    assert not temporary_files(tmp_path / "run")


def test_an_output_path_that_is_a_file_or_lies_under_one(data_dir, tnews, tmp_path, capsys):  # noqa: F811
    """Was (case 18): FileExistsError / NotADirectoryError tracebacks, pretrain_eval's after all its work."""
    blocker = tmp_path / "a_file"
    blocker.write_text("keep me\n")
    fails_with(capsys, run_pretrain.main, tiny_args(data_dir, blocker, "--train_steps=1"),
               f"output_dir {blocker}: is a file; expected a directory")
    fails_with(capsys, pretrain_eval.main, tiny_args(data_dir, blocker / "eval", "--load_checkpoint_path=x.ckpt"),
               f"output_dir {blocker / 'eval'}: lies under {blocker}, which is a file; expected a directory")
    fails_with(capsys, run_classifier.main, classifier_args(tnews, blocker / "run"),
               f"output_dir {blocker / 'run'}: lies under {blocker}, which is a file")
    fails_with(capsys, run_pretrain.main,
               tiny_args(data_dir, tmp_path / "run", f"--save_checkpoint_path={blocker / 'ckpt'}"),
               f"save_checkpoint_path {blocker / 'ckpt'}: lies under {blocker}, which is a file")
    assert blocker.read_text() == "keep me\n" and not (tmp_path / "run" / "metrics.jsonl").exists()


def test_a_read_only_output_dir_is_refused_before_the_work(data_dir, tmp_path, capsys):  # noqa: F811
    """Was (case 18): pretrain_eval evaluated everything, then died with a PermissionError traceback."""
    with mounted_tmpfs(tmp_path / "read_only", "size=1m,ro") as read_only:
        for main, extra in ((run_pretrain.main, ()), (pretrain_eval.main, ("--load_checkpoint_path=x.ckpt",))):
            fails_with(capsys, main, tiny_args(data_dir, read_only, *extra),
                       f"output_dir {read_only}: not writable (Read-only file system)")


def test_a_full_disk_during_a_save_is_one_line_and_keeps_the_previous_checkpoint(  # noqa: F811
        data_dir, tmp_path, capsys):
    """Was (case 18): an OSError traceback, and MindSpore's half-written `.tmp` file left beside the checkpoint."""
    with mounted_tmpfs(tmp_path / f"small-{uuid.uuid4().hex[:6]}", f"size={ONE_CHECKPOINT_FS}") as small:
        fails_with(capsys, run_pretrain.main,
                   tiny_args(data_dir, tmp_path / "run", "--train_steps=2", "--save_checkpoint_steps=1",
                             "--save_checkpoint_num=1", f"--save_checkpoint_path={small}"),
                   f"{small / 'checkpoint_bert_step_2.ckpt'}: cannot write (No space left on device)")
        assert [os.path.basename(path) for path in checkpoint_paths(str(small))] == ["checkpoint_bert_step_1.ckpt"]
        assert not temporary_files(small) and not (small / LOCK_FILE).exists()
        assert read_checkpoint(str(small / "checkpoint_bert_step_1.ckpt"))["trained_steps"].asnumpy() == 1
