"""The command line of every entry point: --help, the two flag forms, the model zoo's usage lines.

The YAML-driven jobs must print every key of their YAML file; the argparse
tools every option with its default. The zoo's usage lines (its README.md and
README_CN.md, written `--key VALUE`) must give the values they name.
"""

import os
import re
import shlex
import subprocess
import sys

import pytest
import yaml

import export
import predict
import run_squad
from src import convert_checkpoint, create_finetune_data, create_pretraining_data
from src.config import ConfigError, load_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
YAML_JOBS = {"run_pretrain.py": "pretrain_config.yaml", "pretrain_eval.py": "pretrain_config.yaml",
             "run_classifier.py": "task_classifier_config.yaml", "run_ner.py": "task_ner_config.yaml",
             "run_squad.py": "task_squad_config.yaml", "export.py": "export_config.yaml"}
# Each argparse tool: its command, its parse_args, and the smallest command line it accepts.
ARGPARSE_TOOLS = {
    "predict": (["predict.py"], predict.parse_args,
                ["--task", "ner", "--config", "c", "--checkpoint", "k", "--vocab_file", "v"]),
    "create_pretraining_data": (["-m", "src.create_pretraining_data"], create_pretraining_data.parse_args,
                                ["--input_file", "i", "--output_dir", "o", "--vocab_file", "v"]),
    "create_finetune_data": (["-m", "src.create_finetune_data"], create_finetune_data.parse_args,
                             ["--task", "cola", "--input_file", "i", "--output_dir", "o", "--vocab_file", "v"]),
    "convert_checkpoint": (["-m", "src.convert_checkpoint"], convert_checkpoint.parse_args,
                           ["--source", "hf", "--input", "i", "--output", "o.ckpt"]),
}


def leaf_keys(values, prefix=""):
    """Dotted names of every leaf of a nested dict (an empty mapping is a leaf)."""
    keys = []
    for key, value in values.items():
        if isinstance(value, dict) and value:
            keys += leaf_keys(value, f"{prefix}{key}.")
        else:
            keys.append(prefix + key)
    return keys


def run_command(args):
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("script", sorted(YAML_JOBS))
def test_help_of_a_yaml_job_lists_every_key_of_its_yaml(script):
    result = run_command([script, "--help"])
    assert (result.returncode, result.stderr) == (0, "")
    with open(os.path.join(REPO, YAML_JOBS[script]), encoding="utf-8") as f:
        text = f.read()
    for key in leaf_keys(yaml.safe_load(text)):
        assert re.search(rf"^  --{re.escape(key)}[ .]", result.stdout, re.M), key
    # The comment at the end of a key's line is (the start of) its description.
    listing = " ".join(result.stdout.split())
    comments = re.findall(r"^ *\w+: [^#\n]*\s# (.*)$", text, re.M)
    assert comments
    for comment in comments:
        assert " ".join(comment.split()) in listing


@pytest.mark.parametrize("script", sorted(YAML_JOBS))
def test_h_of_a_yaml_job_in_process(script, capsys):
    module = __import__(script[:-3])
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--device_id", "1", "-h"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert f"keys of {os.path.join(REPO, YAML_JOBS[script])}" in out
    assert "\n  --device_id 0 " in out  # the file's defaults, not the flags before -h


@pytest.mark.parametrize("tool", sorted(ARGPARSE_TOOLS))
def test_help_of_an_argparse_tool_shows_every_option_and_default(tool):
    command, parse_args, required = ARGPARSE_TOOLS[tool]
    result = run_command([*command, "--help"])
    assert (result.returncode, result.stderr) == (0, "")
    options = result.stdout[result.stdout.index("\noptions:"):]
    # One entry per option, wrapped by argparse: {name: its help on one line}.
    entries = {block.split()[0]: " ".join(block.split()) for block in re.split(r"\n(?=  -)", options)[1:]}
    given = set(required[::2])
    for name, default in vars(parse_args(required)).items():
        entry = entries[f"--{name}"]
        if f"--{name}" in given:
            assert entry.endswith("(required)")
        elif (tool, name) == ("create_finetune_data", "max_seq_length"):  # its default depends on --task
            assert entry.endswith("(default: 384 for squad, else 128)")
        elif (tool, name) == ("predict", "bucket_list"):  # likewise
            assert entry.endswith("(default: bucket_list of task_<task>_config.yaml)")
        elif default is not None:
            shown = str(default).lower() if isinstance(default, bool) else str(default) or '""'
            assert entry.endswith(f"(default: {shown})"), entry


