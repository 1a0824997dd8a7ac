"""Convert BERT / NEZHA checkpoints between this project, Hugging Face and Google's TensorFlow BERT.

    python -m src.convert_checkpoint --source hf --input DIR --output FILE.ckpt
    python -m src.convert_checkpoint --source google --input DIR --output FILE.ckpt
    python -m src.convert_checkpoint --source google --input DIR/model.ckpt-N --config_file bert_config.json \\
        --output FILE.ckpt
    python -m src.convert_checkpoint --source ms --to hf --input FILE.ckpt [--model_config FILE.yaml] \\
        [--task classifier|ner|squad] --output DIR

Import (`--to ms`, the default) writes

    FILE.ckpt   the weights under this project's names: the encoder as `bert.*`
                (as every task model holds it); the pretraining heads, when the
                input has them, as `mlm_head.*` and `nsp_head.*`; a Hugging Face
                task model's head as `dense_1.*`;
    FILE.yaml   the matching `model:` section, to pass as `--model_config=FILE.yaml`;
                for a task model first `task:` (classifier, ner or squad), `num_class:`
                and, from config.json's id2label, `labels:`, as fine-tuning writes them.

from one of

    hf      DIR with `config.json` and `model.safetensors` (as `save_pretrained`
            writes them), read with the safetensors NumPy API: torch is not needed.
            `architectures` in config.json picks the model: BertModel or
            BertForPreTraining, or a task model: BertForSequenceClassification
            (task classifier), BertForTokenClassification (ner),
            BertForQuestionAnswering (squad). The file of a task model is what
            run_classifier.py / run_ner.py (without CRF) / run_squad.py load with
            `--load_finetune_checkpoint_path`. Hugging Face's token-classification
            and question-answering models have no pooler; as our task models do,
            `bert.dense.*` (unused by those heads) is then written as zeros.
    google  Google's TensorFlow BERT: DIR with `bert_model.ckpt.index/.data-*` and
            `bert_config.json`, or a checkpoint prefix with `--config_file`.
            Read with `tf.train.load_checkpoint`; Adam's slots (`adam_m`, `adam_v`)
            and `global_step` are skipped; dense kernels, stored [in, out], are
            transposed to our [out, in]. A config with `use_relative_position`
            (Huawei's NEZHA) gives a NEZHA model: functional relative positions, no
            position table, `max_relative_position` from the config, else 64.
            Google's TF code computes GELU with its tanh approximation, this model
            with the exact erf form (the two GELU values differ by at most 4.7e-4).

Export (`--source ms --to hf`) reads one of our checkpoints (a pretraining one,
whose optimizer and step state is ignored, a weights-only or converted one, or a
fine-tuned one) and its model YAML (default: the `.yaml` beside the checkpoint),
and writes DIR/config.json + DIR/model.safetensors as transformers' own
`save_pretrained` lays them out: BertForPreTraining (with the MLM/NSP heads),
BertModel (encoder only), or the task's class (`dense_1` as `classifier` or
`qa_outputs`; the task from `--task` or the YAML's `task:`). The MLM decoder is
not written: Hugging Face ties its weight to the word embeddings and its bias to
`cls.predictions.bias`. Not exported: NEZHA (transformers has no NEZHA model: its
Nezha, deprecated in 4.40, is gone from 5.x) and NER with a CRF
(BertForTokenClassification has none).

Nothing is written unless every tensor maps to a parameter of the right shape
and every parameter is found; otherwise the offending names and shapes are
listed on one line and the exit code is 2.
"""

import argparse
import dataclasses
import json
import os
import re
from collections.abc import Callable, Sequence

import mindspore as ms
import numpy as np
from safetensors.numpy import load_file, save_file

from src.bert_for_pre_training import BertPreTraining
from src.bert_model import ENCODER_PREFIX, BertConfig, BertModel
from src.checkpoint import load_params_into, read_checkpoint
from src.config import command_parser
from src.device import AUTO
from src.errors import UserError, exit_on_user_error
from src.files import TEXT_FILE_MODE, read_json, replace_atomically, write_text_atomic
from src.task_models import NUM_SPAN_LOGITS
from src.tasks import TASKS, read_task_file, save_task_model, task_model, task_yaml_path


class ConversionError(UserError):
    """The input checkpoint cannot be converted; the message lists why."""


# ---------------------------------------------------------------- name tables

LAYER_PLACEHOLDER = "n"  # `{n}` in a template: a layer number
# Where Hugging Face's task and pretraining classes keep the encoder (their `base_model_prefix`).
HF_BASE_PREFIX = "bert."
QKV = {"query": "query", "key": "key", "value": "value"}


