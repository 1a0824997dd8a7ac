"""src/device.py: each device choice over the targets and launcher environments, and the jobs' use of them."""

import os
import subprocess
import sys

import mindspore as ms
import pytest
import yaml

from predict import read_task_config
from src.bert_for_pre_training import BertNetworkWithLoss
from src.config import Config, ConfigError, bert_config, concrete_bert_config, load_config
from src.device import (DeviceError, RunSetup, allreduce_split_points, choose_device_id, compute_type_for,
                        describe_setup, detected_targets, init_device, launcher_device_id, resolve_target,
                        set_allreduce_split, training_choices, usable_targets)
from src.task_models import BertCLS
from src.tasks import save_task_model, task_yaml_path
from tests.helpers import tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRETRAIN_YAML = os.path.join(REPO, "pretrain_config.yaml")
ALL = ("Ascend", "GPU", "CPU")


# ----------------------------------------------------------------------------- target

@pytest.mark.parametrize("requested, usable, expected", [
    ("auto", ALL, "Ascend"),
    ("auto", ("GPU", "CPU"), "GPU"),
    ("auto", ("CPU",), "CPU"),
    ("CPU", ALL, "CPU"),            # an explicit target wins over a better one
    ("GPU", ALL, "GPU"),
    ("Ascend", ("Ascend", "CPU"), "Ascend"),
])
def test_auto_prefers_ascend_then_gpu_and_explicit_targets_win(requested, usable, expected):
    assert resolve_target(requested, usable) == expected


@pytest.mark.parametrize("requested, usable, message", [
    ("GPU", ("CPU",), "device_target=GPU: this MindSpore build cannot use a GPU device on this machine "
                      "(usable: CPU); set device_target to auto or CPU"),
    ("Ascend", ("GPU", "CPU"), "device_target=Ascend: this MindSpore build cannot use a Ascend device on this "
                               "machine (usable: GPU, CPU); set device_target to auto or CPU"),
    ("gpu", ALL, "device_target: expected auto, Ascend, GPU, CPU, got 'gpu'"),
])
def test_an_unusable_or_unknown_target_is_refused(requested, usable, message):
    with pytest.raises(DeviceError) as error:
        resolve_target(requested, usable)
    assert str(error.value) == message


def test_a_target_needs_its_plugin_and_a_device():
    asked = []

    def device_count(target):
        asked.append(target)
        return {"GPU": 0}[target]  # the GPU plugin loaded, but no card (or no driver) is there

    assert usable_targets(lambda target: target == "GPU", device_count) == ("CPU",)
    assert asked == ["GPU"]  # Ascend's plugin did not load: its devices are not asked for
    assert usable_targets(lambda target: True, lambda target: 2) == ALL
    assert usable_targets(lambda target: False, None) == ("CPU",)


def test_detection_on_this_machine_does_not_raise_and_always_offers_the_cpu():
    usable = detected_targets()
    assert usable[-1] == "CPU" and set(usable) <= set(ALL)
    assert ms.get_context("device_target") == "CPU"  # asking changed nothing


@pytest.mark.skipif("GPU" in detected_targets(), reason="this machine can use a GPU")
def test_a_job_given_an_unusable_gpu_ends_with_one_line_and_exit_2(tmp_path):
    result = subprocess.run([sys.executable, os.path.join(REPO, "run_pretrain.py"), "--device_target=GPU",
                             f"--data_dir={tmp_path}", f"--output_dir={tmp_path}"],
                            capture_output=True, text=True, cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"error: device_target=GPU: this MindSpore build cannot use a GPU device "
                                          f"on this machine (usable: {', '.join(detected_targets())}); "
                                          "set device_target to auto or CPU"]


# ----------------------------------------------------------------------------- device id

@pytest.mark.parametrize("environ, expected", [
    ({}, None),                                                                    # one process, no launcher
    ({"DEVICE_ID": "3", "RANK_ID": "11", "MS_ROLE": "MS_WORKER"}, 3),              # msrun: DEVICE_ID = local rank
    ({"OMPI_COMM_WORLD_LOCAL_RANK": "2", "OMPI_COMM_WORLD_RANK": "10"}, 2),        # mpirun
    ({"DEVICE_ID": "5", "RANK_ID": "13", "RANK_TABLE_FILE": "hccl.json"}, 5),      # rank table
    ({"DEVICE_ID": "1", "OMPI_COMM_WORLD_LOCAL_RANK": "4"}, 1),                    # DEVICE_ID first
    ({"DEVICE_ID": "", "OMPI_COMM_WORLD_LOCAL_RANK": "4"}, 4),                     # empty is unset
])
def test_the_launcher_names_the_device(environ, expected):
    assert launcher_device_id(environ) == expected


