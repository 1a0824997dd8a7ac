"""scripts/run_classifier.sh, run_ner.sh, run_squad.sh: real background runs on the tiny fixtures."""

import os
import subprocess
import time

import pytest

from tests.test_create_finetune_data import CHINESE, UNCASED
from tests.test_finetune import CHINESE_VOCAB_SIZE, NUM_CLUENER_BIO_TAGS, SEQ, UNCASED_VOCAB_SIZE
from tests.test_finetune import data  # noqa: F401 (module-scoped converted fixtures)

RUN_TIMEOUT_S = 240


def tiny_flags(vocab_size, seq_length):
    return ["--bert_network=tiny", f"--model.vocab_size={vocab_size}", f"--model.seq_length={seq_length}",
            "--train_batch_size=8", "--log_every_steps=1"]


@pytest.mark.parametrize("task, log_name, environment, flags, done", [
    ("classifier", "classifier_log.txt", {"NUM_CLASS": "15", "DATA_DIR": "tnews"},
     tiny_flags(CHINESE_VOCAB_SIZE, SEQ), "acc_num "),
    ("ner", "ner_log.txt", {"NUM_CLASS": str(NUM_CLUENER_BIO_TAGS), "DATA_DIR": "cluener", "USE_CRF": "true",
                            "VOCAB_FILE_PATH": CHINESE},
     tiny_flags(CHINESE_VOCAB_SIZE, SEQ), "F1 "),
    ("squad", "squad_log.txt", {"DATA_DIR": "squad", "VOCAB_FILE_PATH": UNCASED},
     tiny_flags(UNCASED_VOCAB_SIZE, 2 * SEQ) + ["--doc_stride=64", "--max_query_length=24"], '"exact_match"'),
])
def test_script_runs_in_the_background_and_logs(data, tmp_path, task, log_name, environment, flags,  # noqa: F811
                                                 done):
    environment = {**environment, "DATA_DIR": str(data / environment["DATA_DIR"]), "EPOCH_NUM": "1",
                   "OUTPUT_DIR": str(tmp_path / "out")}
    result = subprocess.run(["bash", f"scripts/run_{task}.sh", *flags], capture_output=True, text=True,
                            env={**os.environ, **environment})
    log = tmp_path / "out" / log_name
    assert result.returncode == 0 and f"log: {log}" in result.stdout
    deadline = time.time() + RUN_TIMEOUT_S
    while time.time() < deadline and "results written" not in log.read_text() and "error" not in log.read_text():
        time.sleep(1)
    text = log.read_text()
    assert "results written" in text and done in text, text[-2000:]
    assert "outputs are (" in text and (tmp_path / "out" / f"{task}.ckpt").is_file()
