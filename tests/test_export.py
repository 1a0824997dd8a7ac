"""export.py: each task's MINDIR, loaded back, against the live model at two batch sizes; bad input."""

import dataclasses

import mindspore as ms
import numpy as np
import pytest
from mindspore.train import mind_ir_pb2, serialization

import export
from src.bert_for_pre_training import BertPreTraining
from src.bert_model import BertModel
from src.checkpoint import load_checkpoint_into, save_checkpoint_atomic
from src.export_model import load_exported
from src.task_models import BertCLS, BertCLSModel, BertNER, BertNERModel, BertSquad, BertSquadModel, TaskPredictor
from src.tasks import load_task_model, save_task_model, task_yaml_path
from tests.helpers import random_inputs, randomize_parameters, tiny_config

NUM_CLASSES = 3
NUM_TAGS = 5
TOLERANCE = 1e-5
# The encoder job describes a pretraining checkpoint by flags (tests.helpers.tiny_config);
# the task jobs read the <task>.yaml that fine-tuning writes.
TINY_FLAGS = ["--bert_network=tiny", "--model.vocab_size=50", "--model.seq_length=8", "--model.type_vocab_size=2",
              "--model.max_position_embeddings=16"]


def save_pretraining_checkpoint(config, path):
    """A pretraining run's checkpoint: encoder, MLM/NSP heads, optimizer moments and the step."""
    network = BertPreTraining(config, True)
    randomize_parameters(network)
    params = [{"name": p.name, "data": p} for p in network.get_parameters()]
    params += [{"name": "adam_m." + p.name, "data": ms.Tensor(np.zeros(p.shape, np.float32))}
               for p in network.get_parameters()]
    save_checkpoint_atomic(params, path, append_dict={"trained_steps": 3})


def save_fine_tuned(network, config, directory, task_name, **settings):
    """<task>.ckpt and <task>.yaml as fine-tuning writes them (from the loss network)."""
    randomize_parameters(network)
    checkpoint = str(directory / f"{task_name}.ckpt")
    save_task_model(network, checkpoint, task_name, settings, dataclasses.asdict(config), "fine-tuned")
    return checkpoint, task_yaml_path(checkpoint)


def live_model(case, config, checkpoint):
    """The model as evaluation builds it, loaded from `checkpoint`: a function of (ids, mask, types)."""
    if case == "encoder":
        model = BertModel(config, False)
        load_checkpoint_into(model, checkpoint, prefix="bert.")
        return lambda input_ids, input_mask, token_type_ids: model(
            input_ids=input_ids, token_type_ids=token_type_ids, input_mask=input_mask)[:2]
    model = {"classifier": lambda: BertCLSModel(config, False, NUM_CLASSES),
             "ner": lambda: BertNERModel(config, False, NUM_TAGS),
             "ner_crf": lambda: BertNERModel(config, False, NUM_TAGS, use_crf=True),
             "squad": lambda: BertSquadModel(config, False)}[case]()
    return load_task_model(TaskPredictor(model), checkpoint)


def outputs(result):
    return [value.asnumpy() for value in (result if isinstance(result, tuple) else (result,))]


def mindir_inputs(path):
    """[(input name, shape, dtype name)] of a MINDIR file's graph."""
    model = mind_ir_pb2.ModelProto()
    with open(path, "rb") as f:
        model.ParseFromString(f.read())
    return [(value.name.split(":")[-1], list(value.tensor[0].dims),
             mind_ir_pb2.TensorProto.DataType.Name(value.tensor[0].data_type)) for value in model.graph.input]