def compile_template(template: str, spellings: dict[str, dict[str, str]]) -> re.Pattern:
    """A template such as 'encoder.layer.{n}.{wb}' -> a regex with one named group per placeholder."""
    parts = re.split(r"\{(\w+)\}", template)  # literal, placeholder, literal, ...
    pattern = ""
    for index, part in enumerate(parts):
        if index % 2 == 0:
            pattern += re.escape(part)
        elif part == LAYER_PLACEHOLDER:
            pattern += rf"(?P<{part}>\d+)"
        else:
            pattern += f"(?P<{part}>" + "|".join(map(re.escape, spellings[part])) + ")"
    return re.compile(pattern)


class NameTable:
    """Two-way map between one checkpoint format's tensor names and ours.

    Args:
        title (str): the format, for messages.
        rows (list): (their template, our template) pairs. `{n}` stands for a
            layer number, any other `{placeholder}` for one of its `spellings`.
        spellings (dict): {placeholder: {their spelling: our spelling}}, e.g. a
            Google dense `kernel` is our `weight`, a Hugging Face LayerNorm
            `weight` our `gamma`.
        transposed_suffix (str): their tensors whose names end with it are
            stored [in, out] (TensorFlow dense kernels); ours are [out, in].
        normalise (callable): applied to their names before matching.
    """

    def __init__(self, title: str, rows: list[tuple[str, str]], spellings: dict[str, dict[str, str]],
                 transposed_suffix: str | None = None, normalise: Callable[[str], str] | None = None):
        self.title = title
        self.rows = list(rows)
        self.spellings = spellings
        self.transposed_suffix = transposed_suffix
        self.normalise = normalise or (lambda name: name)
        reverse = {key: {ours: theirs for theirs, ours in choices.items()} for key, choices in spellings.items()}
        self._to_ours = [(compile_template(theirs, spellings), ours, spellings) for theirs, ours in self.rows]
        self._to_theirs = [(compile_template(ours, reverse), theirs, reverse) for theirs, ours in self.rows]

    def with_rows(self, rows: list[tuple[str, str]]) -> "NameTable":
        """The same table with more rows (e.g. a task head)."""
        return NameTable(self.title, self.rows + list(rows), self.spellings, self.transposed_suffix, self.normalise)

    def ours(self, their_name: str) -> str | None:
        """Our name for one of theirs, or None."""
        return translate(self.normalise(their_name), self._to_ours)

    def theirs(self, our_name: str) -> str | None:
        """Their (normalised) name for one of ours, or None."""
        return translate(our_name, self._to_theirs)

    def is_transposed(self, their_name: str) -> bool:
        """Whether their tensor `their_name` is stored [in, out] (ours are [out, in])."""
        return bool(self.transposed_suffix) and their_name.endswith(self.transposed_suffix)


def translate(name: str, compiled_rows: list[tuple[re.Pattern, str, dict]]) -> str | None:
    """The target name of the first row whose pattern matches `name`, its placeholders respelled; or None."""
    for pattern, target, spellings in compiled_rows:
        match = pattern.fullmatch(name)
        if match:
            values = {key: value if key == LAYER_PLACEHOLDER else spellings[key][value]
                      for key, value in match.groupdict().items()}
            return target.format(**values)
    return None


def normalise_hf_name(name: str) -> str:
    """Drop the `bert.` prefix of task and pretraining models; older files' LayerNorm gamma/beta -> weight/bias."""
    name = name[len(HF_BASE_PREFIX):] if name.startswith(HF_BASE_PREFIX) else name
    return re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", name))


# Hugging Face names (normalised). nn.Linear and nn.Dense both store [out, in]:
# nothing is transposed.
HF_NAMES = NameTable("Hugging Face BERT", [
    ("embeddings.word_embeddings.weight", "bert.bert_embedding_lookup.embedding_table"),
    ("embeddings.position_embeddings.weight",
     "bert.bert_embedding_postprocessor.full_position_embedding.embedding_table"),
    ("embeddings.token_type_embeddings.weight",
     "bert.bert_embedding_postprocessor.token_type_embedding.embedding_table"),
    ("embeddings.LayerNorm.{ln}", "bert.bert_embedding_postprocessor.layernorm.{ln}"),
    ("encoder.layer.{n}.attention.self.{qkv}.{wb}",
     "bert.bert_encoder.layers.{n}.attention.attention.{qkv}_layer.{wb}"),
    ("encoder.layer.{n}.attention.output.dense.{wb}", "bert.bert_encoder.layers.{n}.attention.output.dense.{wb}"),
    ("encoder.layer.{n}.attention.output.LayerNorm.{ln}",
     "bert.bert_encoder.layers.{n}.attention.output.layernorm.{ln}"),
    ("encoder.layer.{n}.intermediate.dense.{wb}", "bert.bert_encoder.layers.{n}.intermediate.{wb}"),
    ("encoder.layer.{n}.output.dense.{wb}", "bert.bert_encoder.layers.{n}.output.dense.{wb}"),
    ("encoder.layer.{n}.output.LayerNorm.{ln}", "bert.bert_encoder.layers.{n}.output.layernorm.{ln}"),
    ("pooler.dense.{wb}", "bert.dense.{wb}"),
    ("cls.predictions.transform.dense.{wb}", "mlm_head.dense.{wb}"),
    ("cls.predictions.transform.LayerNorm.{ln}", "mlm_head.layernorm.{ln}"),
    ("cls.predictions.bias", "mlm_head.output_bias"),
    ("cls.seq_relationship.{wb}", "nsp_head.dense.{wb}"),
], spellings={"wb": {"weight": "weight", "bias": "bias"}, "ln": {"weight": "gamma", "bias": "beta"}, "qkv": QKV},
    normalise=normalise_hf_name)