# Each tool: an abbreviated option (argparse's default would take it), a bad value.
BAD_FLAGS = {"predict": (["--batch_s", "8"], ["--batch_size", "eight"]),
             "create_pretraining_data": (["--max_seq_len", "64"], ["--output_format", "parquet"]),
             "create_finetune_data": (["--max_seq_len", "64"], ["--tag_scheme", "IO"]),
             "convert_checkpoint": (["--model_conf", "m.yaml"], ["--to", "tf"])}


@pytest.mark.parametrize("tool", sorted(ARGPARSE_TOOLS))
def test_argparse_tools_refuse_abbreviations_and_bad_values_in_one_line(tool, capsys):
    _, parse_args, required = ARGPARSE_TOOLS[tool]
    for bad in BAD_FLAGS[tool]:
        with pytest.raises(SystemExit) as exit_info:
            parse_args(required + bad)
        assert exit_info.value.code == 2
        errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
        assert len(errors) == 1 and bad[0] in errors[0], errors


def test_a_bad_flag_value_on_the_command_line_is_one_error_line_and_exit_2():
    result = run_command(["-m", "src.create_pretraining_data", "--input_file", "i", "--output_dir", "o",
                          "--vocab_file", "v", "--do_lower_case", "yes"])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == ("create_pretraining_data.py: error: argument --do_lower_case: "
                                              "expected true or false, got 'yes'")


# The model zoo's usage lines (README.md, README_CN.md), with example values, and
# what each key must hold afterwards. Its `----device_num` and `[train_steps N]` are typos there.
ZOO_USAGE = {
    "pretrain_config.yaml": (
        "--distribute false --epoch_size 40 --device_num 8 --device_id 3 --enable_save_ckpt true "
        "--device_target CPU --enable_lossscale false --do_shuffle false --enable_data_sink true "
        "--data_sink_steps 100 --accumulation_steps 4 --allreduce_post_accumulation true "
        "--save_checkpoint_path /tmp/ckpt --load_checkpoint_path '' --save_checkpoint_steps 10000 "
        "--save_checkpoint_num 2 --data_dir /data/wiki --schema_dir /data/schema.json --train_steps -1 "
        "--dataset_format mindrecord",
        dict(distribute=False, epoch_size=40, device_num=8, device_id=3, enable_save_ckpt=True, device_target="CPU",
             enable_lossscale=False, do_shuffle=False, data_sink_steps=100,  # enable_data_sink: true or "auto"
             accumulation_steps=4, allreduce_post_accumulation=True, save_checkpoint_path="/tmp/ckpt",
             load_checkpoint_path="", save_checkpoint_steps=10000, save_checkpoint_num=2, data_dir="/data/wiki",
             schema_dir="/data/schema.json", train_steps=-1, dataset_format="mindrecord")),
    "task_ner_config.yaml": (
        "--device_target CPU --do_train true --do_eval false --assessment_method clue_benchmark --use_crf true "
        "--device_id 1 --epoch_num 5 --vocab_file_path v.txt --label2id_file_path l.json "
        "--train_data_shuffle false --eval_data_shuffle true --save_finetune_checkpoint_path out "
        "--load_pretrain_checkpoint_path p.ckpt --load_finetune_checkpoint_path f.ckpt "
        "--train_data_file_path t.tfrecord --eval_data_file_path dev.json --dataset_format mindrecord "
        "--schema_file_path s.json",
        dict(device_target="CPU", do_train=True, do_eval=False, assessment_method="clue_benchmark", use_crf=True,
             device_id=1, epoch_num=5, vocab_file_path="v.txt", label2id_file_path="l.json",
             train_data_shuffle=False, eval_data_shuffle=True, save_finetune_checkpoint_path="out",
             load_pretrain_checkpoint_path="p.ckpt", load_finetune_checkpoint_path="f.ckpt",
             train_data_file_path="t.tfrecord", eval_data_file_path="dev.json", dataset_format="mindrecord",
             schema_file_path="s.json")),
    "task_squad_config.yaml": (
        "--device_target CPU --do_train true --do_eval true --device_id 0 --epoch_num 3 --num_class 2 "
        "--vocab_file_path v.txt --eval_json_path dev.json --train_data_shuffle true --eval_data_shuffle false "
        "--save_finetune_checkpoint_path out --load_pretrain_checkpoint_path p.ckpt "
        "--load_finetune_checkpoint_path f.ckpt --train_data_file_path t.tfrecord "
        "--eval_data_file_path d.tfrecord --dataset_format tfrecord --schema_file_path s.json",
        dict(device_target="CPU", do_train=True, do_eval=True, device_id=0, epoch_num=3, num_class=2,
             vocab_file_path="v.txt", eval_json_path="dev.json", train_data_shuffle=True, eval_data_shuffle=False,
             save_finetune_checkpoint_path="out", load_pretrain_checkpoint_path="p.ckpt",
             load_finetune_checkpoint_path="f.ckpt", train_data_file_path="t.tfrecord",
             eval_data_file_path="d.tfrecord", dataset_format="tfrecord", schema_file_path="s.json")),
    "task_classifier_config.yaml": (
        "--device_target CPU --do_train false --do_eval true --assessment_method mcc --device_id 2 --epoch_num 1 "
        "--num_class 15 --save_finetune_checkpoint_path out --load_pretrain_checkpoint_path p.ckpt "
        "--load_finetune_checkpoint_path f.ckpt --train_data_shuffle true --eval_data_shuffle false "
        "--train_data_file_path t.tfrecord --eval_data_file_path d.tfrecord --dataset_format mindrecord "
        "--schema_file_path s.json",
        dict(device_target="CPU", do_train=False, do_eval=True, assessment_method="mcc", device_id=2, epoch_num=1,
             num_class=15, save_finetune_checkpoint_path="out", load_pretrain_checkpoint_path="p.ckpt",
             load_finetune_checkpoint_path="f.ckpt", train_data_shuffle=True, eval_data_shuffle=False,
             train_data_file_path="t.tfrecord", eval_data_file_path="d.tfrecord", dataset_format="mindrecord",
             schema_file_path="s.json")),
}


