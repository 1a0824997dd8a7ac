"""The fine-tuning tasks in one place: what each task is made of, and the files of a fine-tuned model.

    TASKS            task name -> Task: model and loss classes, data, recorded settings, Hugging Face class
    task_model       a task's model, its head sized by the settings (num_class, use_crf)
    loss_network     the task model with its loss: what fine-tuning trains
    load_predictor   a fine-tuned checkpoint -> the task's predictor, dropout off
    save_task_model  weights -> `<name>.ckpt` + `<name>.yaml`
    read_task_file   `<name>.yaml` (or any model YAML) -> TaskFile

Fine-tuning (src/finetune.py and the run scripts), predict.py, export.py and
the checkpoint converter build task models and read and write these files only
through this module. A `<name>.yaml` holds, in this order:

    task: ner           # absent for an encoder or a pretraining model (converted)
    num_class: 21       # the task's settings (Task.recorded), as the model was trained
    ...
    model: {...}        # every BertConfig field; `compute_type: auto` stays auto, so the
                        # device that loads the model picks its precision

so that `--model_config=<name>.yaml` rebuilds the model, and predict.py and
export.py read the task's settings from it.
"""

import dataclasses
import os

import yaml
from mindspore import nn

from src.bert_model import BertConfig
from src.checkpoint import load_params_into, read_checkpoint, save_checkpoint_atomic
from src.columns import column_names
from src.config import Config, concrete_bert_config, read_yaml, resolve_model
from src.errors import UserError
from src.files import file_named, write_text_atomic
from src.task_models import BertCLS, BertCLSModel, BertNER, BertNERModel, BertSquad, BertSquadModel, TaskPredictor


class TaskFileError(UserError):
    """A model YAML names a task this project does not have."""


@dataclasses.dataclass(frozen=True)
class Task:
    """One fine-tuning task.

    Attributes:
        model: the task model (src/task_models.py): inputs -> what its head computes;
            its `predict` gives the task's answer.
        loss: the task model with its loss (src/task_models.py): training columns -> scalar.
        head: the settings that size the head, which `model` and `loss` take after
            (config, is_training), in that order.
        recorded: the settings a fine-tuned model records in `<task>.yaml`, in file order.
        training_data, evaluation_data: its data, as src.columns and src.dataset.task_columns name it.
        hf_class: the Hugging Face class of the task.
        hf_head: the attribute of that class's head, our `dense_1`.
        hf_pooler: whether that class holds the pooler (Hugging Face builds its token and span
            classifiers without one; ours all hold it).
    """
    model: type
    loss: type
    head: tuple[str, ...]
    recorded: tuple[str, ...]
    training_data: str
    evaluation_data: str
    hf_class: str
    hf_head: str
    hf_pooler: bool

    @property
    def training_columns(self) -> tuple[str, ...]:
        return column_names(self.training_data)

    @property
    def evaluation_columns(self) -> tuple[str, ...]:
        return column_names(self.evaluation_data)

    @property
    def labelled(self) -> bool:
        """Whether its outputs are named classes or tags (`labels` in `<task>.yaml`)."""
        return "labels" in self.recorded


TASKS = {
    "classifier": Task(BertCLSModel, BertCLS, head=("num_class",), recorded=("num_class", "labels", "do_lower_case"),
                       training_data="classifier", evaluation_data="classifier",
                       hf_class="BertForSequenceClassification", hf_head="classifier", hf_pooler=True),
    "ner": Task(BertNERModel, BertNER, head=("num_class", "use_crf"),
                recorded=("num_class", "use_crf", "tag_scheme", "labels", "do_lower_case"),
                training_data="ner", evaluation_data="ner",
                hf_class="BertForTokenClassification", hf_head="classifier", hf_pooler=False),
    "squad": Task(BertSquadModel, BertSquad, head=(),
                  recorded=("do_lower_case", "doc_stride", "max_query_length", "n_best_size", "max_answer_length"),
                  training_data="squad training", evaluation_data="squad evaluation",
                  hf_class="BertForQuestionAnswering", hf_head="qa_outputs", hf_pooler=False),
}
# A head setting a model may leave unrecorded: a NER model imported from Hugging Face has no CRF.
HEAD_DEFAULTS = {"use_crf": False}