# Google's TensorFlow names. Dense layers' kernels are [in, out], transposed to
# our [out, in]; LayerNorm keeps TF's gamma/beta.
GOOGLE_NAMES = NameTable("Google BERT", [
    ("bert/embeddings/word_embeddings", "bert.bert_embedding_lookup.embedding_table"),
    ("bert/embeddings/position_embeddings",
     "bert.bert_embedding_postprocessor.full_position_embedding.embedding_table"),
    ("bert/embeddings/token_type_embeddings",
     "bert.bert_embedding_postprocessor.token_type_embedding.embedding_table"),
    ("bert/embeddings/LayerNorm/{ln}", "bert.bert_embedding_postprocessor.layernorm.{ln}"),
    ("bert/encoder/layer_{n}/attention/self/{qkv}/{wb}",
     "bert.bert_encoder.layers.{n}.attention.attention.{qkv}_layer.{wb}"),
    ("bert/encoder/layer_{n}/attention/output/dense/{wb}", "bert.bert_encoder.layers.{n}.attention.output.dense.{wb}"),
    ("bert/encoder/layer_{n}/attention/output/LayerNorm/{ln}",
     "bert.bert_encoder.layers.{n}.attention.output.layernorm.{ln}"),
    ("bert/encoder/layer_{n}/intermediate/dense/{wb}", "bert.bert_encoder.layers.{n}.intermediate.{wb}"),
    ("bert/encoder/layer_{n}/output/dense/{wb}", "bert.bert_encoder.layers.{n}.output.dense.{wb}"),
    ("bert/encoder/layer_{n}/output/LayerNorm/{ln}", "bert.bert_encoder.layers.{n}.output.layernorm.{ln}"),
    ("bert/pooler/dense/{wb}", "bert.dense.{wb}"),
    ("cls/predictions/transform/dense/{wb}", "mlm_head.dense.{wb}"),
    ("cls/predictions/transform/LayerNorm/{ln}", "mlm_head.layernorm.{ln}"),
    ("cls/predictions/output_bias", "mlm_head.output_bias"),
    # A plain variable, not a dense layer: already [2, D] (Google multiplies with transpose_b=True).
    ("cls/seq_relationship/output_weights", "nsp_head.dense.weight"),
    ("cls/seq_relationship/output_bias", "nsp_head.dense.bias"),
], spellings={"wb": {"kernel": "weight", "bias": "bias"}, "ln": {"gamma": "gamma", "beta": "beta"}, "qkv": QKV},
    transposed_suffix="/kernel")

# Each task's Hugging Face class and its head (our `dense_1`) are src.tasks.TASKS'; Hugging Face
# builds some task classes with `add_pooling_layer=False`: no pooler tensors.
POOLER_PREFIX = "bert.dense."
HF_PRETRAINING, HF_ENCODER = "BertForPreTraining", "BertModel"


def hf_names(task: str | None = None) -> NameTable:
    """HF_NAMES, plus the head of the task's Hugging Face class as our `dense_1`."""
    if not task:
        return HF_NAMES
    return HF_NAMES.with_rows([(f"{TASKS[task].hf_head}.{{wb}}", "dense_1.{wb}")])


# Hugging Face tensors that carry no weights of their own: buffers, and the MLM
# decoder, tied to the word embeddings and to `cls.predictions.bias`
# ({tied tensor: (the tensor it must equal, what that is)}, normalised names).
HF_BUFFERS = {"embeddings.position_ids", "embeddings.token_type_ids"}
HF_TIED = {"cls.predictions.decoder.weight": ("embeddings.word_embeddings.weight", "the word embeddings"),
           "cls.predictions.decoder.bias": ("cls.predictions.bias", "the MLM output bias")}

# Google checkpoints also hold the optimizer's state: Adam's slots
# `<variable>/adam_m`, `<variable>/adam_v`, and the step counter.
GOOGLE_SKIPPED = re.compile(r"(/adam_[mv]|^global_step)$")
GOOGLE_CHECKPOINT = "bert_model.ckpt"
GOOGLE_CONFIG = "bert_config.json"
HF_CONFIG, HF_WEIGHTS = "config.json", "model.safetensors"

