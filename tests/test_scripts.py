"""The launch scripts: argument checks under the project's and the model zoo's names, from any working
directory, and a real background run on CPU."""

import os
import subprocess
import time

import pytest

from tests.test_run_pretrain import SEQ, VOCAB, data_dir  # noqa: F401 (module-scoped data fixture)

SCRIPT = "scripts/run_standalone_pretrain_cpu.sh"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FINETUNE_TASKS = ("classifier", "ner", "squad")
RUN_TIMEOUT_S = 180


def run_script(*args, env=None):
    return subprocess.run(["bash", SCRIPT, *map(str, args)], capture_output=True, text=True, env=env)


@pytest.mark.parametrize("args, message", [
    ((), "usage: bash scripts/run_standalone_pretrain_cpu.sh DEVICE_ID EPOCH_SIZE DATA_DIR"),
    (("x", 1, "/tmp"), "DEVICE_ID must be a non-negative integer, got 'x'"),
    ((0, 0, "/tmp"), "EPOCH_SIZE must be a positive integer, got '0'"),
    ((0, 1, "/no/such/dir"), "DATA_DIR '/no/such/dir' is not a directory"),
    ((0, 1, "/tmp", "/no/schema.json"), "SCHEMA_DIR '/no/schema.json' is not a file"),
])
def test_bad_arguments_print_usage(args, message):
    result = run_script(*args)
    assert result.returncode == 2
    assert message in result.stderr and "usage:" in result.stderr


def test_background_run_writes_its_log_and_checkpoint(data_dir, tmp_path):  # noqa: F811
    run_dir = tmp_path / "run"
    result = run_script(0, 1, data_dir, f"{data_dir}/schema.json", "--bert_network=tiny",
                        f"--model.vocab_size={VOCAB}", f"--model.seq_length={SEQ}", "--batch_size=8",
                        "--train_steps=3", "--Lamb.warmup_steps=1", env={**os.environ, "RUN_DIR": str(run_dir)})
    assert result.returncode == 0 and f"log: {run_dir}/pretraining_log.txt" in result.stdout
    log = run_dir / "pretraining_log.txt"
    deadline = time.time() + RUN_TIMEOUT_S
    while time.time() < deadline and "finished at step" not in log.read_text():
        time.sleep(1)
    text = log.read_text()
    assert "finished at step 3" in text, text[-2000:]
    assert "epoch: 0, current epoch percent:" in text and "outputs are (" in text
    assert (run_dir / "checkpoints" / "checkpoint_bert_step_3.ckpt").exists()
    assert (run_dir / "loss.png").exists()


@pytest.mark.parametrize("name, usage", [
    ("run_standalone_pretrain_for_gpu.sh", "DEVICE_ID EPOCH_SIZE DATA_DIR [SCHEMA_DIR]"),
    ("run_distributed_pretrain_for_gpu.sh", "WORKER_NUM EPOCH_SIZE DATA_DIR [SCHEMA_DIR]"),
    ("run_standalone_pretrain_ascend.sh", "DEVICE_ID EPOCH_SIZE DATA_DIR [SCHEMA_DIR]"),
])
def test_zoo_script_names_run_from_inside_scripts(name, usage):
    """The zoo's README runs `bash run_standalone_pretrain_for_gpu.sh 0 1 DIR` from scripts/: the usage
    line names the script as it was called, and the checks run (here: a missing DATA_DIR)."""
    scripts = os.path.join(REPO, "scripts")
    result = subprocess.run(["bash", name], capture_output=True, text=True, cwd=scripts)
    assert result.returncode == 2 and result.stderr.startswith(f"usage: bash {name} {usage}")
    result = subprocess.run(["bash", name, "1", "1", "/no/such/dir"], capture_output=True, text=True, cwd=scripts)
    assert result.returncode == 2 and "error: DATA_DIR '/no/such/dir' is not a directory" in result.stderr


@pytest.mark.parametrize("task", FINETUNE_TASKS)
def test_finetune_script_without_data_says_what_to_set(task, tmp_path):
    environment = {name: value for name, value in os.environ.items() if name != "DATA_DIR"}
    result = subprocess.run(["bash", os.path.join(REPO, "scripts", f"run_{task}.sh")], capture_output=True,
                            text=True, cwd=tmp_path, env={**environment, "OUTPUT_DIR": str(tmp_path / "out")})
    assert result.returncode == 2 and result.stderr == (
        f"error: set DATA_DIR (the directory python -m src.create_finetune_data wrote) in "
        f"{os.path.join(REPO, 'scripts', f'run_{task}.sh')} or the environment\n")
    assert not (tmp_path / "out").exists()


def test_finetune_script_takes_the_zoos_device_id_argument(tmp_path):
    """`bash scripts/run_classifier.sh 3`: a stand-in interpreter records the flags the job would get."""
    stand_in = tmp_path / "python"
    stand_in.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    stand_in.chmod(0o755)
    environment = {**os.environ, "PYTHON": str(stand_in), "DATA_DIR": str(tmp_path),
                   "OUTPUT_DIR": str(tmp_path / "out")}
    result = subprocess.run(["bash", "scripts/run_classifier.sh", "3", "--num_class=2"], capture_output=True,
                            text=True, cwd=REPO, env=environment)
    assert result.returncode == 0, result.stderr
    log = tmp_path / "out" / "classifier_log.txt"
    deadline = time.time() + RUN_TIMEOUT_S
    while time.time() < deadline and "--output_dir" not in (log.read_text() if log.exists() else ""):
        time.sleep(0.1)
    flags = log.read_text().split()
    assert flags[0] == os.path.join(REPO, "run_classifier.py") and "--device_id=3" in flags
    assert flags[-1] == "--num_class=2" and f"--train_data_file_path={tmp_path}/train.tfrecord" in flags
    result = subprocess.run(["bash", "scripts/run_classifier.sh", "x"], capture_output=True, text=True, cwd=REPO,
                            env=environment)
    assert result.returncode == 2 and result.stderr == "error: DEVICE_ID must be a non-negative integer, got 'x'\n"
