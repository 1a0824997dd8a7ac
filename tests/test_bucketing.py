"""Length bucketing of fine-tuning batches: rows lose only padding, and losses and updates do not change."""

import mindspore as ms
import numpy as np
import pytest

from helpers import randomize_parameters, tiny_config
from src.bert_for_finetune import BertCLS, BertNER
from src.bert_for_pre_training import BertTrainOneStepCell
from src.optimizers import AdamWeightDecay
from src.dataset import CLASSIFIER_COLUMNS, DatasetError, bucket_lengths, create_dataset
from src.records import write_tfrecord

SEQ = 32
BUCKETS = [8, 16]
ROWS = 40
BATCH = 4
NUM_LABELS = 3


def make_rows(per_token_labels, seed=0):
    """ROWS rows of random real lengths 2..SEQ; input_ids[0] is the row's number (its identity)."""
    rng = np.random.RandomState(seed)
    rows = []
    for number in range(ROWS):
        length = int(rng.randint(2, SEQ + 1))
        real = np.arange(SEQ) < length
        input_ids = np.where(real, rng.randint(1, 50, SEQ), 0)
        input_ids[0] = number
        labels = (np.where(real, rng.randint(0, NUM_LABELS, SEQ), 0) if per_token_labels
                  else np.array([number % NUM_LABELS]))
        rows.append({"input_ids": input_ids.astype(np.int64), "input_mask": real.astype(np.int64),
                     "segment_ids": np.where(np.arange(SEQ) < length // 2, 0, real).astype(np.int64),
                     "label_ids": labels.astype(np.int64)})
    return rows


@pytest.fixture(params=[False, True], ids=["classifier", "ner"])
def data(request, tmp_path):
    rows = make_rows(per_token_labels=request.param)
    path = str(tmp_path / "train.tfrecord")
    write_tfrecord(path, rows)
    return rows, path


def batches(dataset):
    return list(dataset.create_tuple_iterator(output_numpy=True, num_epochs=1))


def test_bucket_lengths():
    assert bucket_lengths([16, 8, 64, 8], 32) == [8, 16, 32]
    assert bucket_lengths([], 32) == [32]
    with pytest.raises(DatasetError, match="bucket_list"):
        bucket_lengths([0, 16], 32)


def test_rows_keep_every_real_token_in_the_shortest_bucket(data):
    rows, path = data
    dataset = create_dataset(path, CLASSIFIER_COLUMNS, BATCH, bucket_list=BUCKETS, drop_remainder=False)
    seen = set()
    for batch in batches(dataset):
        length = batch[0].shape[1]
        assert length in (8, 16, 32) and all(column.shape[0] == batch[0].shape[0] for column in batch)
        for input_ids, input_mask, segment_ids, label_ids in zip(*batch):
            row = rows[int(input_ids[0])]
            real = int(row["input_mask"].sum())
            assert length == min(bucket for bucket in (8, 16, 32) if bucket >= real)
            np.testing.assert_array_equal(input_ids, row["input_ids"][:length])
            np.testing.assert_array_equal(input_mask, row["input_mask"][:length])
            np.testing.assert_array_equal(segment_ids, row["segment_ids"][:length])
            expected_labels = row["label_ids"] if row["label_ids"].size == 1 else row["label_ids"][:length]
            np.testing.assert_array_equal(label_ids, expected_labels)
            seen.add(int(input_ids[0]))
    assert seen == set(range(ROWS))


def test_training_batches_are_full(data):
    _, path = data
    dataset = create_dataset(path, CLASSIFIER_COLUMNS, BATCH, bucket_list=BUCKETS, do_shuffle=True)
    sizes = [batch[0].shape[0] for batch in batches(dataset)]
    assert sizes and set(sizes) == {BATCH} and dataset.get_dataset_size() == len(sizes)


def padded(batch):
    """The same rows padded back to SEQ with zeros (labels of length 1 stay as they are)."""
    return [np.pad(column, ((0, 0), (0, SEQ - column.shape[1]))) if column.shape[1] > 1 else column
            for column in batch]


@pytest.mark.parametrize("head", ["classifier", "ner_softmax", "ner_crf"])
def test_bucketed_batches_give_the_losses_and_updates_of_the_padded_batches(head, tmp_path):
    rows = make_rows(per_token_labels=head != "classifier", seed=1)
    path = str(tmp_path / "train.tfrecord")
    write_tfrecord(path, rows)
    dataset = create_dataset(path, CLASSIFIER_COLUMNS, BATCH, bucket_list=BUCKETS)
    # Two steps on batches of different lengths: each length runs its own compiled graph, on shared weights.
    by_length = {batch[0].shape[1]: batch for batch in batches(dataset)}
    steps = [by_length[length] for length in sorted(by_length)[:2]]
    assert steps[0][0].shape[1] < SEQ and len(steps) == 2
    config = tiny_config(seq_length=SEQ, max_position_embeddings=SEQ, hidden_dropout_prob=0.0,
                         attention_probs_dropout_prob=0.0)

    def train(steps):
        ms.set_seed(0)
        network = (BertCLS(config, True, NUM_LABELS) if head == "classifier"
                   else BertNER(config, True, NUM_LABELS, use_crf=head == "ner_crf"))
        randomize_parameters(network, seed=3, scale=0.1)
        optimizer = AdamWeightDecay(network.trainable_params(), learning_rate=1e-2)
        cell = BertTrainOneStepCell(network, optimizer)
        losses = []
        for batch in steps:
            loss, overflow, _ = cell(*[ms.Tensor(column) for column in batch])
            assert not overflow
            losses.append(float(loss.asnumpy()))
        return losses, {param.name: param.asnumpy() for param in network.trainable_params()}

    losses_short, weights_short = train(steps)
    losses_padded, weights_padded = train([padded(batch) for batch in steps])
    assert losses_short == pytest.approx(losses_padded, rel=1e-6, abs=1e-6)
    for name, value in weights_padded.items():
        np.testing.assert_allclose(weights_short[name], value, rtol=1e-5, atol=1e-6, err_msg=name)
