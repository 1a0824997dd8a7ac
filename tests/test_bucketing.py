"""Dynamic padding of fine-tuning batches: batches keep the rows plain batching gives them (random when
shuffled), their token columns lose only padding, and losses and updates do not change."""

import mindspore as ms
import mindspore.dataset as ds
import numpy as np
import pytest

from helpers import randomize_parameters, tiny_config
from src.optimizers import AdamWeightDecay
from src.columns import column_names
from src.dataset import DatasetError, bucket_length, bucket_lengths, create_dataset
from src.records import write_tfrecord
from src.task_models import BertCLS, BertNER
from src.train_cell import BertTrainOneStepCell

SEQ = 32
BUCKETS = [8, 16]
ROWS = 40
BATCH = 4
NUM_LABELS = 3
# Real lengths of the rows of the first batches (in file order), so that unshuffled batches 0 and 1
# fall in buckets 8 and 16; the other rows are 2..SEQ long.
FIRST_BATCH_LENGTHS = ((2, 8), (9, 16))


def row_length(number, rng):
    batch = number // BATCH
    shortest, longest = FIRST_BATCH_LENGTHS[batch] if batch < len(FIRST_BATCH_LENGTHS) else (2, SEQ)
    return int(rng.randint(shortest, longest + 1))


def make_rows(per_token_labels, seed=0):
    """ROWS rows of random real lengths; input_ids[0] is the row's number (its identity)."""
    rng = np.random.RandomState(seed)
    rows = []
    for number in range(ROWS):
        length = row_length(number, rng)
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
    for bad in ([0, 16], [8.5], ["a"], [True]):
        with pytest.raises(DatasetError, match="bucket_list: expected positive whole lengths"):
            bucket_lengths(bad, 32)


def test_bucket_length_holds_the_longest_row_and_every_position():
    mask = np.array([[1, 1, 0, 0, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0, 0, 0]])
    assert bucket_length(mask, [2, 4, 8]) == 4                          # longest row: 3 tokens
    assert bucket_length(mask[:1], [2, 4, 8]) == 2
    assert bucket_length(mask, [2, 4, 8], [np.array([[0], [4]])]) == 8  # position 4 needs 5 values
    assert bucket_length(mask, [2, 4, 8], [np.array([[0], [9]])]) == 8  # nothing holds it: all of seq_length
    assert bucket_length(np.zeros((2, 8), int), [2, 4, 8]) == 2


def test_batches_keep_their_rows_and_lose_only_padding(data):
    rows, path = data
    plain = batches(create_dataset(path, column_names("classifier"), BATCH, drop_remainder=False))
    cut = batches(create_dataset(path, column_names("classifier"), BATCH, bucket_list=BUCKETS, drop_remainder=False))
    assert len(cut) == len(plain) == ROWS // BATCH
    lengths = [batch[0].shape[1] for batch in cut]
    assert lengths[:2] == [8, 16] and set(lengths) <= {8, 16, SEQ}
    for full, short, length in zip(plain, cut, lengths):
        longest = int(full[1].sum(axis=1).max())
        assert length == min(bucket for bucket in (8, 16, SEQ) if bucket >= longest)
        for full_column, short_column in zip(full, short):
            expected = full_column if full_column.shape[1] == 1 else full_column[:, :length]
            np.testing.assert_array_equal(short_column, expected)
            assert full_column.shape[1] == 1 or not full_column[:, length:].any()


def test_shuffled_batches_are_the_plain_random_batches(data):
    _, path = data
    identities = []
    for bucket_list in ([], BUCKETS):
        ds.config.set_seed(5)
        dataset = create_dataset(path, column_names("classifier"), BATCH, do_shuffle=True, bucket_list=bucket_list)
        identities.append([batch[0][:, 0].tolist() for batch in batches(dataset)])
        assert dataset.get_dataset_size() == len(identities[-1]) == ROWS // BATCH
    assert identities[0] == identities[1]
    assert sorted(number for batch in identities[0] for number in batch) == list(range(ROWS))
    assert identities[0] != [list(range(start, start + BATCH)) for start in range(0, ROWS, BATCH)]


def test_squad_positions_stay_inside_the_cut(tmp_path):
    rng = np.random.RandomState(2)
    rows = []
    for number in range(ROWS):
        length = row_length(number, rng)
        start = int(rng.randint(0, length))
        rows.append({"input_ids": np.where(np.arange(SEQ) < length, 7, 0), "input_mask": np.arange(SEQ) < length,
                     "segment_ids": np.zeros(SEQ), "start_positions": np.array([start]),
                     "end_positions": np.array([int(rng.randint(start, length))])})
    path = str(tmp_path / "squad.tfrecord")
    write_tfrecord(path, [{name: np.asarray(value, np.int64) for name, value in row.items()} for row in rows])
    dataset = create_dataset(path, column_names("squad training"), BATCH, bucket_list=BUCKETS, do_shuffle=False)
    for number, batch in enumerate(batches(dataset)):
        length = batch[0].shape[1]
        expected_rows = rows[number * BATCH:(number + 1) * BATCH]
        np.testing.assert_array_equal(batch[3].reshape(-1), [row["start_positions"][0] for row in expected_rows])
        np.testing.assert_array_equal(batch[4].reshape(-1), [row["end_positions"][0] for row in expected_rows])
        assert batch[4].max() < length and batch[3].max() < length


def padded(batch):
    """The same rows padded back to SEQ with zeros (labels of length 1 stay as they are)."""
    return [np.pad(column, ((0, 0), (0, SEQ - column.shape[1]))) if column.shape[1] > 1 else column
            for column in batch]


@pytest.mark.parametrize("head", ["classifier", "ner_softmax", "ner_crf"])
def test_cut_batches_give_the_losses_and_updates_of_the_padded_batches(head, tmp_path):
    rows = make_rows(per_token_labels=head != "classifier", seed=1)
    path = str(tmp_path / "train.tfrecord")
    write_tfrecord(path, rows)
    # The first two batches (lengths 8 and 16): each length runs its own compiled graph, on shared weights.
    steps = batches(create_dataset(path, column_names("classifier"), BATCH, bucket_list=BUCKETS, do_shuffle=False))[:2]
    assert [batch[0].shape[1] for batch in steps] == [8, 16]
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