# bert_config.json keys copied to BertConfig fields of the same name; config.json
# has these too, plus layer_norm_eps (Google's is fixed at BertConfig's 1e-12).
GOOGLE_CONFIG_FIELDS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                        "intermediate_size", "hidden_act", "hidden_dropout_prob",
                        "attention_probs_dropout_prob", "max_position_embeddings", "type_vocab_size",
                        "initializer_range")
HF_CONFIG_FIELDS = GOOGLE_CONFIG_FIELDS + ("layer_norm_eps",)

DEFAULT_SEQ_LENGTH = BertConfig.seq_length
# Huawei's NEZHA code fixes the clipping distance at 64, our default too.
DEFAULT_MAX_RELATIVE_POSITION = BertConfig.max_relative_position
# Names of our models' parameters; anything else in a checkpoint (optimizer
# moments, loss scale, step counters) is training state.
MODEL_PREFIXES = (ENCODER_PREFIX, "mlm_head.", "nsp_head.", "dense_1.", "crf.")
MAX_LISTED_PROBLEMS = 25


# ---------------------------------------------------------------- shared machinery

@dataclasses.dataclass
class Conversion:
    """What an import wrote: the model, the tensors under our names, and the task if any."""
    config: BertConfig
    tensors: dict
    task: str | None = None
    settings: dict = dataclasses.field(default_factory=dict)  # of a task model: num_class, labels
    notes: list = dataclasses.field(default_factory=list)


def parameter_shapes(config: BertConfig, task: str | None = None, settings: dict | None = None) -> dict:
    """{our name: shape} of the model: the task model's (its head sized by `settings`), or (no task)
    BertPreTraining's, in parameter order."""
    net = task_model(task, config, settings) if task else BertPreTraining(config, is_training=False)
    return {param.name: tuple(param.shape) for param in net.get_parameters()}


def map_to_ours(tensors: dict[str, np.ndarray], table: NameTable,
                shapes: dict[str, tuple]) -> tuple[dict[str, np.ndarray], list[str]]:
    """{their name: array} -> ({our name: float32 array, in our layout}, [problems])."""
    converted, problems = {}, []
    for name, array in tensors.items():
        ours = table.ours(name)
        if ours is None or ours not in shapes:
            problems.append(f"unexpected {name} {array.shape}")
            continue
        transposed = table.is_transposed(name) and array.ndim == 2
        expected = shapes[ours][::-1] if transposed else shapes[ours]  # in their layout
        if tuple(array.shape) != expected:
            problems.append(f"shape of {name}: {array.shape}, expected {expected} for {ours}")
        elif ours in converted:
            problems.append(f"{name}: a second tensor for {ours}")
        else:
            converted[ours] = np.ascontiguousarray(array.T if transposed else array, dtype=np.float32)
    return converted, problems


def missing_problems(converted: dict[str, np.ndarray], shapes: dict[str, tuple],
                     optional: Sequence[str] = ()) -> list[str]:
    """Every name of `shapes` must be converted, except that those in `optional` may be absent together."""
    problems = [f"missing tensor for {name} {shape}" for name, shape in shapes.items()
                if name not in converted and name not in optional]
    found = [name for name in optional if name in converted]
    if found:
        problems += [f"missing tensor for {name} {shapes[name]} (the other pretraining-head tensors are present)"
                     for name in optional if name not in converted]
    return problems


def check_layout(tensors: dict[str, np.ndarray], converted: dict[str, np.ndarray], table: NameTable, path: str,
                 source: str) -> None:
    """A file none of whose tensors has a name of `table` gets one line of its own, not a list of them all."""
    if tensors and not converted:
        examples = ", ".join(list(tensors)[:3])
        raise ConversionError(f"{path}: none of its {len(tensors)} tensors has a {table.title} name "
                              f"({examples}, ...): is --source {source} right?")


def refuse(problems: list[str], path: str) -> None:
    """Raise one ConversionError listing `problems` (the first MAX_LISTED_PROBLEMS of them), if any."""
    if problems:
        listed = problems[:MAX_LISTED_PROBLEMS]
        if len(problems) > len(listed):
            listed.append(f"and {len(problems) - len(listed)} more")
        raise ConversionError(f"{path}: " + "; ".join(listed))


