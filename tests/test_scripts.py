"""The standalone pretraining scripts: argument checks, and a real background run on CPU."""

import os
import subprocess
import time

import pytest

from tests.test_run_pretrain import SEQ, VOCAB, data_dir  # noqa: F401 (module-scoped data fixture)

SCRIPT = "scripts/run_standalone_pretrain_cpu.sh"
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