@pytest.mark.parametrize("yaml_file", sorted(ZOO_USAGE))
def test_the_zoo_usage_lines_parse_to_the_values_they_name(yaml_file):
    line, expected = ZOO_USAGE[yaml_file]
    spaced = shlex.split(line)
    path = os.path.join(REPO, yaml_file)
    cfg = load_config(path, spaced)
    assert {key: getattr(cfg, key) for key in expected} == expected
    with_equals = [f"{key}={value}" for key, value in zip(spaced[::2], spaced[1::2])]
    assert load_config(path, with_equals).to_dict() == cfg.to_dict()


def test_squad_takes_the_zoo_num_class_2_only(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_squad.main(["--num_class", "3"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == ("error: --num_class: SQuAD's head has 2 outputs (start and end logits), "
                                       "got 3\n")
    with pytest.raises(SystemExit):
        run_squad.main(["--num_class", "2"])  # accepted: the job goes on to its next check
    assert "nothing to do" in capsys.readouterr().err


def export_config(argv):
    return load_config(os.path.join(REPO, "export_config.yaml"), export.rename_zoo_flags(argv))


def test_export_takes_the_zoo_flags_in_both_forms():
    zoo = ["--ckpt_file", "a.ckpt", "--file_name", "bert_ner", "--file_format", "MINDIR", "--batch_size", "1",
           "--device_target", "CPU", "--device_id", "1"]
    cfg = export_config(zoo)
    assert (cfg.checkpoint, cfg.file_name, cfg.file_format, cfg.device_target, cfg.device_id) == (
        "a.ckpt", "bert_ner", "MINDIR", "CPU", 1)
    assert export_config([f"{key}={value}" for key, value in zip(zoo[::2], zoo[1::2])]).to_dict() == cfg.to_dict()
    cfg = export_config(["--export_ckpt_file=b.ckpt", "--export_file_name", "x", "--export_batch_size", "8"])
    assert (cfg.checkpoint, cfg.file_name) == ("b.ckpt", "x")


def test_export_zoo_flags_and_ours_last_one_wins():
    assert export_config(["--checkpoint", "ours", "--ckpt_file", "zoo"]).checkpoint == "zoo"
    assert export_config(["--ckpt_file=zoo", "--checkpoint=ours"]).checkpoint == "ours"


@pytest.mark.parametrize("argv, message", [
    (["--batch_size", "0"], "--batch_size: expected a positive integer, got '0'"),
    (["--export_batch_size=many"], "--export_batch_size: expected an integer, got 'many'"),
    (["--ckpt_file"], "--ckpt_file: missing value"),
    (["--batch_size", "--ckpt_file", "a"], "--batch_size: missing value"),
])
def test_export_refuses_bad_zoo_flags_in_one_line(argv, message):
    with pytest.raises(ConfigError) as error:
        export.rename_zoo_flags(argv)
    assert str(error.value).startswith(message)