def convert_tensors(tensors: dict[str, np.ndarray], table: NameTable, shapes: dict[str, tuple], path: str, source: str,
                    optional: Sequence[str] = (), defaults: dict[str, np.ndarray] | None = None,
                    other_problems: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """Map `tensors` to our names and check them against `shapes`, or raise listing every problem.

    Args:
        tensors (dict): {their name: array}, weights only.
        table (NameTable): their names -> ours.
        shapes (dict): {our name: shape} of the model the checkpoint is for.
        path (str): the input, for messages.
        source (str): its `--source`, for messages.
        optional (list): our names that may be absent all together (the pretraining heads).
        defaults (dict): {our name: array} written where the input has none.
        other_problems (list): problems the caller found, listed with the rest.
    Returns:
        {our name: float32 array in our layout}.
    """
    converted, problems = map_to_ours(tensors, table, shapes)
    check_layout(tensors, converted, table, path, source)
    for name, value in (defaults or {}).items():
        converted.setdefault(name, value)
    refuse(problems + missing_problems(converted, shapes, optional) + list(other_problems), path)
    return converted


def pretraining_heads(shapes: dict[str, tuple]) -> list[str]:
    """Our names outside the encoder: a checkpoint may hold all of them or none."""
    return [name for name in shapes if not name.startswith(ENCODER_PREFIX)]


def write_ms_checkpoint(conversion: Conversion, shapes: dict, output_path: str, source: str) -> None:
    """FILE.ckpt (tensors in the model's parameter order) and FILE.yaml (task and settings, model section),
    laid out as fine-tuning's <task>.yaml (src.tasks.save_task_model)."""
    params = [{"name": name, "data": ms.Tensor(conversion.tensors[name])} for name in shapes
              if name in conversion.tensors]
    # compute_type auto: the device that loads the model picks its precision (src.device.compute_type_for).
    model = dict(dataclasses.asdict(conversion.config), compute_type=AUTO)
    save_task_model(params, output_path, conversion.task, conversion.settings, model, f"converted from {source}")


def bert_config_from_fields(source_config: dict, keys: Sequence[str], path: str, **extra: object) -> BertConfig:
    """BertConfig from the `keys` of a source config dict plus `extra` fields."""
    missing = [key for key in keys if key not in source_config]
    if missing:
        raise ConversionError(f"{path}: missing keys {missing}")
    fields = {key: source_config[key] for key in keys}
    fields.update(extra)
    fields["seq_length"] = min(DEFAULT_SEQ_LENGTH, fields["max_position_embeddings"])
    try:
        return BertConfig(**fields)
    except (TypeError, ValueError) as error:
        raise ConversionError(f"{path}: {error}") from None


def layout_hint(directory: str) -> str:
    """' (... use --source X)' when `directory` looks like the other importable layout."""
    if os.path.isfile(os.path.join(directory, GOOGLE_CONFIG)):
        return f" ({GOOGLE_CONFIG} found: a Google checkpoint? use --source google)"
    if os.path.isfile(os.path.join(directory, HF_WEIGHTS)):
        return f" ({HF_WEIGHTS} found: a Hugging Face model? use --source hf)"
    return ""


# ---------------------------------------------------------------- Hugging Face -> ours

def bert_config_from_hf(hf_config: dict, path: str) -> BertConfig:
    """BertConfig from a Hugging Face config.json dict; unsupported variants raise."""
    if hf_config.get("model_type", "bert") != "bert":
        raise ConversionError(f"{path}: model_type {hf_config['model_type']!r} is not 'bert'")
    position_type = hf_config.get("position_embedding_type", "absolute")
    if position_type != "absolute":
        raise ConversionError(f"{path}: position_embedding_type {position_type!r} is not supported "
                              "(only 'absolute')")
    return bert_config_from_fields(hf_config, HF_CONFIG_FIELDS, path)


def hf_task(hf_config: dict) -> str | None:
    """Our task for the config's `architectures` (None: BertModel, BertForPreTraining or unnamed)."""
    architectures = hf_config.get("architectures") or []
    return next((name for name, task in TASKS.items() if task.hf_class in architectures), None)


def hf_num_class(hf_config: dict, tensors: dict[str, np.ndarray], task: str, path: str) -> int:
    """Number of outputs of the task head: rows of the head's weight, which `id2label` must agree with."""
    if task == "squad":
        return NUM_SPAN_LOGITS
    architecture, head = TASKS[task].hf_class, TASKS[task].hf_head
    weight = next((array for name, array in tensors.items() if normalise_hf_name(name) == f"{head}.weight"), None)
    if weight is None or weight.ndim != 2:
        raise ConversionError(f"{path}: no 2-D {head}.weight, the head of {architecture}")
    num_class = weight.shape[0]
    labels = hf_config.get("id2label")
    if isinstance(labels, dict) and len(labels) != num_class:
        raise ConversionError(f"{path}: {head}.weight has {num_class} rows but id2label {len(labels)} labels")
    problem_type = hf_config.get("problem_type")
    if task == "classifier" and (num_class < 2 or problem_type not in (None, "single_label_classification")):
        raise ConversionError(f"{path}: a {problem_type or 'regression'} head with {num_class} output(s) is not "
                              "supported (run_classifier.py is single-label softmax classification)")
    return num_class


def hf_labels(hf_config: dict, num_class: int) -> list[str] | None:
    """config.json's id2label as a list in id order, or None when it does not name every class."""
    id2label = hf_config.get("id2label")
    if not isinstance(id2label, dict) or sorted(map(str, id2label)) != sorted(map(str, range(num_class))):
        return None
    return [str(id2label.get(str(i), id2label.get(i))) for i in range(num_class)]


def tied_problems(tensors: dict[str, np.ndarray]) -> list[str]:
    """The MLM decoder must be tied (our head has no decoder of its own)."""
    by_name = {normalise_hf_name(name): array for name, array in tensors.items()}
    return [f"{tied} differs from {description} {source} (untied decoders are not supported)"
            for tied, (source, description) in HF_TIED.items()
            if tied in by_name and not np.array_equal(by_name[tied], by_name.get(source))]


def convert_hf(input_dir: str, output_path: str) -> Conversion:
    """Convert a Hugging Face BERT directory; writes `output_path` and its `.yaml`. Returns a Conversion."""
    config_path, weights_path = os.path.join(input_dir, HF_CONFIG), os.path.join(input_dir, HF_WEIGHTS)
    for path in (config_path, weights_path):
        if not os.path.isfile(path):
            raise ConversionError(f"{path}: no such file (expected {HF_CONFIG} and {HF_WEIGHTS})"
                                  + layout_hint(input_dir))
    hf_config = read_json(config_path)
    config = bert_config_from_hf(hf_config, config_path)
    try:
        tensors = load_file(weights_path)
    except Exception as error:  # safetensors raises its own SafetensorError, not exported
        raise ConversionError(f"{weights_path}: not a readable safetensors file ({error})") from None
    task = hf_task(hf_config)
    conversion = Conversion(config, {}, task)
    if task:
        num_class = hf_num_class(hf_config, tensors, task, weights_path)
        labels = hf_labels(hf_config, num_class) if TASKS[task].labelled else None
        conversion.settings = {"num_class": num_class, **({"labels": labels} if labels else {})}
    shapes = parameter_shapes(config, task, conversion.settings)

    weights = {name: array for name, array in tensors.items()
               if normalise_hf_name(name) not in HF_BUFFERS and normalise_hf_name(name) not in HF_TIED}
    defaults = {}
    if task and not TASKS[task].hf_pooler and not any(normalise_hf_name(name).startswith("pooler.")
                                                      for name in weights):
        # Our task models all hold the pooler; these heads never read it.
        defaults = {name: np.zeros(shape, np.float32) for name, shape in shapes.items()
                    if name.startswith(POOLER_PREFIX)}
        conversion.notes.append(f"{TASKS[task].hf_class} has no pooler: {POOLER_PREFIX}* written as zeros")
    conversion.tensors = convert_tensors(weights, hf_names(task), shapes, weights_path, "hf",
                                         optional=() if task else pretraining_heads(shapes), defaults=defaults,
                                         other_problems=tied_problems(tensors))
    write_ms_checkpoint(conversion, shapes, output_path, input_dir)
    return conversion


# ---------------------------------------------------------------- Google TensorFlow -> ours

def bert_config_from_google(google_config: dict, path: str) -> BertConfig:
    """BertConfig from a bert_config.json dict; `use_relative_position` (Huawei's NEZHA) gives NEZHA."""
    extra = {}
    if google_config.get("use_relative_position", False):
        extra = dict(use_relative_positions=True, relative_position_type="functional",
                     max_relative_position=google_config.get("max_relative_position", DEFAULT_MAX_RELATIVE_POSITION))
    return bert_config_from_fields(google_config, GOOGLE_CONFIG_FIELDS, path, **extra)


def google_paths(input_path: str, config_file: str | None = None) -> tuple[str, str]:
    """(checkpoint prefix, bert_config.json path) for a Google directory or checkpoint prefix."""
    if os.path.isdir(input_path):
        prefix = os.path.join(input_path, GOOGLE_CHECKPOINT)
        if not os.path.isfile(prefix + ".index"):
            raise ConversionError(f"{input_path}: no {GOOGLE_CHECKPOINT}.index in this directory (for another "
                                  "checkpoint pass its prefix, e.g. DIR/model.ckpt-1000)" + layout_hint(input_path))
    else:
        prefix = re.sub(r"\.(index|data-\d+-of-\d+)$", "", input_path)  # the prefix, given any of its files
        if not os.path.isfile(prefix + ".index"):
            raise ConversionError(f"{input_path}: no such TensorFlow checkpoint (expected {prefix}.index "
                                  "and its .data-* files)")
    config_path = config_file or os.path.join(os.path.dirname(prefix), GOOGLE_CONFIG)
    if not os.path.isfile(config_path):
        raise ConversionError(f"{config_path}: no such file (pass the model's {GOOGLE_CONFIG} with --config_file)")
    return prefix, config_path


def read_tf_checkpoint(prefix: str) -> dict[str, np.ndarray]:
    """{variable name: array} of a TensorFlow checkpoint, optimizer state left out."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter
    import tensorflow as tf  # imported only here: it is slow to import
    try:
        reader = tf.train.load_checkpoint(prefix)
        names = sorted(name for name in reader.get_variable_to_shape_map() if not GOOGLE_SKIPPED.search(name))
        return {name: reader.get_tensor(name) for name in names}
    except (tf.errors.OpError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConversionError(f"{prefix}: not a readable TensorFlow checkpoint ({reason})") from None


def convert_google(input_path: str, output_path: str, config_file: str | None = None) -> Conversion:
    """Convert Google's TF BERT (or Huawei's NEZHA) checkpoint; writes `output_path` and its `.yaml`."""
    prefix, config_path = google_paths(input_path, config_file)
    config = bert_config_from_google(read_json(config_path), config_path)
    tensors = read_tf_checkpoint(prefix)
    shapes = parameter_shapes(config)
    converted = convert_tensors(tensors, GOOGLE_NAMES, shapes, prefix, "google", optional=pretraining_heads(shapes))
    conversion = Conversion(config, converted)
    write_ms_checkpoint(conversion, shapes, output_path, prefix)
    return conversion


# ---------------------------------------------------------------- ours -> Hugging Face

def export_model(config: BertConfig, saved: dict, task: str | None, settings: dict,
                 path: str) -> tuple[str, dict[str, np.ndarray]]:
    """(Hugging Face architecture, {our name: array}) of a checkpoint's model weights, checked against the
    network of that architecture: the task model (its head as `settings` describe it, sized by the
    checkpoint's), BertPreTraining (any head present) or BertModel."""
    if task:
        if "dense_1.weight" not in saved:
            raise ConversionError(f"{path}: no task head (dense_1.*) for task {task!r}")
        net = task_model(task, config, dict(settings, num_class=saved["dense_1.weight"].shape[0]))
        prefix, architecture = "", TASKS[task].hf_class
    elif any(not name.startswith(ENCODER_PREFIX) for name in saved):
        net, prefix, architecture = BertPreTraining(config, is_training=False), "", HF_PRETRAINING
    else:
        net, prefix, architecture = BertModel(config, is_training=False), ENCODER_PREFIX, HF_ENCODER
    # The checkpoint must hold exactly this network's names and shapes (lists every difference).
    load_params_into(net, dict(saved), path, prefix=prefix)
    return architecture, {prefix + param.name: param.asnumpy() for param in net.get_parameters()}


def hf_config_for(config: BertConfig, architecture: str, task: str | None = None, num_class: int | None = None,
                  labels: list | None = None) -> dict:
    """config.json of the exported model (Hugging Face's BertConfig names); `labels` name the classes."""
    hf_config = {"architectures": [architecture], "model_type": "bert"}
    hf_config.update({key: getattr(config, key) for key in HF_CONFIG_FIELDS})
    hf_config.update(position_embedding_type="absolute", tie_word_embeddings=True)
    if task and TASKS[task].labelled:
        if not (isinstance(labels, list) and len(labels) == num_class):
            labels = [f"LABEL_{i}" for i in range(num_class)]  # Hugging Face's default names
        hf_config["id2label"] = {str(i): str(label) for i, label in enumerate(labels)}
        hf_config["label2id"] = {str(label): i for i, label in enumerate(labels)}
    return hf_config


def save_safetensors_atomic(tensors: dict[str, np.ndarray], path: str) -> None:
    """model.safetensors, written atomically and readable by all (as save_pretrained leaves it)."""
    # The "pt" format tag is what transformers checks.
    replace_atomically(path, lambda tmp_path: save_file(tensors, tmp_path, metadata={"format": "pt"}),
                       suffix=".safetensors", mode=TEXT_FILE_MODE)


def export_hf(checkpoint_path: str, output_dir: str, model_config: str | None = None,
              task: str | None = None) -> tuple[str, dict[str, np.ndarray]]:
    """Write `output_dir`/config.json + model.safetensors from one of our checkpoints.

    Returns (architecture, {Hugging Face name: array}).
    """
    model_config = model_config or task_yaml_path(checkpoint_path)
    if not os.path.isfile(model_config):
        raise ConversionError(f"{model_config}: no such file (pass the checkpoint's model YAML with --model_config)")
    recorded = read_task_file(model_config)
    # Only weights are converted, on the host: `compute_type: auto` is built as on a CPU.
    config = recorded.bert_config("CPU")
    if config.use_relative_positions:
        raise ConversionError(f"{model_config}: NEZHA (use_relative_positions) export to Hugging Face is not "
                              "supported: transformers has no NEZHA model")
    saved = {name: value for name, value in read_checkpoint(checkpoint_path).items()
             if name.startswith(MODEL_PREFIXES)}  # training checkpoints also hold optimizer state
    if any(name.startswith("crf.") for name in saved):
        raise ConversionError(f"{checkpoint_path}: a NER model with a CRF (crf.*) cannot be exported: "
                              "Hugging Face's BertForTokenClassification has no CRF")
    if task and recorded.task and task != recorded.task:
        raise ConversionError(f"--task {task}: {model_config} describes a {recorded.task} model")
    task = task or recorded.task
    if "dense_1.weight" in saved and not task:
        raise ConversionError(f"{checkpoint_path}: holds a task head (dense_1.*); name its task with "
                              f"--task {'|'.join(TASKS)}")
    architecture, weights = export_model(config, saved, task, recorded.values, checkpoint_path)

    table = hf_names(task)
    tensors = {}
    for name, array in weights.items():
        if task and not TASKS[task].hf_pooler and name.startswith(POOLER_PREFIX):
            continue  # Hugging Face's class has no pooler
        theirs = table.theirs(name)
        if architecture != HF_ENCODER and name.startswith(ENCODER_PREFIX):
            theirs = HF_BASE_PREFIX + theirs
        tensors[theirs] = np.ascontiguousarray(array, dtype=np.float32)
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ConversionError(f"--output {output_dir}: exists and is not a directory")
    os.makedirs(output_dir, exist_ok=True)
    save_safetensors_atomic(tensors, os.path.join(output_dir, HF_WEIGHTS))
    num_class = weights["dense_1.weight"].shape[0] if task else None
    labels = recorded.values.get("labels")
    write_text_atomic(json.dumps(hf_config_for(config, architecture, task, num_class, labels), indent=2,
                                 ensure_ascii=False) + "\n",
                      os.path.join(output_dir, HF_CONFIG))
    return architecture, tensors


# ---------------------------------------------------------------- command line

DIRECTIONS = {("hf", "ms"), ("google", "ms"), ("ms", "hf")}


def check_flags(args: argparse.Namespace) -> None:
    """Refuse a direction or a flag the conversion does not take."""
    if (args.source, args.to) not in DIRECTIONS:
        raise ConversionError(f"--source {args.source} --to {args.to}: supported are hf -> ms, google -> ms "
                              "and ms -> hf")
    if args.config_file and args.source != "google":
        raise ConversionError("--config_file: only for --source google")
    if (args.model_config or args.task) and args.source != "ms":
        raise ConversionError("--model_config and --task: only for --source ms")
    if args.to == "ms" and not args.output.endswith(".ckpt"):
        raise ConversionError(f"--output {args.output!r}: expected a file name ending in .ckpt")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = command_parser(__doc__.split("\n")[0])
    parser.add_argument("--source", required=True, choices=["hf", "google", "ms"],
                        help="format of the input: hf (Hugging Face directory), google (TensorFlow BERT or NEZHA "
                             "checkpoint), ms (this project's .ckpt, with --to hf)")
    parser.add_argument("--to", default="ms", choices=["ms", "hf"],
                        help="format to write: ms (.ckpt + .yaml) or hf (a Hugging Face directory)")
    parser.add_argument("--input", required=True,
                        help="hf: directory with config.json and model.safetensors; google: directory with "
                             "bert_model.ckpt.* and bert_config.json, or a checkpoint prefix; ms: the .ckpt file")
    parser.add_argument("--output", required=True,
                        help="--to ms: the .ckpt file to write (its .yaml goes beside it); --to hf: the directory")
    parser.add_argument("--config_file", help="google: the bert_config.json (default: the one beside the checkpoint)")
    parser.add_argument("--model_config",
                        help="ms: YAML with the checkpoint's model section (default: the .yaml beside the .ckpt)")
    parser.add_argument("--task", choices=sorted(TASKS),
                        help="ms: task of a fine-tuned checkpoint (dense_1.*) when its YAML has no `task:`")
    return parser.parse_args(argv)


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    check_flags(args)
    if args.to == "hf":
        architecture, tensors = export_hf(args.input, args.output, args.model_config, args.task)
        print(f"wrote {os.path.join(args.output, HF_CONFIG)} and {os.path.join(args.output, HF_WEIGHTS)} "
              f"({architecture}, {len(tensors)} tensors)")
        return
    if args.source == "hf":
        conversion = convert_hf(args.input, args.output)
    else:
        conversion = convert_google(args.input, args.output, args.config_file)
    config = conversion.config
    task = f", task {conversion.task} with {conversion.settings['num_class']} outputs" if conversion.task else ""
    print(f"wrote {args.output} ({len(conversion.tensors)} tensors, {config.num_hidden_layers} layers, "
          f"hidden {config.hidden_size}{', NEZHA' if config.use_relative_positions else ''}{task}) "
          f"and {task_yaml_path(args.output)}")
    for note in conversion.notes:
        print(f"note: {note}")


if __name__ == "__main__":
    main()