# num_class and use_crf may be left out: <task>.yaml records them.
@pytest.mark.parametrize("case, flags", [
    ("encoder", ["--task=encoder"] + TINY_FLAGS),
    ("classifier", ["--task=classifier", f"--num_class={NUM_CLASSES}"]),
    ("ner", ["--task=ner"]),
    ("ner_crf", ["--task=ner"]),
    ("squad", ["--task=squad"]),
])
def test_exported_graph_gives_the_live_model_outputs_at_any_batch_size(tmp_path, case, flags):
    config = tiny_config()
    if case == "encoder":
        checkpoint = str(tmp_path / "pretrain.ckpt")
        save_pretraining_checkpoint(config, checkpoint)
        # The zoo's name for the checkpoint flag.
        flags = flags + [f"--ckpt_file={checkpoint}"]
    else:
        network, task_name, settings = {
            "classifier": lambda: (BertCLS(config, True, NUM_CLASSES), "classifier", {"num_class": NUM_CLASSES}),
            "ner": lambda: (BertNER(config, True, NUM_TAGS), "ner", {"num_class": NUM_TAGS, "use_crf": False}),
            "ner_crf": lambda: (BertNER(config, True, NUM_TAGS, use_crf=True), "ner",
                                {"num_class": NUM_TAGS, "use_crf": True}),
            "squad": lambda: (BertSquad(config, True), "squad", {})}[case]()
        checkpoint, model_yaml = save_fine_tuned(network, config, tmp_path, task_name, **settings)
        flags = flags + [f"--checkpoint={checkpoint}", f"--model_config={model_yaml}"]

    paths = export.main(flags + [f"--file_name={tmp_path / case}"])

    assert paths == [str(tmp_path / f"{case}.mindir")]
    assert mindir_inputs(paths[0]) == [(name, [-1, config.seq_length], "INT32")
                                       for name in ("input_ids", "input_mask", "token_type_ids")]
    graph = load_exported(paths[0], config.seq_length)
    input_ids, token_type_ids, input_mask = random_inputs(config, batch_size=3, lengths=(8, 5, 2))
    inputs = [input_ids, input_mask, token_type_ids]
    expected = outputs(live_model(case, config, checkpoint)(*tensors(inputs)))
    if case.startswith("ner"):
        assert len(np.unique(expected[0][input_mask == 1])) > 1, "a comparison of constant tags proves little"
    assert_same(case, outputs(graph(*tensors(inputs))), expected)
    # The same graph at batch size 1, row by row (rows do not interact): compiled once for any batch size.
    for row in range(3):
        assert_same(case, outputs(graph(*tensors([a[row:row + 1] for a in inputs]))),
                    [value[row:row + 1] for value in expected])


def tensors(arrays):
    return [ms.Tensor(a) for a in arrays]


def assert_same(case, got, expected):
    assert [a.shape for a in got] == [a.shape for a in expected]
    for a, b in zip(got, expected):
        if case.startswith("ner"):
            assert a.dtype == b.dtype == np.int32 and np.array_equal(a, b)
        else:
            assert np.abs(a - b).max() < TOLERANCE


