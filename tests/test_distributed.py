"""Two msrun workers on CPU train exactly like one process on the same global batch; each server's first
worker saves checkpoints into that server's directory and resumes from them; the local rank per launcher."""

import os
import re
import socket
import subprocess
import time

import mindspore as ms
import numpy as np
import pytest
import tensorflow as tf

import run_pretrain
from src.config import ConfigError
from src.device import DeviceError, node_local_rank

SEQ, PREDICTIONS, VOCAB, ROWS_PER_FILE = 16, 3, 50, 16
RUN_TIMEOUT_S = 300
# When a worker dies, msrun's scheduler notices the lost heartbeat and stops the
# others: 35 s measured; this is the bound the README states.
DEAD_WORKER_BOUND_S = 90
SCRIPT = "scripts/run_distributed_pretrain_cpu.sh"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_pretraining_file(path, seed):
    """Rows with exactly PREDICTIONS masked positions each (all weights 1), so that every
    device's masked-LM mean has the same denominator as the single process's."""
    rng = np.random.RandomState(seed)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for _ in range(ROWS_PER_FILE):
            positions = np.sort(rng.choice(np.arange(1, SEQ - 1), PREDICTIONS, replace=False))
            values = {"input_ids": rng.randint(1, VOCAB, SEQ), "input_mask": np.ones(SEQ, int),
                      "segment_ids": (np.arange(SEQ) >= SEQ // 2).astype(int),
                      "next_sentence_labels": [rng.randint(2)], "masked_lm_positions": positions,
                      "masked_lm_ids": rng.randint(1, VOCAB, PREDICTIONS)}
            feature = {k: tf.train.Feature(int64_list=tf.train.Int64List(value=list(map(int, v))))
                       for k, v in values.items()}
            feature["masked_lm_weights"] = tf.train.Feature(float_list=tf.train.FloatList(value=[1.0] * PREDICTIONS))
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())


def common_args(data_dir, output_dir):
    return [f"--data_dir={data_dir}", "--bert_network=tiny", f"--model.vocab_size={VOCAB}", f"--model.seq_length={SEQ}",
            "--model.hidden_dropout_prob=0.0", "--model.attention_probs_dropout_prob=0.0", "--do_shuffle=false",
            # Plain momentum SGD without clipping: the update is proportional to the gradient,
            # so a sum instead of a mean across ranks would show (Adam would hide it).
            "--train_steps=3", "--optimizer=Momentum", "--Momentum.learning_rate=0.1", "--gradient_clip_norm=1000.0",
            f"--output_dir={output_dir}", "--save_checkpoint_steps=3"]


def free_port():
    """A port nothing listens on now (each run gets its own: a finished run's port may linger)."""
    with socket.socket() as probe:
        probe.bind(("", 0))
        return probe.getsockname()[1]


