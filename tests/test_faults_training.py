"""Fault injection (issue 17, training values and checkpoints): each bad value, diverging run or non-finite
checkpoint ends in one `error:` line naming the culprit, exit status 2, no traceback, and leaves the
previous outputs byte-identical with nothing new beside them.

Cases: 3 and 20 (non-finite floats), 4 (divergence and checkpoints), 9 (train_steps), 13 (non-finite
checkpoints and results), 17 (a --config_path file missing keys), 19 (pretrain_eval's batch size, device).
"""

import json
import os
import re

import mindspore as ms
import mindspore.dataset as ds
import numpy as np
import pytest
import yaml
from mindspore import nn

import export
import predict
import pretrain_eval
import run_classifier
import run_pretrain
from src.checkpoint import save_checkpoint_atomic
from src.create_finetune_data import main as convert_main
from src.create_pretraining_data import main as generate_main
from src.device import detected_targets
from src.files import NonFiniteError, finite_json
from src.task_models import BertCLSModel
from src.train_cell import INF_NAN, BertTrainOneStepCell
from src.training import TrainingError, TrainingPlan, checkpoint_paths, checkpoint_step, train
from tests.helpers import randomize_parameters, tiny_config
from tests.test_create_finetune_data import CHINESE, FIXTURES
from tests.test_create_pretraining_data import UNCASED, write_corpus

SEQ = 32
VOCAB_SIZE = 30522  # the uncased vocabulary the pretraining data is made with
BATCH = 4
PRETRAIN_YAML = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pretrain_config.yaml")


# ---------------------------------------------------------------- shared helpers and fixtures

def refusal(main, argv, capsys):
    """Run a command's `main(argv)` in-process, expecting a refusal: exit 2, one `error:` line (the last line
    of stderr; a command may print its set-up line there first), no traceback. Returns that line."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and err.rstrip("\n").splitlines()[-1] == errors[0], err
    assert "Traceback" not in err
    return errors[0]


def snapshot(root):
    """Every path under `root` with its bytes (None for a directory): equal snapshots mean the previous
    outputs are byte-identical and nothing (no partial or temporary file) was added."""
    return {str(path.relative_to(root)): None if path.is_dir() else path.read_bytes()
            for path in sorted(root.rglob("*"))}


def previous_outputs(directory, *names):
    """A directory holding a previous run's outputs, to check that a refused run leaves them as they were."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        (directory / name).write_text(f"previous {name}\n")
    return directory


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """21 pretraining instances of 32 tokens in one shard (5 batches of 4)."""
    root = tmp_path_factory.mktemp("faults_pretraining_data")
    corpus = write_corpus(root / "corpus.txt", documents=6, sentences=8)
    generate_main([f"--input_file={corpus}", f"--output_dir={root / 'data'}", f"--vocab_file={UNCASED}",
                   f"--max_seq_length={SEQ}", "--max_predictions_per_seq=5", "--dupe_factor=1",
                   "--num_output_shards=1"])
    return root / "data"


def pretrain_args(data_dir, output_dir, *extra):
    return [f"--data_dir={data_dir}", "--bert_network=tiny", f"--model.vocab_size={VOCAB_SIZE}",
            f"--model.seq_length={SEQ}", f"--batch_size={BATCH}", f"--output_dir={output_dir}",
            "--log_every_steps=1", "--Lamb.warmup_steps=1", *extra]


@pytest.fixture(scope="module")
def good_checkpoint(data_dir, tmp_path_factory):
    """A finite training checkpoint, at the end of two epochs (train_steps -1)."""
    output_dir = tmp_path_factory.mktemp("faults_good_run")
    return run_pretrain.main(pretrain_args(data_dir, output_dir, "--train_steps=-1", "--epoch_size=2",
                                           "--log_every_steps=100"))


def altered_copy(checkpoint, path, change):
    """Save `checkpoint` to `path` with `change(name, array)` applied to every tensor (returns the array)."""
    params = [{"name": name, "data": ms.Tensor(change(name, value.asnumpy().copy()))}
              for name, value in ms.load_checkpoint(str(checkpoint)).items()]
    ms.save_checkpoint(params, str(path))
    return str(path)


