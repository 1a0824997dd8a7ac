"""Fixed shapes on Ascend: the choice per target, and (forced on CPU) padded last evaluation batches whose
results equal the unpadded run's, and bucket_list ignored."""

import mindspore as ms
import numpy as np
import pytest

import pretrain_eval
import src.dataset
from src.columns import column_names
from src.dataset import create_dataset, fixed_shapes, pad_rows
from src.finetune import predict, rows_dataset
from src.records import write_tfrecord
from src.task_models import BertCLSModel, TaskPredictor
from tests.helpers import randomize_parameters, tiny_config

SEQ = 8
ROWS = 11   # with BATCH 4: two full batches and a last one of 3 rows
BATCH = 4
MASKED = 2  # masked_lm positions per sequence
NUM_CLASSES = 3


@pytest.mark.parametrize("device_target, fixed", [("Ascend", True), ("GPU", False), ("CPU", False)])
def test_fixed_shapes_only_on_ascend(device_target, fixed):
    assert fixed_shapes(device_target) is fixed


def test_pad_rows_repeats_the_last_row():
    ids = np.arange(6).reshape(3, 2)
    labels = np.array([[7], [8], [9]])
    (padded_ids, padded_labels), real_rows = pad_rows([ids, labels], 5)
    assert real_rows == 3
    np.testing.assert_array_equal(padded_ids, [[0, 1], [2, 3], [4, 5], [4, 5], [4, 5]])
    np.testing.assert_array_equal(padded_labels, [[7], [8], [9], [9], [9]])
    (full,), real_rows = pad_rows([ids], 3)
    assert real_rows == 3 and full is ids


def random_rows(seed=0):
    """ROWS classifier rows of random lengths 2..SEQ."""
    rng = np.random.RandomState(seed)
    rows = []
    for _ in range(ROWS):
        real = np.arange(SEQ) < rng.randint(2, SEQ + 1)
        rows.append({"input_ids": np.where(real, rng.randint(1, 50, SEQ), 0), "input_mask": real.astype(np.int64),
                     "segment_ids": np.zeros(SEQ, np.int64), "label_ids": np.array([rng.randint(NUM_CLASSES)])})
    return rows


class ShapeRecorder:
    """Calls a predictor and records the batch sizes it was given."""

    def __init__(self, predictor):
        self.predictor, self.batch_sizes = predictor, []

    def __call__(self, *inputs):
        self.batch_sizes.append(inputs[0].shape[0])
        return self.predictor(*inputs)


def test_padded_last_batch_predicts_what_the_unpadded_run_does():
    model = BertCLSModel(tiny_config(seq_length=SEQ), False, NUM_CLASSES)
    randomize_parameters(model, seed=2, scale=0.1)
    predictor = TaskPredictor(model)
    rows = random_rows()
    results = {}
    for pad in (False, True):
        recorder = ShapeRecorder(predictor)
        results[pad] = predict(recorder, rows_dataset(rows, column_names("classifier"), BATCH), fixed_shape=pad)
        assert recorder.batch_sizes == ([BATCH] * 3 if pad else [BATCH, BATCH, ROWS - 2 * BATCH])
    (columns, (probabilities,)), (padded_columns, (padded_probabilities,)) = results[False], results[True]
    assert probabilities.shape == padded_probabilities.shape == (ROWS, NUM_CLASSES)
    np.testing.assert_allclose(padded_probabilities, probabilities, rtol=1e-5, atol=1e-6)
    for name in column_names("classifier"):
        np.testing.assert_array_equal(padded_columns[name], columns[name])
        np.testing.assert_array_equal(columns[name], np.stack([row[name] for row in rows]))


def pretraining_rows(seed=0):
    """ROWS pretraining rows of vocabulary 50: random tokens, MASKED masked positions (some weight 0)."""
    rng = np.random.RandomState(seed)
    rows = []
    for _ in range(ROWS):
        rows.append({"input_ids": rng.randint(1, 50, SEQ), "input_mask": np.ones(SEQ, np.int64),
                     "segment_ids": (np.arange(SEQ) >= SEQ // 2).astype(np.int64),
                     "next_sentence_labels": np.array([rng.randint(2)]),
                     "masked_lm_positions": rng.choice(SEQ, MASKED, replace=False),
                     "masked_lm_ids": rng.randint(1, 50, MASKED),
                     "masked_lm_weights": np.array([1.0, rng.randint(2)], np.float32)})
    return [{name: row[name] if name == "masked_lm_weights" else row[name].astype(np.int64) for name in row}
            for row in rows]


def test_padded_last_batch_gives_the_pretraining_metrics_of_the_unpadded_run(tmp_path):
    path = str(tmp_path / "eval.tfrecord")
    write_tfrecord(path, pretraining_rows())
    metrics_net = pretrain_eval.PretrainingMetrics(tiny_config(seq_length=SEQ))
    randomize_parameters(metrics_net, seed=4, scale=0.1)
    metrics_net.set_train(False)
    dataset = create_dataset(path, column_names("pretraining"), BATCH, drop_remainder=False)
    unpadded = pretrain_eval.evaluate(metrics_net, dataset, pad_last_batch=False)
    padded = pretrain_eval.evaluate(metrics_net, dataset, pad_last_batch=True)
    assert unpadded["sequences"] == padded["sequences"] == ROWS
    assert padded.keys() == unpadded.keys()
    for key, value in unpadded.items():
        assert padded[key] == pytest.approx(value, rel=1e-6), key


def test_bucket_list_is_ignored_where_shapes_are_fixed(tmp_path, monkeypatch, capsys):
    path = str(tmp_path / "train.tfrecord")
    write_tfrecord(path, random_rows())
    monkeypatch.setattr(src.dataset, "FIXED_SHAPE_TARGETS", (ms.get_context("device_target"),))
    dataset = create_dataset(path, column_names("classifier"), BATCH, bucket_list=[4])
    assert {batch[0].shape for batch in dataset.create_tuple_iterator(output_numpy=True, num_epochs=1)} == {(BATCH, SEQ)}
    assert capsys.readouterr().out == (f"note: bucket_list [4] ignored on {ms.get_context('device_target')}: every "
                                       f"batch is padded to seq_length {SEQ}, so one compiled graph serves them all\n")
