"""Import a Hugging Face BERT checkpoint as a MindSpore checkpoint of this project.

    python -m src.convert_checkpoint --source hf --input DIR --output FILE.ckpt

DIR holds `config.json` and `model.safetensors` (as written by
`transformers.BertModel` / `BertForPreTraining.save_pretrained`). Weights are
read with the safetensors NumPy API, so torch is not needed. Written:

    FILE.ckpt   the weights under this project's names: the encoder as `bert.*`
                (as every task model holds it), the pretraining heads, when the
                input has them, as `mlm_head.*` and `nsp_head.*`;
    FILE.yaml   the matching `model:` section; pass it as `--model_config=FILE.yaml`.

Nothing is written unless every tensor maps to a parameter of the right shape
and every parameter is found; otherwise the offending names and shapes are
listed and the exit code is 2.
"""

import argparse
import dataclasses
import json
import os
import re

import mindspore as ms
import numpy as np
import yaml
from safetensors.numpy import load_file

from src.bert_for_pre_training import BertPreTraining
from src.bert_model import BertConfig
from src.checkpoint import save_checkpoint_atomic, write_text_atomic
from src.errors import UserError, exit_on_user_error

# Hugging Face name (after `normalise_hf_name`) -> our name. Linear weights are
# [out, in] in both frameworks, so no tensor needs transposing.
HF_TO_OURS = [
    (r"embeddings\.word_embeddings\.weight", r"bert.bert_embedding_lookup.embedding_table"),
    (r"embeddings\.position_embeddings\.weight",
     r"bert.bert_embedding_postprocessor.full_position_embedding.embedding_table"),
    (r"embeddings\.token_type_embeddings\.weight",
     r"bert.bert_embedding_postprocessor.token_type_embedding.embedding_table"),
    (r"embeddings\.LayerNorm\.(gamma|beta)", r"bert.bert_embedding_postprocessor.layernorm.\1"),
    (r"encoder\.layer\.(\d+)\.attention\.self\.(query|key|value)\.(weight|bias)",
     r"bert.bert_encoder.layers.\1.attention.attention.\2_layer.\3"),
    (r"encoder\.layer\.(\d+)\.attention\.output\.dense\.(weight|bias)",
     r"bert.bert_encoder.layers.\1.attention.output.dense.\2"),
    (r"encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.(gamma|beta)",
     r"bert.bert_encoder.layers.\1.attention.output.layernorm.\2"),
    (r"encoder\.layer\.(\d+)\.intermediate\.dense\.(weight|bias)", r"bert.bert_encoder.layers.\1.intermediate.\2"),
    (r"encoder\.layer\.(\d+)\.output\.dense\.(weight|bias)", r"bert.bert_encoder.layers.\1.output.dense.\2"),
    (r"encoder\.layer\.(\d+)\.output\.LayerNorm\.(gamma|beta)", r"bert.bert_encoder.layers.\1.output.layernorm.\2"),
    (r"pooler\.dense\.(weight|bias)", r"bert.dense.\1"),
    (r"cls\.predictions\.transform\.dense\.(weight|bias)", r"mlm_head.dense.\1"),
    (r"cls\.predictions\.transform\.LayerNorm\.(gamma|beta)", r"mlm_head.layernorm.\1"),
    (r"cls\.predictions\.bias", r"mlm_head.output_bias"),
    (r"cls\.seq_relationship\.(weight|bias)", r"nsp_head.dense.\1"),
]

# Hugging Face tensors that carry no weights of their own: a buffer, and the
# MLM decoder, whose weight is the word-embedding table and whose bias is
# `cls.predictions.bias` (both tied; checked by `check_tied_decoder`).
HF_SKIPPED = {"embeddings.position_ids", "cls.predictions.decoder.weight", "cls.predictions.decoder.bias"}

# config.json keys copied to BertConfig fields of the same name.
HF_CONFIG_FIELDS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                    "intermediate_size", "hidden_act", "hidden_dropout_prob",
                    "attention_probs_dropout_prob", "max_position_embeddings", "type_vocab_size",
                    "initializer_range", "layer_norm_eps")

DEFAULT_SEQ_LENGTH = BertConfig.seq_length


class ConversionError(UserError):
    """The input checkpoint cannot be converted; the message lists why."""


def normalise_hf_name(name):
    """Drop the `bert.` prefix of task models and use LayerNorm gamma/beta (older files' names)."""
    name = name[len("bert."):] if name.startswith("bert.") else name
    return re.sub(r"LayerNorm\.weight$", "LayerNorm.gamma", re.sub(r"LayerNorm\.bias$", "LayerNorm.beta", name))


def our_name(hf_name):
    """Our parameter name for a (normalised) Hugging Face name, or None if it has none."""
    for pattern, template in HF_TO_OURS:
        match = re.fullmatch(pattern, hf_name)
        if match:
            return match.expand(template)
    return None