def wait_for(path, pattern, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(path) and re.search(pattern, open(path, encoding="utf-8").read()):
            return open(path, encoding="utf-8").read()
        time.sleep(1)
    raise AssertionError(f"{path}: no {pattern!r} after {timeout} s")


# (NODE_NUM, WORKER_NUM per node, accumulation_steps): two workers on one node
# (also with gradient accumulation), or two "nodes" of one worker each on this
# machine, meeting at a master on 127.0.0.1.
LAYOUTS = {"one_node": (1, 2, 1), "one_node_accumulating": (1, 2, 2), "two_nodes": (2, 1, 1)}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_two_cpu_workers_equal_one_process_on_the_global_batch(tmp_path, layout):
    node_num, workers_per_node, accumulation_steps = LAYOUTS[layout]
    accumulate = [f"--accumulation_steps={accumulation_steps}"]
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    write_pretraining_file(data_dir / "part-0.tfrecord", seed=0)
    write_pretraining_file(data_dir / "part-1.tfrecord", seed=1)

    # One process, global batch 8: rows interleave across the two files, so each
    # batch holds the same rows as the two workers' batches of 4 (one file each).
    single = run_pretrain.main(common_args(data_dir, tmp_path / "single") + ["--batch_size=8"] + accumulate)

    run_dirs = [tmp_path / f"node{node}" for node in range(node_num)]
    port = free_port()
    for node, run_dir in enumerate(run_dirs):
        result = subprocess.run(["bash", SCRIPT, str(workers_per_node), "1", str(data_dir),
                                 *common_args(data_dir, run_dir)[1:], "--batch_size=4", *accumulate],
                                capture_output=True,
                                text=True, env={**os.environ, "RUN_DIR": str(run_dir), "MASTER_PORT": str(port),
                                                "NODE_NUM": str(node_num), "NODE_RANK": str(node)})
        assert result.returncode == 0, result.stderr
    worker_logs = [run_dir / "logs" / f"worker_{rank}.log" for run_dir in run_dirs for rank in range(2)]
    deadline = time.time() + RUN_TIMEOUT_S
    while time.time() < deadline and sum(log.exists() for log in worker_logs) < 2:
        time.sleep(1)
    logs = [wait_for(log, r"weights fingerprint: \S+", RUN_TIMEOUT_S) for log in worker_logs if log.exists()]
    assert len(logs) == 2
    fingerprints = [re.search(r"weights fingerprint: ([0-9a-f]+)", log).group(1) for log in logs]
    assert fingerprints[0] == fingerprints[1]  # every rank ends with the same weights

    expected = ms.load_checkpoint(single)
    actual = ms.load_checkpoint(str(run_dirs[0] / "checkpoints" / "checkpoint_bert_step_3.ckpt"))
    for name in [n for n in expected if not n.startswith(("global_step", "loss_scale", "current_", "last_"))]:
        np.testing.assert_allclose(actual[name].asnumpy(), expected[name].asnumpy(), atol=1e-5, err_msg=name)
    assert sum("checkpoint_bert_step" in log for log in logs) == node_num  # each node's first worker saves


def start_two_nodes(data_dir, run_dirs, log_dir, *args):
    """One msrun per "node" (NODE_NUM=2, one worker each, a master on 127.0.0.1), each started in its own
    run directory, so that a relative path names that node's own file; returns each worker's log path."""
    port = free_port()
    for node, run_dir in enumerate(run_dirs):
        result = subprocess.run(["bash", os.path.join(REPO, SCRIPT), "1", "1", str(data_dir),
                                 *common_args(data_dir, run_dir)[1:], "--batch_size=4", *args],
                                capture_output=True, text=True, cwd=run_dir,
                                env={**os.environ, "RUN_DIR": str(run_dir / log_dir), "MASTER_PORT": str(port),
                                     "NODE_NUM": "2", "NODE_RANK": str(node)})
        assert result.returncode == 0, result.stderr
    return [run_dir / log_dir / "logs" / f"worker_{node}.log" for node, run_dir in enumerate(run_dirs)]


def wait_to_finish(log):
    """The worker's log once it has finished, or a failure showing its end once it has failed."""
    text = wait_for(log, r"finished at step \d+|Traceback|error: ", RUN_TIMEOUT_S)
    assert "finished at step" in text, text[-3000:]
    return text


def test_each_node_saves_its_checkpoints_and_resumes_from_them(tmp_path):
    """Two "nodes" on this machine without a shared directory: each node's first worker writes the
    checkpoint into its node's run directory, and a resumed run reads each node's own file."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    write_pretraining_file(data_dir / "part-0.tfrecord", seed=0)
    write_pretraining_file(data_dir / "part-1.tfrecord", seed=1)
    run_dirs = [tmp_path / f"node{node}" for node in range(2)]
    for run_dir in run_dirs:
        run_dir.mkdir()

    logs = start_two_nodes(data_dir, run_dirs, "first", "--train_steps=2", "--save_checkpoint_steps=2")
    for node, log in enumerate(logs):
        text = wait_to_finish(log)
        assert f"checkpoint {run_dirs[node] / 'checkpoints' / 'checkpoint_bert_step_2.ckpt'}" in text, text[-2000:]

    logs = start_two_nodes(data_dir, run_dirs, "resumed", "--train_steps=3",
                           "--load_checkpoint_path=checkpoints/checkpoint_bert_step_2.ckpt")
    texts = [wait_to_finish(log) for log in logs]
    assert all("finished at step 3" in text and "step: 3," in text and "step: 1," not in text for text in texts)
    fingerprints = [re.search(r"weights fingerprint: ([0-9a-f]+)", text).group(1) for text in texts]
    assert fingerprints[0] == fingerprints[1]
    for run_dir in run_dirs:
        assert sorted(os.listdir(run_dir / "checkpoints")) == ["checkpoint_bert_step_3.ckpt"]


@pytest.mark.parametrize("environ, expected", [
    ({}, None),                                                         # a single process
    ({"MS_ROLE": "MS_WORKER", "RANK_ID": "3", "DEVICE_ID": "1"}, 1),    # msrun: the local rank in DEVICE_ID
    ({"OMPI_COMM_WORLD_LOCAL_RANK": "2", "OMPI_COMM_WORLD_RANK": "10"}, 2),                # mpirun
    ({"RANK_ID": "12", "DEVICE_ID": "4", "LOCAL_RANK": "0", "RANK_TABLE_FILE": "t.json"}, 0),  # rank table
])
def test_node_local_rank_from_each_launcher(environ, expected):
    assert node_local_rank(environ) == expected


def test_malformed_local_rank_names_the_variable():
    with pytest.raises(DeviceError, match="^environment variable LOCAL_RANK='x': expected a non-negative integer$"):
        node_local_rank({"LOCAL_RANK": "x"})


@pytest.mark.parametrize("device_num, rank, local_rank, saves", [
    (1, 0, None, True), (1, 0, 3, True),      # one process saves, whatever DEVICE_ID it was given
    (16, 0, 0, True), (16, 8, 0, True),       # each server's first process
    (16, 9, 1, False), (16, 1, 1, False),
    (2, 0, None, True), (2, 1, None, False),  # no local rank exported: global rank 0
])
def test_the_first_process_of_each_server_saves(device_num, rank, local_rank, saves):
    assert run_pretrain.saves_checkpoints(device_num, rank, local_rank) is saves


def test_a_missing_resume_file_is_named_by_every_rank(tmp_path):
    missing = tmp_path / "checkpoint_bert_step_2.ckpt"
    with pytest.raises(ConfigError, match=f"^load_checkpoint_path {missing}: no such file on this server \\(rank 5\\)"):
        run_pretrain.check_resume_file(str(missing), 5)
    missing.write_bytes(b"")
    run_pretrain.check_resume_file(str(missing), 5)
    run_pretrain.check_resume_file("", 5)


@pytest.mark.parametrize("args, message", [
    (("0", "1", "/tmp"), "WORKER_NUM must be a positive integer, got '0'"),
    (("2", "1", "/no/such/dir"), "DATA_DIR '/no/such/dir' is not a directory"),
    (("4096", "1", "/tmp"), "WORKER_NUM 4096 exceeds the"),
])
def test_bad_arguments_print_usage(args, message):
    result = subprocess.run(["bash", SCRIPT, *args], capture_output=True, text=True)
    assert result.returncode == 2 and message in result.stderr and "usage:" in result.stderr


def test_a_master_port_in_use_is_refused(tmp_path):
    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(["bash", SCRIPT, "2", "1", str(tmp_path)], capture_output=True, text=True,
                                env={**os.environ, "MASTER_PORT": str(port), "RUN_DIR": str(tmp_path / "run")})
    assert result.returncode == 2 and f"MASTER_PORT {port} is in use" in result.stderr
    assert not (tmp_path / "run").exists()


def worker_pid(rank, parent_pid):
    """The msrun worker process of `rank` (found by the RANK_ID/MS_ROLE msrun gives it)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = open(f"/proc/{entry}/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        if f"RANK_ID={rank}".encode() in environ and b"MS_ROLE=MS_WORKER" in environ and \
                str(parent_pid) == open(f"/proc/{entry}/stat").read().split()[3]:
            return int(entry)
    return None


def alive(pid):
    """Running (not gone, not a zombie)."""
    try:
        return open(f"/proc/{pid}/stat").read().split()[2] != "Z"
    except OSError:
        return False


def test_a_dead_worker_stops_the_whole_run(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    write_pretraining_file(data_dir / "part-0.tfrecord", seed=0)
    write_pretraining_file(data_dir / "part-1.tfrecord", seed=1)
    run_dir = tmp_path / "run"
    args = common_args(data_dir, run_dir)[1:] + ["--batch_size=2", "--train_steps=100000", "--epoch_size=10000",
                                                 "--enable_save_ckpt=false", "--log_every_steps=1"]
    result = subprocess.run(["bash", SCRIPT, "2", "1", str(data_dir), *args], capture_output=True, text=True,
                            env={**os.environ, "RUN_DIR": str(run_dir), "MASTER_PORT": str(free_port())})
    msrun_pid = int(re.search(r"msrun pid (\d+)", result.stdout).group(1))
    for rank in range(2):
        wait_for(run_dir / "logs" / f"worker_{rank}.log", r"step: 2,", RUN_TIMEOUT_S)
    victim = worker_pid(1, msrun_pid)
    survivor = worker_pid(0, msrun_pid)
    assert victim and survivor
    os.kill(victim, 9)
    deadline = time.time() + DEAD_WORKER_BOUND_S
    while time.time() < deadline and (alive(msrun_pid) or alive(survivor)):
        time.sleep(1)
    assert not alive(survivor) and not alive(msrun_pid), f"still running {DEAD_WORKER_BOUND_S} s after the kill"
    assert "Distributed job exited with exception" in (run_dir / "msrun.log").read_text()
