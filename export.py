"""Export a fine-tuned task model, or the encoder of any checkpoint, to MINDIR with a dynamic batch dimension.

    python export.py --task=ner --checkpoint=OUT/ner.ckpt --model_config=OUT/ner.yaml --file_name=ner
    python export.py --task=encoder --ckpt_file=CKPT --bert_network=base --file_name=encoder [--key=value ...]

Keys and defaults: export_config.yaml (`--help` lists them). The model zoo's
flags work too: `--ckpt_file` or `--export_ckpt_file` (our `--checkpoint`),
`--export_file_name` (`--file_name`, a name without the extension), and
`--batch_size` or `--export_batch_size` (checked, then unused: the graph takes
any batch size). `--num_class` and `--use_crf` default to what fine-tuning
recorded in `<task>.yaml`. The graph takes input_ids, input_mask, token_type_ids,
int32 [batch, seq_length] with any batch size; what it returns is listed in
src/export_model.py. Load it with `src.export_model.load_exported`.
"""

import os
import sys
import time

from src.config import HELP_FLAGS, Config, ConfigError, bert_config, convert, load_config, split_flags
from src.device import init_device, job_target
from src.errors import exit_on_user_error
from src.export_model import (ENCODER, EXPORTABLE, FILE_SUFFIXES, INPUT_NAMES, export_predictor,
                              load_encoder_predictor)
from src.run_directory import check_writable
from src.tasks import TASKS, load_predictor, read_task_file

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "export_config.yaml")
# Flags of the model zoo's export scripts spelled differently here: {zoo flag: our key}.
ZOO_FLAG_NAMES = {"ckpt_file": "checkpoint", "export_ckpt_file": "checkpoint", "export_file_name": "file_name"}
# The zoo's batch-size flags fix the exported graph's batch; ours takes any batch
# size, so their value is only checked.
ZOO_BATCH_FLAGS = ("batch_size", "export_batch_size")
# What each device may write: AIR needs Ascend's graph compiler; ONNX is
# MindSpore's deprecated path, untested here; MINDIR is the tested format and the
# only one offered on CPU.
FORMATS_BY_TARGET = {"CPU": ("MINDIR",), "GPU": ("MINDIR", "ONNX"), "Ascend": ("MINDIR", "AIR", "ONNX")}


def rename_zoo_flags(argv: list[str]) -> list[str]:
    """The zoo's flags in our spelling, as --key=value in order (the last of repeated flags still wins):
    ['--ckpt_file', 'X', '--batch_size=8'] -> ['--checkpoint=X']. A zoo batch size must be a positive integer."""
    if any(arg in HELP_FLAGS for arg in argv):
        return argv
    renamed = []
    for key, raw in split_flags(argv):
        if key in ZOO_BATCH_FLAGS:
            if convert(raw, 0, f"--{key}") < 1:
                raise ConfigError(f"--{key}: expected a positive integer, got {raw!r}")
        else:
            renamed.append(f"--{ZOO_FLAG_NAMES.get(key, key)}={raw}")
    return renamed


def check_options(cfg: Config) -> None:
    """Refuse a missing or contradictory option before the model is built."""
    if cfg.task not in EXPORTABLE:
        raise ConfigError(f"--task: expected one of {', '.join(EXPORTABLE)}, got {cfg.task!r}")
    if not cfg.checkpoint:
        raise ConfigError("--checkpoint (or --ckpt_file): required, the .ckpt file to export")
    if not cfg.file_name:
        raise ConfigError("--file_name: required, the output file (the format's extension is added)")
    target = job_target(cfg)
    if cfg.file_format not in FILE_SUFFIXES:
        raise ConfigError(f"--file_format: expected one of {', '.join(FILE_SUFFIXES)}, got {cfg.file_format!r}")
    if cfg.file_format not in FORMATS_BY_TARGET[target]:
        raise ConfigError(f"--file_format={cfg.file_format}: not supported on {target}; "
                          f"use {' or '.join(FORMATS_BY_TARGET[target])}")


def head_options(cfg: Config) -> dict:
    """{num_class, use_crf} of the task head: the flags, completed by what fine-tuning recorded in the
    `model_config` file (<task>.yaml: task, num_class, use_crf) and checked against it.

    Weights alone cannot tell a classifier from a softmax NER model with as many
    tags (the same names and shapes), so the recorded task must be `--task`.
    """
    record = read_task_file(cfg.model_config) if cfg.model_config and cfg.task != ENCODER else None
    if record and record.task not in (None, cfg.task):
        raise ConfigError(f"--task={cfg.task}: {cfg.model_config} describes a {record.task} model")
    recorded = record.values if record else {}
    num_class = cfg.num_class or recorded.get("num_class", 0)
    if num_class != recorded.get("num_class", num_class):
        raise ConfigError(f"--num_class={num_class}: {cfg.model_config} records num_class {recorded['num_class']}")
    # A false --use_crf cannot be told from an absent one: the recorded value wins.
    use_crf = cfg.use_crf or recorded.get("use_crf", False)
    if use_crf != recorded.get("use_crf", use_crf):
        raise ConfigError(f"--use_crf=true: {cfg.model_config} records a model without a CRF")
    head = TASKS[cfg.task].head if cfg.task in TASKS else ()
    if "num_class" in head and num_class < 1:
        raise ConfigError(f"--num_class: required for --task={cfg.task} (the number the model was fine-tuned with)")
    if use_crf and "use_crf" not in head:
        raise ConfigError(f"--use_crf=true: only for --task=ner, not {cfg.task}")
    return {"num_class": num_class, "use_crf": use_crf}


@exit_on_user_error
def main(argv: list[str] | None = None) -> list[str]:
    cfg = load_config(DEFAULT_CONFIG, rename_zoo_flags(sys.argv[1:] if argv is None else argv))
    check_options(cfg)
    settings = head_options(cfg)
    config = bert_config(cfg)
    check_writable(os.path.dirname(os.path.abspath(cfg.file_name)), "--file_name")
    init_device(cfg, config.compute_type, training=False)  # graph mode: export traces the network

    predictor = (load_encoder_predictor(config, cfg.checkpoint) if cfg.task == ENCODER
                 else load_predictor(cfg.task, config, settings, cfg.checkpoint))
    start = time.time()
    paths = export_predictor(predictor, config.seq_length, cfg.file_name, cfg.file_format)
    print(f"exported the {cfg.task} of {cfg.checkpoint} to {' and '.join(paths)} in {time.time() - start:.1f} s: "
          f"inputs {', '.join(INPUT_NAMES)}, int32 [any batch, {config.seq_length}]")
    return paths


if __name__ == "__main__":
    main()