def test_a_malformed_device_variable_is_one_line():
    with pytest.raises(DeviceError, match=r"^environment variable DEVICE_ID='gpu0': expected a non-negative "
                                          r"integer$"):
        launcher_device_id({"DEVICE_ID": "gpu0"})


def test_the_launcher_device_wins_over_the_flag():
    assert choose_device_id({}, 6) == 6
    assert choose_device_id({"OMPI_COMM_WORLD_LOCAL_RANK": "1"}, 6) == 1
    assert choose_device_id({"DEVICE_ID": "0"}, 6) == 0


# ----------------------------------------------------------------------------- precision

@pytest.mark.parametrize("requested, target, expected", [
    ("auto", "Ascend", "float16"), ("auto", "GPU", "float16"), ("auto", "CPU", "float32"),
    ("float32", "Ascend", "float32"), ("float32", "GPU", "float32"), ("float16", "CPU", "float16"),
    ("bfloat16", "Ascend", "bfloat16"),
])
def test_compute_type_auto_follows_the_target_and_an_explicit_choice_wins(requested, target, expected):
    assert compute_type_for(requested, target) == expected
    fields = dict(vars(tiny_config()), compute_type=requested)
    assert concrete_bert_config(fields, target, "model").compute_type == expected


def test_auto_is_the_default_kept_in_the_config_and_resolved_in_the_model():
    cfg = load_config(PRETRAIN_YAML, ["--bert_network=tiny", "--device_target=CPU"])
    assert cfg.model.compute_type == "auto"            # what fine-tuning writes into <task>.yaml
    assert bert_config(cfg).compute_type == "float32"  # what the model is built with on a CPU
    explicit = load_config(PRETRAIN_YAML, ["--bert_network=tiny", "--model.compute_type=float16"])
    assert bert_config(explicit).compute_type == "float16"


def test_a_fine_tuned_model_keeps_auto_and_each_device_resolves_it(tmp_path):
    cfg = load_config(os.path.join(REPO, "task_classifier_config.yaml"),
                      ["--bert_network=tiny", "--model.seq_length=8", f"--output_dir={tmp_path}"])
    path = str(tmp_path / "classifier.ckpt")
    save_task_model(BertCLS(bert_config(cfg), False, 2), path, "classifier",  # as run_classifier saves
                    {"num_class": 2, "labels": ["0", "1"], "do_lower_case": True}, cfg.model.to_dict(), "fine-tuned")
    yaml_path = task_yaml_path(path)
    assert yaml.safe_load(open(yaml_path, encoding="utf-8"))["model"]["compute_type"] == "auto"
    # Fine-tuned in float16 on a GPU, predicted in float32 on a CPU: each reader resolves auto for itself.
    assert read_task_config(yaml_path, "classifier", "GPU")[0].compute_type == "float16"
    assert read_task_config(yaml_path, "classifier", "CPU")[0].compute_type == "float32"


def test_a_model_config_file_chooses_the_compute_type(tmp_path):
    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump({"model": {"compute_type": "float16"}}))
    cfg = load_config(PRETRAIN_YAML, ["--bert_network=tiny", f"--model_config={path}"])
    assert cfg.model.compute_type == "float16" and bert_config(cfg).compute_type == "float16"


def test_an_unknown_compute_type_names_auto_among_the_choices():
    cfg = load_config(PRETRAIN_YAML, ["--bert_network=tiny", "--model.compute_type=float64"])
    with pytest.raises(ConfigError, match=r"^model: compute_type must be auto or one of float32, float16, bfloat16, "
                                          r"got 'float64'$"):
        bert_config(cfg)


# ----------------------------------------------------------------------------- all-reduce fusion

def layer_of(name):
    """The encoder layer of a parameter name, or None (embeddings, pooler, heads)."""
    parts = name.split(".")
    return int(parts[parts.index("layers") + 1]) if "layers" in parts else None