def with_nan_in(tensor_name):
    """A `change` for `altered_copy` that puts one NaN into `tensor_name`."""
    def change(name, array):
        if name == tensor_name:
            array.reshape(-1)[1] = np.nan
        return array
    return change


# ---------------------------------------------------------------- cases 3, 20: non-finite floats

@pytest.mark.parametrize("flag", ["--Lamb.learning_rate=inf", "--Lamb.learning_rate=nan",
                                  "--Lamb.learning_rate=-inf", "--Lamb.learning_rate=1e999",
                                  "--Lamb.end_learning_rate=NaN", "--gradient_clip_norm=inf"])
def test_non_finite_float_flags_are_refused_naming_the_key(data_dir, tmp_path, capsys, flag):
    """Before: inf ran to exit 0 with NaN in 46 checkpoint tensors; nan was blamed on end_learning_rate."""
    key, raw = flag.split("=")
    line = refusal(run_pretrain.main, pretrain_args(data_dir, tmp_path / "out", flag), capsys)
    assert line == f"error: {key}: expected a finite number, got {raw!r}"
    assert not (tmp_path / "out").exists()


def test_non_finite_yaml_values_are_refused_naming_file_and_key(data_dir, tmp_path, capsys):
    text = open(PRETRAIN_YAML, encoding="utf-8").read()
    assert text.count("learning_rate: 3.0e-4") == 1  # Lamb's
    job_yaml = tmp_path / "job.yaml"
    job_yaml.write_text(text.replace("learning_rate: 3.0e-4", "learning_rate: .inf"), encoding="utf-8")
    line = refusal(run_pretrain.main, pretrain_args(data_dir, tmp_path / "out", f"--config_path={job_yaml}"), capsys)
    assert line == f"error: {job_yaml}: Lamb.learning_rate: expected a finite number, got inf"
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- case 17: --config_path missing keys

@pytest.mark.parametrize("main", [run_pretrain.main, pretrain_eval.main])
def test_config_path_missing_keys_are_listed_before_any_work(data_dir, tmp_path, capsys, main):
    """Before: AttributeError: config has no key 'batch_size'."""
    values = yaml.safe_load(open(PRETRAIN_YAML, encoding="utf-8"))
    del values["batch_size"], values["Momentum"], values["Lamb"]["power"]
    job_yaml = tmp_path / "job.yaml"
    job_yaml.write_text(yaml.safe_dump(values), encoding="utf-8")
    line = refusal(main, [f"--config_path={job_yaml}", f"--data_dir={data_dir}", f"--output_dir={tmp_path / 'out'}",
                          "--load_checkpoint_path=x.ckpt"], capsys)
    assert line == (f"error: --config_path {job_yaml}: missing 3 key(s) of the job's pretrain_config.yaml: "
                    "batch_size, Lamb.power, Momentum")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- case 9: train_steps

@pytest.mark.parametrize("steps", ["0", "-5"])
def test_train_steps_below_one_other_than_minus_one_is_refused(data_dir, tmp_path, capsys, steps):
    """Before: 0 and -5 silently trained a whole epoch."""
    line = refusal(run_pretrain.main, pretrain_args(data_dir, tmp_path / "out", f"--train_steps={steps}"), capsys)
    assert line == f"error: train_steps must be at least 1, or -1 for epoch_size epochs, got {steps}"
    assert not (tmp_path / "out").exists()