def bert_config_from_hf(hf_config, path):
    """BertConfig from a Hugging Face config.json dict; unsupported variants raise."""
    if hf_config.get("model_type", "bert") != "bert":
        raise ConversionError(f"{path}: model_type {hf_config['model_type']!r} is not 'bert'")
    position_type = hf_config.get("position_embedding_type", "absolute")
    if position_type != "absolute":
        raise ConversionError(f"{path}: position_embedding_type {position_type!r} is not supported "
                              "(only 'absolute')")
    missing = [key for key in HF_CONFIG_FIELDS if key not in hf_config]
    if missing:
        raise ConversionError(f"{path}: missing keys {missing}")
    fields = {key: hf_config[key] for key in HF_CONFIG_FIELDS}
    fields["seq_length"] = min(DEFAULT_SEQ_LENGTH, fields["max_position_embeddings"])
    try:
        return BertConfig(**fields)
    except (TypeError, ValueError) as error:
        raise ConversionError(f"{path}: {error}") from None


def expected_shapes(config):
    """Our parameter names and shapes for `config`: the encoder's, then the pretraining heads'."""
    shapes = {param.name: tuple(param.shape) for param in BertPreTraining(config, is_training=False).get_parameters()}
    encoder = {name: shape for name, shape in shapes.items() if name.startswith("bert.")}
    return encoder, {name: shape for name, shape in shapes.items() if name not in encoder}


def map_hf_tensors(tensors, config, path):
    """{hf name: array} -> {our name: float32 array}, or ConversionError listing every problem."""
    encoder_shapes, head_shapes = expected_shapes(config)
    known = {**encoder_shapes, **head_shapes}
    converted, problems = {}, []
    for hf_name, array in tensors.items():
        name = normalise_hf_name(hf_name)
        if name in HF_SKIPPED:
            continue
        ours = our_name(name)
        if ours is None or ours not in known:
            problems.append(f"unexpected {hf_name} {array.shape}")
        elif tuple(array.shape) != known[ours]:
            problems.append(f"shape of {hf_name}: {array.shape}, expected {known[ours]} for {ours}")
        else:
            converted[ours] = array.astype(np.float32)
    problems += [f"missing tensor for {name} {shape}" for name, shape in encoder_shapes.items()
                 if name not in converted]
    found_heads = [name for name in head_shapes if name in converted]
    if found_heads and len(found_heads) != len(head_shapes):
        problems += [f"missing tensor for {name} {shape} (the other pretraining-head tensors are present)"
                     for name, shape in head_shapes.items() if name not in converted]
    problems += check_tied_decoder(tensors, converted)
    if problems:
        raise ConversionError(f"{path}: " + "; ".join(problems))
    return converted


def check_tied_decoder(tensors, converted):
    """The MLM decoder must be tied to the word embeddings (our head has no decoder weight of its own)."""
    decoder = {normalise_hf_name(name): array for name, array in tensors.items()}.get("cls.predictions.decoder.weight")
    if decoder is None or np.array_equal(decoder, converted.get("bert.bert_embedding_lookup.embedding_table")):
        return []
    return ["cls.predictions.decoder.weight differs from the word embeddings (untied decoders are not supported)"]


def convert_hf(input_dir, output_path):
    """Convert a Hugging Face BERT directory; writes `output_path` and its `.yaml` model section."""
    config_path = os.path.join(input_dir, "config.json")
    weights_path = os.path.join(input_dir, "model.safetensors")
    for path in (config_path, weights_path):
        if not os.path.isfile(path):
            raise ConversionError(f"{path}: no such file (expected config.json and model.safetensors)")
    try:
        with open(config_path, encoding="utf-8") as f:
            hf_config = json.load(f)
    except ValueError as error:
        raise ConversionError(f"{config_path}: not valid JSON ({error})") from None
    config = bert_config_from_hf(hf_config, config_path)
    try:
        tensors = load_file(weights_path)
    except Exception as error:  # safetensors raises its own SafetensorError, not exported
        raise ConversionError(f"{weights_path}: not a readable safetensors file ({error})") from None
    converted = map_hf_tensors(tensors, config, weights_path)

    save_checkpoint_atomic([{"name": name, "data": ms.Tensor(array)} for name, array in converted.items()],
                           output_path)
    header = f"# Model section of {os.path.basename(output_path)}, converted from {input_dir}\n"
    write_text_atomic(header + yaml.safe_dump({"model": dataclasses.asdict(config)}, sort_keys=False),
                      model_yaml_path(output_path))
    return config, converted


def model_yaml_path(checkpoint_path):
    return os.path.splitext(checkpoint_path)[0] + ".yaml"


@exit_on_user_error
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", required=True, choices=["hf"], help="format of the input checkpoint")
    parser.add_argument("--input", required=True, help="directory with config.json and model.safetensors")
    parser.add_argument("--output", required=True, help="MindSpore checkpoint to write (.ckpt)")
    args = parser.parse_args(argv)
    if not args.output.endswith(".ckpt"):
        parser.error(f"--output {args.output!r}: expected a file name ending in .ckpt")
    config, converted = convert_hf(args.input, args.output)
    print(f"wrote {args.output} ({len(converted)} tensors, {config.num_hidden_layers} layers, "
          f"hidden {config.hidden_size}) and {model_yaml_path(args.output)}")


if __name__ == "__main__":
    main()