def pretraining_params(**changes):
    """The pretraining network's parameters at tiny widths (building base widths takes ~15 s)."""
    return BertNetworkWithLoss(tiny_config(**changes), True).trainable_params()


def test_base_split_points_fall_at_layer_boundaries():
    params = pretraining_params(num_hidden_layers=12)  # base's parameter list: 12 layers, 206 parameters
    points = allreduce_split_points(params)
    # 5 embedding parameters, 16 per layer: layer k ends at 5 + 16 (k + 1) - 1; 8 groups of layers
    # 0-1, 2-3, 4-5, 6-7, 8, 9, 10 and 11 (with the pooler and heads, to the last index).
    assert len(params) == 206
    assert points == [36, 68, 100, 132, 148, 164, 180, 205]
    for point in points[:-1]:  # the last parameter of a layer, the next one starts the next layer
        assert layer_of(params[point].name) + 1 == layer_of(params[point + 1].name)


def test_nezha_split_points_follow_its_parameter_layout():
    # Learned relative positions add a table per layer (17 parameters) and drop the position embeddings (4).
    params = pretraining_params(num_hidden_layers=12, use_relative_positions=True, relative_position_type="learned")
    points = allreduce_split_points(params)
    assert points == [4 + 17 * (last + 1) - 1 for last in (1, 3, 5, 7, 8, 9, 10)] + [len(params) - 1]
    for point in points[:-1]:
        assert layer_of(params[point].name) + 1 == layer_of(params[point + 1].name)


def test_fewer_layers_than_groups_give_one_group_per_layer_and_none_without_layers():
    params = pretraining_params()  # 2 layers
    assert allreduce_split_points(params) == [5 + 16 - 1, len(params) - 1]
    assert allreduce_split_points([p for p in params if layer_of(p.name) is None]) == []


def test_the_split_points_reach_mindspore():
    params = pretraining_params()
    try:
        set_allreduce_split(params)
        assert ms.get_auto_parallel_context("all_reduce_fusion_config") == allreduce_split_points(params)
    finally:
        ms.reset_auto_parallel_context()


# ----------------------------------------------------------------------------- the set-up line

def test_the_setup_line_names_every_choice():
    training = RunSetup("GPU", 3, 11, 16, "float16", "amp.all_finite", data_sink_steps=100)
    assert describe_setup(training) == ("device GPU:3, rank 11 of 16, compute_type float16, "
                                        "overflow check amp.all_finite, data sink on (100 steps per sink)")
    assert describe_setup(RunSetup("CPU", None, 0, 1, "float32", None)) == ("device CPU, rank 0 of 1, "
                                                                            "compute_type float32")


@pytest.mark.parametrize("target, sink, expected", [
    ("Ascend", "auto", ("amp.all_finite", 4)),  # saturating fp16: only the status registers tell
    ("GPU", "auto", ("amp.all_finite", 4)),
    ("CPU", "auto", ("inf-nan", 0)),            # MindSpore cannot sink data on a CPU
    ("GPU", "false", ("amp.all_finite", 0)),
])
def test_training_choices_per_target(target, sink, expected):
    assert training_choices(Config({"enable_data_sink": sink, "data_sink_steps": 4}), target) == expected
    assert training_choices(Config({}), target) == (expected[0], 0)  # fine-tuning: no sink keys


def test_init_device_sets_the_cpu_and_prints_the_line_first(capsys):
    cfg = Config({"device_target": "auto", "device_id": 4, "mode": "GRAPH", "enable_data_sink": "auto",
                  "data_sink_steps": 3})
    setup = init_device(cfg, "float32", training=True, environ={"DEVICE_ID": "2"})
    # No device ids on a CPU; `auto` sinks data only where MindSpore can (not on a CPU).
    assert setup == RunSetup("CPU", None, 0, 1, "float32", "inf-nan", data_sink_steps=0)
    assert capsys.readouterr().out == describe_setup(setup) + "\n"
    assert ms.get_context("device_target") == "CPU" and ms.get_context("mode") == ms.GRAPH_MODE


def test_init_device_refuses_an_unknown_mode():
    with pytest.raises(DeviceError, match=r"^mode: expected GRAPH or PYNATIVE, got 'EAGER'$"):
        init_device(Config({"device_target": "CPU", "device_id": 0, "mode": "EAGER"}), "float32", training=False)