def recorded_settings(task: str, cfg: Config, **derived: object) -> dict:
    """The settings `task`'s model records (Task.recorded, in order): `derived` values (e.g. the labels,
    read from a label map), the others from the job config `cfg`."""
    return {key: derived[key] if key in derived else getattr(cfg, key) for key in TASKS[task].recorded}


def head_arguments(task: str, settings: dict) -> list:
    """The values of `task`'s head settings (Task.head), in order, from `settings`."""
    values = {**HEAD_DEFAULTS, **settings}
    return [values[key] for key in TASKS[task].head]


def task_model(task: str, config: BertConfig, settings: dict, is_training: bool = False) -> nn.Cell:
    """`task`'s model for BertConfig `config`, its head sized by `settings` (num_class, use_crf)."""
    return TASKS[task].model(config, is_training, *head_arguments(task, settings))


def loss_network(task: str, config: BertConfig, settings: dict) -> nn.Cell:
    """`task`'s model with its loss, dropout on: what fine-tuning trains. Its parameters have the task
    model's names, so the checkpoint it leaves loads into `task_model`."""
    return TASKS[task].loss(config, True, *head_arguments(task, settings))


def load_task_model(model: nn.Cell, path: str) -> nn.Cell:
    """Load a fine-tuned checkpoint into a task model (or its predictor) and turn dropout off; names and
    shapes must match exactly (a checkpoint of another task or size fails with the list of differences)."""
    load_params_into(model, read_checkpoint(path), path)
    model.set_train(False)
    return model


def load_predictor(task: str, config: BertConfig, settings: dict, path: str) -> nn.Cell:
    """The predictor of `task` (a Cell whose `construct` gives the task's answer, dropout off) with the
    fine-tuned weights at `path`."""
    return load_task_model(TaskPredictor(task_model(task, config, settings)), path)


# ---------------------------------------------------------------- <name>.ckpt + <name>.yaml

def task_yaml_path(checkpoint: str) -> str:
    """The `<name>.yaml` written next to `<name>.ckpt`."""
    return os.path.splitext(checkpoint)[0] + ".yaml"


def save_task_model(params: nn.Cell | list, path: str, task: str | None, settings: dict, model: dict,
                    origin: str) -> None:
    """Write `path` (weights only: a Cell, or a list of {'name', 'data'} dicts) and its `<name>.yaml`:
    `task` (None: a model of no task) and its `settings`, then the `model:` section (BertConfig fields).
    `origin` says in the file's opening comment where the model comes from."""
    save_checkpoint_atomic(params, path)
    sections = {"task": task, **settings} if task else {}
    sections["model"] = model
    header = f"# model of {os.path.basename(path)}, {origin}; use with --model_config\n"
    write_text_atomic(header + yaml.safe_dump(sections, sort_keys=False, allow_unicode=True), task_yaml_path(path))


@dataclasses.dataclass(frozen=True)
class TaskFile:
    """A model YAML as read: a `<task>.yaml` of fine-tuning or the converter, or a job's YAML.

    Attributes:
        path: the file.
        values: its top-level mapping: `task` and the settings (`values["labels"]`, ...), `model`.
    """
    path: str
    values: dict

    @property
    def task(self) -> str | None:
        """The task it describes; None for a file that names none (an encoder, a job's YAML)."""
        return self.values.get("task")

    def bert_config(self, device_target: str) -> BertConfig:
        """The BertConfig it describes, for `device_target`: the `model:` section amending the
        `bert_network` preset (default base, as for a job's YAML), `compute_type: auto` resolved."""
        fields = resolve_model({"bert_network": "base", **self.values}, self.path)
        return concrete_bert_config(fields, device_target, self.path)


def read_task_file(path: str, flag: str = "") -> TaskFile:
    """The model YAML `path` (given by `flag`, named in errors); one line (ConfigError, TaskFileError) if it
    cannot be read, is not a YAML mapping, or names a task not in TASKS."""
    values = read_yaml(path, flag)
    task = values.get("task")
    if task is not None and task not in TASKS:
        where = file_named(path, flag)
        raise TaskFileError(f"{where}: task {task!r} is not one of {sorted(TASKS)}")
    return TaskFile(path, values)
