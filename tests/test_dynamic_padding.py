"""Evaluation with dynamic padding (src.finetune.predict): rows run sorted by length in batches cut to
their bucket, and come back in input order with the values of an unsorted run at full length."""

import numpy as np
import pytest

import mindspore as ms
import run_classifier
from src.finetune import batch_plan, predict, rows_dataset
from src.columns import column_names
from src.task_models import BertCLSModel, BertNERModel, BertSquadModel, TaskPredictor
from tests.helpers import randomize_parameters, tiny_config

SEQ = 16
BUCKETS = [4, 8]
ROWS = 11    # with BATCH 4: two full batches and a last one of 3 rows
BATCH = 4
NUM_LABELS = 5
INPUTS = ("input_ids", "input_mask", "segment_ids")


def test_batch_plan_sorts_by_length_and_cuts_to_the_bucket():
    lengths = [7, 2, 16, 3, 4, 9]
    mask = (np.arange(SEQ) < np.array(lengths)[:, None]).astype(np.int32)
    plan = batch_plan(mask, 2, [4, 8, SEQ])
    assert [(rows.tolist(), length) for rows, length in plan] == [([1, 3], 4), ([4, 0], 8), ([5, 2], SEQ)]


def random_rows(seed=0):
    """ROWS rows of random real lengths 2..SEQ (in random order), with per-token labels."""
    rng = np.random.RandomState(seed)
    rows = []
    for length in rng.permutation([2, 3, 3, 4, 5, 6, 8, 9, 12, 16, 3]):
        real = np.arange(SEQ) < length
        rows.append({"input_ids": np.where(real, rng.randint(1, 50, SEQ), 0), "input_mask": real.astype(np.int64),
                     "segment_ids": np.where(np.arange(SEQ) < length // 2, 0, real).astype(np.int64),
                     "label_ids": np.zeros(SEQ, np.int64)})
    return rows


class ShapeRecorder:
    """Calls a predictor and records the input shapes it was given."""

    def __init__(self, predictor):
        self.predictor, self.shapes = predictor, []

    def __call__(self, *inputs):
        self.shapes.append(tuple(inputs[0].shape))
        return self.predictor(*inputs)


def unsorted_run(predictor, rows):
    """The predictor's outputs over `rows` in input order, batches of BATCH at full length."""
    outputs = []
    for start in range(0, len(rows), BATCH):
        batch = [np.stack([row[name] for row in rows[start:start + BATCH]]).astype(np.int32) for name in INPUTS]
        result = predictor(*[ms.Tensor(values) for values in batch])
        outputs.append([value.asnumpy() for value in (result if isinstance(result, tuple) else (result,))])
    return [np.concatenate(values) for values in zip(*outputs)]


MODELS = {"classifier": lambda config: BertCLSModel(config, False, NUM_LABELS),
          "ner_softmax": lambda config: BertNERModel(config, False, NUM_LABELS),
          "ner_crf": lambda config: BertNERModel(config, False, NUM_LABELS, use_crf=True),
          "squad": lambda config: BertSquadModel(config, False)}


@pytest.mark.parametrize("task", MODELS)
def test_cut_sorted_evaluation_returns_the_unsorted_full_length_results_in_input_order(task):
    model = MODELS[task](tiny_config(seq_length=SEQ))
    randomize_parameters(model, seed=2, scale=0.3)
    predictor = TaskPredictor(model)
    rows = random_rows()
    recorder = ShapeRecorder(predictor)
    columns, outputs = predict(recorder, rows_dataset(rows, column_names("classifier"), BATCH), bucket_list=BUCKETS,
                               token_outputs=task != "classifier", fixed_shape=False)
    # Sorted lengths 2 3 3 3 | 4 5 6 8 | 9 12 16: batches cut to 4, 8 and SEQ.
    assert recorder.shapes == [(BATCH, 4), (BATCH, 8), (ROWS - 2 * BATCH, SEQ)]
    for name in column_names("classifier"):
        np.testing.assert_array_equal(columns[name], np.stack([row[name] for row in rows]))
    expected = unsorted_run(predictor, rows)
    assert len(outputs) == len(expected)
    for values, reference in zip(outputs, expected):
        assert values.shape == reference.shape and values.dtype == reference.dtype
        if task.startswith("ner"):
            np.testing.assert_array_equal(values, reference)   # tags; 0 at padding either way
            continue
        if task == "squad":  # the logits of the positions each row's batch ran; the lowest float beyond
            computed = values > np.finfo(values.dtype).min
            assert computed[columns["input_mask"] == 1].all() and not computed.all()
            values, reference = values[computed], reference[computed]
        np.testing.assert_allclose(values, reference, rtol=1e-5, atol=1e-5)


def test_fixed_shape_runs_one_shape():
    model = BertCLSModel(tiny_config(seq_length=SEQ), False, NUM_LABELS)
    randomize_parameters(model, seed=2, scale=0.3)
    recorder = ShapeRecorder(TaskPredictor(model))
    rows = random_rows()
    _, (probabilities,) = predict(recorder, rows_dataset(rows, column_names("classifier"), BATCH), bucket_list=BUCKETS,
                                  fixed_shape=True)
    assert recorder.shapes == [(BATCH, SEQ)] * 3
    np.testing.assert_allclose(probabilities, unsorted_run(recorder.predictor, rows)[0], rtol=1e-5, atol=1e-6)


def test_a_bad_bucket_list_stops_the_job_before_any_work(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_classifier.main([f"--output_dir={tmp_path}", "--do_eval=true", "--eval_data_file_path=x.tfrecord",
                             "--load_finetune_checkpoint_path=x.ckpt", "--bucket_list=[64, -1]"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: bucket_list: expected positive whole lengths such as [32, 64], got [64, -1]"]
