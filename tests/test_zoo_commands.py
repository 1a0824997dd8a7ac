"""The model zoo's command lines of README.md ("Coming from the model zoo"), each run as written on CPU.

The test reads the README block, so a line added there without a way to run
it here fails. Each line runs with its `/path/...` placeholders replaced by
tiny data made here and, where it trains, flags appended that make it a tiny
CPU run (the last of repeated flags wins, so the zoo's own flags stay in the
command). The Ascend rank-table launch is a dry run; the zoo's 8-GPU launch
runs one worker.
"""

import os
import re
import shlex
import subprocess
import sys

import pytest

from tests.test_ascend_launcher import SERVERS, rank_table, write_table
from tests.test_distributed import free_port, wait_for
from tests.test_finetune import CHINESE, FIXTURES, NUM_TNEWS_LABELS, SEQ as TNEWS_SEQ
from tests.test_run_pretrain import SEQ, VOCAB, data_dir  # noqa: F401 (module-scoped data fixture)
from src.create_finetune_data import main as convert_main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README_MARKER = "<!-- zoo-commands:"
RUN_TIMEOUT_S = 240
# What makes a pretraining command a tiny CPU run of two steps.
TINY_PRETRAINING = ("--device_target=CPU", "--bert_network=tiny", f"--model.vocab_size={VOCAB}",
                    f"--model.seq_length={SEQ}", "--batch_size=8", "--train_steps=2", "--Lamb.warmup_steps=1",
                    "--log_every_steps=1", "--data_sink_steps=1")


def readme_commands():
    """The lines of the README's zoo-command block."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        text = f.read()
    block = re.search(re.escape(README_MARKER) + r".*?\n```bash\n(.*?)\n```", text, re.S)
    assert block, "README.md has no zoo-commands block"
    return block[1].splitlines()


COMMANDS = readme_commands()


def command(prefix):
    """The README line that starts with `prefix` (exactly one)."""
    lines = [line for line in COMMANDS if line.startswith(prefix)]
    assert len(lines) == 1, (prefix, lines)
    return lines[0]


@pytest.fixture(scope="module")
def tnews(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo_tnews")
    convert_main.__wrapped__(["--task=tnews", f"--input_file={os.path.join(FIXTURES, 'tnews.json')}",
                              f"--vocab_file={CHINESE}", f"--output_dir={root}", "--dev_fraction=0.25",
                              f"--label_file={os.path.join(FIXTURES, 'tnews_labels.json')}",
                              f"--max_seq_length={TNEWS_SEQ}"])
    return root


def shell(line, cwd, env=None, extra=()):
    """Run a README line in bash from `cwd`, the repository's scripts and Python named absolutely."""
    line = re.sub(r"(^|\s)scripts/", rf"\1{REPO}/scripts/", line)
    line = re.sub(r"^cd scripts ", f"cd {REPO}/scripts ", line)
    line = re.sub(r"^python (\S+\.py)", rf"{sys.executable} {REPO}/\1", line)
    line = " ".join([line, *map(shlex.quote, extra)])
    return subprocess.run(["bash", "-c", line], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=RUN_TIMEOUT_S)


def test_every_readme_line_is_run_here():
    runs = ("bash scripts/run_standalone_pretrain_ascend.sh", "bash scripts/run_distributed_pretrain_ascend.sh",
            "cd scripts && bash run_standalone_pretrain_for_gpu.sh", "bash scripts/run_distributed_pretrain_for_gpu.sh",
            "bash scripts/run_classifier.sh", "bash scripts/run_ner.sh", "bash scripts/run_squad.sh",
            "python run_pretrain.py", "python run_classifier.py", "python export.py")
    assert sorted(COMMANDS) == sorted(command(prefix) for prefix in runs)


@pytest.mark.parametrize("prefix", ["bash scripts/run_standalone_pretrain_ascend.sh",
                                    "cd scripts && bash run_standalone_pretrain_for_gpu.sh"])