def test_train_steps_minus_one_trains_epoch_size_epochs(data_dir, good_checkpoint):
    rows = json.loads((data_dir / "schema.json").read_text())["numRows"]
    assert checkpoint_step(good_checkpoint) == 2 * (rows // BATCH)


# ---------------------------------------------------------------- case 4: divergence

def test_a_diverging_run_stops_at_the_first_non_finite_loss_keeping_the_finite_checkpoints(data_dir, tmp_path,
                                                                                          capsys):
    """Before: with learning rate 1e30 the loss was NaN from step 3, the run went on, and the stop message named a
    later checkpoint as the last good one after rotation had deleted the finite ones."""
    line = refusal(run_pretrain.main, pretrain_args(data_dir, tmp_path, "--Lamb.learning_rate=1e30",
                                                    "--train_steps=8", "--save_checkpoint_steps=1",
                                                    "--save_checkpoint_num=2"), capsys)
    match = re.fullmatch(r"error: the loss is nan at step (\d+): training diverged \(a learning rate too high\?\); "
                         r"last good checkpoint: (.*)", line)
    assert match, line
    stop_step, named = int(match[1]), match[2]
    kept = checkpoint_paths(str(tmp_path / "checkpoints"))
    assert named == kept[-1] == str(tmp_path / "checkpoints" / f"checkpoint_bert_step_{stop_step - 1}.ckpt")
    for path in kept:  # every checkpoint left is finite (NumPy's view of the file)
        assert all(np.isfinite(value.asnumpy()).all() for value in ms.load_checkpoint(path).values()), path
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [record["step"] for record in records] == list(range(1, stop_step))
    assert not [path for path in os.listdir(tmp_path / "checkpoints") if path.startswith(".tmp")]


class _LossWithUnusedWeight(nn.Cell):
    """loss = sum(w * x), finite whatever `unused` holds: non-finite weights that the loss does not show."""

    def __init__(self):
        super().__init__()
        self.w = ms.Parameter(ms.Tensor(np.full(3, 0.5, np.float32)), name="w")
        self.unused = ms.Parameter(ms.Tensor(np.zeros(2, np.float32)), name="unused")

    def construct(self, x):
        return (self.w * x).sum()


def test_non_finite_weights_are_never_saved_and_the_last_finite_checkpoint_stays(tmp_path):
    network = _LossWithUnusedWeight()
    cell = BertTrainOneStepCell(network, nn.Momentum(network.trainable_params(), 0.1, 0.0), overflow_check=INF_NAN)
    def dataset():
        return ds.NumpySlicesDataset({"x": np.ones((8, 3), np.float32)}, shuffle=False).batch(1)
    plan = TrainingPlan(total_steps=2, micro_batches_per_step=1, samples_per_micro_batch=1, steps_per_epoch=8,
                        log_every_steps=1, save_checkpoint_steps=1, save_checkpoint_num=1,
                        checkpoint_dir=str(tmp_path), output_dir="", max_overflow_steps_at_floor=5)
    _, last = train(cell, dataset(), plan)
    assert last == str(tmp_path / "checkpoint_bert_step_2.ckpt")
    before = snapshot(tmp_path)
    network.unused.set_data(ms.Tensor(np.array([0.0, np.inf], np.float32)))
    with pytest.raises(TrainingError) as error:  # resumed: the first save would hold the inf
        train(cell, dataset(), TrainingPlan(**{**vars(plan), "total_steps": 4}),
              {"trained_steps": 2, "micro_batches_done": 2, "path": last})
    assert str(error.value) == (f"unused holds inf or NaN at step 3: training diverged, no checkpoint saved; "
                                f"last good checkpoint: {last}")
    assert snapshot(tmp_path) == before
    # Without checkpoints (fine-tuning saves its model after the run) the weights are checked at the end.
    with pytest.raises(TrainingError, match="^unused holds inf or NaN at step 4"):
        train(cell, dataset(), TrainingPlan(**{**vars(plan), "total_steps": 4, "checkpoint_dir": ""}),
              {"trained_steps": 2, "micro_batches_done": 2})


# ---------------------------------------------------------------- case 13: non-finite checkpoints and results

@pytest.fixture(scope="module")
def nan_checkpoint(good_checkpoint, tmp_path_factory):
    """The good checkpoint with one NaN in its word embeddings: (path, tensor name)."""
    name = "bert.bert_embedding_lookup.embedding_table"
    assert name in ms.load_checkpoint(good_checkpoint)
    path = tmp_path_factory.mktemp("faults_nan") / "nan.ckpt"
    return altered_copy(good_checkpoint, path, with_nan_in(name)), name


def test_pretrain_eval_and_resume_refuse_a_nan_checkpoint(data_dir, nan_checkpoint, tmp_path, capsys):
    """Before: evaluated without complaint, eval_results.json then held NaN."""
    path, name = nan_checkpoint
    expected = f"error: {path}: tensor {name} holds inf or NaN (the training that wrote it diverged); " \
               "use an earlier checkpoint"
    out = previous_outputs(tmp_path / "eval", "eval_results.json")
    before = snapshot(out)
    assert refusal(pretrain_eval.main, pretrain_args(data_dir, out, f"--load_checkpoint_path={path}",
                                                     "--overwrite=true"), capsys) == expected
    assert snapshot(out) == before
    run = previous_outputs(tmp_path / "run")
    before = snapshot(run)
    assert refusal(run_pretrain.main, pretrain_args(data_dir, run, f"--load_checkpoint_path={path}",
                                                    "--train_steps=4"), capsys) == expected
    assert set(snapshot(run)) - set(before) <= {"checkpoints"}  # the checked, still empty, checkpoint directory
    assert not list((run / "checkpoints").iterdir())


def test_export_refuses_a_nan_checkpoint(nan_checkpoint, tmp_path, capsys):
    path, name = nan_checkpoint
    line = refusal(export.main, ["--task=encoder", f"--checkpoint={path}", f"--file_name={tmp_path / 'encoder'}",
                                 "--bert_network=tiny", f"--model.vocab_size={VOCAB_SIZE}",
                                 f"--model.seq_length={SEQ}"], capsys)
    assert line.startswith(f"error: {path}: tensor {name} holds inf or NaN")
    assert not list(tmp_path.iterdir())


def nan_classifier(directory, num_class, labels, vocab_size, head_weight=np.nan):
    """A fine-tuned classifier (<task>.ckpt, <task>.yaml) as fine-tuning writes them, every weight of its
    head `head_weight`: (checkpoint path, name of the head's weight)."""
    config = tiny_config(vocab_size=vocab_size, seq_length=SEQ, max_position_embeddings=SEQ)
    model = BertCLSModel(config, False, num_class)
    randomize_parameters(model)
    name = model.dense_1.weight.name
    model.dense_1.weight.set_data(ms.Tensor(np.full(model.dense_1.weight.shape, head_weight, np.float32)))
    save_checkpoint_atomic(model, str(directory / "classifier.ckpt"))
    (directory / "classifier.yaml").write_text(yaml.safe_dump(
        {"task": "classifier", "num_class": num_class, "labels": labels, "do_lower_case": True,
         "model": dict(vars(config))}), encoding="utf-8")
    return directory / "classifier.ckpt", name


@pytest.mark.parametrize("head_weight", [np.nan, 3e38])
def test_predict_refuses_a_nan_checkpoint_and_never_writes_nan(tmp_path, capsys, head_weight):
    """A NaN head is refused on loading; a finite head of 3e38 makes the logits, and so the probabilities,
    non-finite: refused when the outputs are written."""
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    checkpoint, name = nan_classifier(tmp_path, 2, ["no", "yes"], len(vocab), head_weight)
    (tmp_path / "input.txt").write_text("\nthe cat\n", encoding="utf-8")
    out = previous_outputs(tmp_path / "out", "predictions.jsonl")
    before = snapshot(out)
    line = refusal(predict.main, ["--task=classifier", f"--config={tmp_path / 'classifier.yaml'}",
                                  f"--checkpoint={checkpoint}", f"--vocab_file={tmp_path / 'vocab.txt'}",
                                  f"--input_file={tmp_path / 'input.txt'}",
                                  f"--output_file={out / 'predictions.jsonl'}"], capsys)
    if np.isnan(head_weight):
        assert line.startswith(f"error: {checkpoint}: tensor {name} holds inf or NaN")
    else:
        assert line == (f"error: --output_file {out / 'predictions.jsonl'} (input line 2): not written: "
                        "probability is nan, and JSON holds finite numbers only (the model's outputs are not finite)")
    assert snapshot(out) == before


def test_fine_tuning_evaluation_refuses_a_nan_checkpoint(tmp_path, capsys):
    tnews = tmp_path / "tnews"
    convert_main.__wrapped__(["--task=tnews", f"--input_file={os.path.join(FIXTURES, 'tnews.json')}",
                              f"--vocab_file={CHINESE}", f"--output_dir={tnews}", "--dev_fraction=0.25",
                              f"--max_seq_length={SEQ}",
                              "--label_file=" + os.path.join(FIXTURES, "tnews_labels.json")])
    labels = json.loads((tnews / "label2id.json").read_text(encoding="utf-8"))
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    checkpoint, name = nan_classifier(model_dir, len(labels), sorted(labels, key=labels.get), 21128)
    out = previous_outputs(tmp_path / "eval", "eval_results.json")
    before = snapshot(out)
    line = refusal(run_classifier.main, [
        "--bert_network=tiny", "--model.vocab_size=21128", f"--model.seq_length={SEQ}", f"--output_dir={out}",
        "--do_eval=true", f"--num_class={len(labels)}", f"--eval_data_file_path={tnews / 'dev.tfrecord'}",
        f"--label2id_file_path={tnews / 'label2id.json'}", f"--model_config={model_dir / 'classifier.yaml'}",
        f"--load_finetune_checkpoint_path={checkpoint}", "--overwrite=true"], capsys)
    assert line.startswith(f"error: {checkpoint}: tensor {name} holds inf or NaN")
    assert snapshot(out) == before


def test_results_that_are_not_finite_are_not_written(data_dir, good_checkpoint, tmp_path, capsys):
    """Word embeddings of 3e38 are finite, but their LayerNorm overflows: the model's loss is NaN."""
    huge = altered_copy(good_checkpoint, tmp_path / "huge.ckpt",
                        lambda name, array: np.full_like(array, 3e38) if "embedding_lookup" in name else array)
    out = previous_outputs(tmp_path / "eval", "eval_results.json")
    before = snapshot(out)
    line = refusal(pretrain_eval.main, pretrain_args(data_dir, out, f"--load_checkpoint_path={huge}",
                                                     "--overwrite=true"), capsys)
    assert re.fullmatch(rf"error: {re.escape(str(out / 'eval_results.json'))}: not written: mlm_\w+ is nan, and JSON "
                        r"holds finite numbers only \(the model's outputs are not finite\)", line), line
    assert snapshot(out) == before


def test_finite_json_names_the_first_non_finite_entry():
    assert json.loads(finite_json({"a": [1.5, {"b": 2}]}, "x")) == {"a": [1.5, {"b": 2}]}
    with pytest.raises(NonFiniteError, match=r"^r.json: not written: a.1.b is -inf, and JSON"):
        finite_json({"a": [1.5, {"b": -np.inf}], "c": np.nan}, "r.json")


# ---------------------------------------------------------------- case 19: pretrain_eval's batch size, device

def test_pretrain_eval_refuses_a_zero_batch_and_an_unusable_device(data_dir, good_checkpoint, tmp_path, capsys):
    """Before: --batch_size=0 ended in a traceback."""
    out = previous_outputs(tmp_path / "eval", "eval_results.json")
    before = snapshot(out)
    args = pretrain_args(data_dir, out, f"--load_checkpoint_path={good_checkpoint}", "--overwrite=true")
    assert refusal(pretrain_eval.main, args + ["--batch_size=0"], capsys) == \
        "error: --batch_size must be at least 1, got 0"
    if "GPU" not in detected_targets():
        assert refusal(pretrain_eval.main, args + ["--device_target=GPU"], capsys).startswith(
            "error: device_target=GPU: this MindSpore build cannot use a GPU device")
    assert snapshot(out) == before