def run_expecting_exit(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        export.main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err.strip().splitlines()


@pytest.fixture
def squad_checkpoint(tmp_path):
    config = tiny_config()
    return save_fine_tuned(BertSquad(config, True), config, tmp_path, "squad")


def test_a_checkpoint_of_another_task_is_refused_with_the_mismatches(tmp_path, squad_checkpoint, capsys):
    checkpoint, _ = squad_checkpoint
    # No <task>.yaml to compare with (as for a converted checkpoint): the weights tell.
    lines = run_expecting_exit(["--task=ner", f"--num_class={NUM_TAGS}", "--use_crf=true", f"--checkpoint={checkpoint}",
                                f"--file_name={tmp_path / 'ner'}"] + TINY_FLAGS, capsys)
    assert len(lines) == 1
    assert f"missing crf.transitions ({NUM_TAGS}, {NUM_TAGS})" in lines[0]
    assert f"shape of dense_1.weight: checkpoint (2, 64), network ({NUM_TAGS}, 64)" in lines[0]
    assert not (tmp_path / "ner.mindir").exists()


@pytest.mark.parametrize("flags, message", [
    (["--task=classifier", f"--num_class={NUM_CLASSES}"], "error: --task=classifier: {} describes a ner model"),
    (["--task=ner", "--num_class=4"], f"error: --num_class=4: {{}} records num_class {NUM_CLASSES}"),
    (["--task=ner", "--use_crf=true"], "error: --use_crf=true: {} records a model without a CRF"),
])
def test_options_contradicting_the_task_yaml_are_refused(tmp_path, capsys, flags, message):
    # A softmax NER model with as many tags as a classifier has classes: the
    # same parameter names and shapes; only ner.yaml tells them apart.
    config = tiny_config()
    checkpoint, model_yaml = save_fine_tuned(BertNER(config, True, NUM_CLASSES), config, tmp_path, "ner",
                                             num_class=NUM_CLASSES, use_crf=False)
    assert run_expecting_exit(flags + [f"--checkpoint={checkpoint}", f"--model_config={model_yaml}",
                                       f"--file_name={tmp_path / 'out'}"], capsys) == [message.format(model_yaml)]


def test_the_encoder_needs_encoder_parameters(tmp_path, capsys):
    save_checkpoint_atomic([{"name": "dense.weight", "data": ms.Tensor(np.zeros((2, 2), np.float32))}],
                           str(tmp_path / "other.ckpt"))
    assert run_expecting_exit(["--task=encoder", f"--checkpoint={tmp_path / 'other.ckpt'}",
                               f"--file_name={tmp_path / 'encoder'}"] + TINY_FLAGS, capsys) == [
        f"error: {tmp_path / 'other.ckpt'}: no encoder parameters (bert.*) in it"]


@pytest.mark.parametrize("flags, message", [
    (["--checkpoint=/nonexistent/squad.ckpt"], "error: /nonexistent/squad.ckpt: no such checkpoint file"),
    (["--file_format=ONNX"], "error: --file_format=ONNX: not supported on CPU; use MINDIR"),
    (["--file_format=AIR"], "error: --file_format=AIR: not supported on CPU; use MINDIR"),
    (["--task=classifier", "--model_config="] + TINY_FLAGS,
     "error: --num_class: required for --task=classifier (the number the model was fine-tuned with)"),
    (["--task=decoder"], "error: --task: expected one of encoder, classifier, ner, squad, got 'decoder'"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, squad_checkpoint, capsys, flags, message):
    checkpoint, model_yaml = squad_checkpoint
    argv = ["--task=squad", f"--checkpoint={checkpoint}", f"--model_config={model_yaml}",
            f"--file_name={tmp_path / 'out'}"] + flags
    assert run_expecting_exit(argv, capsys) == [message]
    assert not list(tmp_path.glob("out*"))


def test_weights_over_1gb_are_written_beside_the_graph_and_load(tmp_path, monkeypatch):
    # MindSpore writes a MINDIR whose weights pass TOTAL_SAVE (1 GB: `large`, `nezha`) as
    # <name>_graph.mindir + <name>_variables/; a threshold of 1 KB does it for the tiny model.
    monkeypatch.setattr(serialization, "TOTAL_SAVE", 1)
    config = tiny_config()
    checkpoint = str(tmp_path / "pretrain.ckpt")
    save_pretraining_checkpoint(config, checkpoint)
    paths = export.main(["--task=encoder", f"--checkpoint={checkpoint}", f"--file_name={tmp_path / 'encoder'}"]
                        + TINY_FLAGS)
    assert paths == [str(tmp_path / "encoder_graph.mindir"), str(tmp_path / "encoder_variables")]
    input_ids, token_type_ids, input_mask = random_inputs(config, batch_size=2, lengths=(8, 3))
    inputs = tensors([input_ids, input_mask, token_type_ids])
    assert_same("encoder", outputs(load_exported(paths[0], config.seq_length)(*inputs)),
                outputs(live_model("encoder", config, checkpoint)(*inputs)))