def test_standalone_pretraining_scripts(prefix, data_dir, tmp_path):  # noqa: F811
    line = command(prefix).replace("/path/cn-wiki-128", data_dir)
    result = shell(line, tmp_path, {"RUN_DIR": str(tmp_path / "run")}, TINY_PRETRAINING)
    assert result.returncode == 0 and "started in the background" in result.stdout, result.stderr
    text = wait_for(tmp_path / "run" / "pretraining_log.txt", r"finished at step \d+|Traceback|error: ",
                    RUN_TIMEOUT_S)
    assert "finished at step 2" in text, text[-2000:]
    assert (tmp_path / "run" / "checkpoints" / "checkpoint_bert_step_2.ckpt").exists()


def test_distributed_gpu_script_with_one_worker(data_dir, tmp_path):  # noqa: F811
    line = command("bash scripts/run_distributed_pretrain_for_gpu.sh").replace(" 8 40 ", " 1 1 ")
    line = line.replace("/path/cn-wiki-128", data_dir)
    result = shell(line, tmp_path, {"RUN_DIR": str(tmp_path / "run"), "MASTER_PORT": str(free_port())},
                   TINY_PRETRAINING)
    assert result.returncode == 0, result.stderr
    text = wait_for(tmp_path / "run" / "logs" / "worker_0.log", r"finished at step \d+|Traceback|error: ",
                    RUN_TIMEOUT_S)
    assert "finished at step 2" in text, text[-2000:]


def test_ascend_rank_table_launch_as_a_dry_run(data_dir, tmp_path):  # noqa: F811
    table = write_table(tmp_path, rank_table(SERVERS[:1], devices=2))
    line = command("bash scripts/run_distributed_pretrain_ascend.sh")
    line = line.replace("/path/cn-wiki-128", data_dir).replace("/path/hccl.json", str(table))
    result = shell(line, tmp_path, extra=("--dry_run=true", f"--server_id={SERVERS[0]}", "--bind_cores=false"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("run_pretrain.py --distribute=true --device_target=Ascend") == 2
    assert "# rank 1: device Ascend:1, rank 1 of 2, compute_type float16, overflow check amp.all_finite" \
        in result.stdout


@pytest.mark.parametrize("task", ["classifier", "ner", "squad"])
def test_finetuning_scripts_say_what_to_set(task, tmp_path):
    environment = {name: value for name, value in os.environ.items() if name != "DATA_DIR"}
    line = command(f"bash scripts/run_{task}.sh")
    result = subprocess.run(["bash", "-c", line.replace("scripts/", f"{REPO}/scripts/")], capture_output=True,
                            text=True, cwd=tmp_path, env={**environment, "OUTPUT_DIR": str(tmp_path / "out")})
    assert result.returncode == 2 and result.stderr.startswith("error: set DATA_DIR")


def test_usage_lines_pretrain_then_finetune_then_export(data_dir, tnews, tmp_path):  # noqa: F811
    """The zoo's usage lines in its space-separated form, chained: the pretraining checkpoint initialises
    the classifier, whose fine-tuned model is exported."""
    pretrain = command("python run_pretrain.py").replace("/path/cn-wiki-128", data_dir)
    result = shell(pretrain, tmp_path, extra=(*TINY_PRETRAINING, f"--output_dir={tmp_path / 'pretrain'}"))
    assert result.returncode == 0, result.stderr[-2000:]
    checkpoint = tmp_path / "ckpt" / "checkpoint_bert_step_2.ckpt"
    assert checkpoint.exists()

    classify = command("python run_classifier.py").replace("/path/bert.ckpt", str(checkpoint))
    classify = classify.replace("/path/tnews", str(tnews))
    result = shell(classify, tmp_path, extra=(
        "--bert_network=tiny", f"--model.vocab_size={VOCAB}", f"--model.seq_length={TNEWS_SEQ}", "--epoch_num=1",
        f"--num_class={NUM_TNEWS_LABELS}", "--train_batch_size=8", f"--output_dir={tmp_path / 'classifier'}"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "classifier" / "eval_results.json").exists()

    export = command("python export.py").replace("/path/classifier", str(tmp_path / "classifier" / "classifier"))
    result = shell(export, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "bert_classifier.mindir").exists()
