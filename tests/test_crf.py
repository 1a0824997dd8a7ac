"""CRF against brute-force enumeration of every tag path in NumPy float64.

Shape letters: B batch, S sequence length, T tags.
"""

import itertools
import math
import time

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn, ops

from src.CRF import CRF
from src.kernel_forms import kernel_forms

NUM_TAGS = 3
# Masks of one batch: full length, half, a single token, and all but one.
MASK = np.array([[1, 1, 1, 1],
                 [1, 1, 0, 0],
                 [1, 0, 0, 0],
                 [1, 1, 1, 0]], np.int32)
# float32 model against the float64 enumeration; scores are sums of a few O(1) terms.
FP32_TOLERANCE = 1e-5
# CLUENER-sized check: fine-grained tags (41), BERT's sequence length.
FULL_SEQ_LENGTH = 128
FULL_NUM_TAGS = 41
# Both loop forms: tensor `while` loops (CPU) and unrolled loops (Ascend, GPU).
LOOP_FORMS = {"while": kernel_forms("CPU"), "unrolled": kernel_forms("Ascend")}


class NllAndDecode(nn.Cell):
    """Calls the CRF's methods from another Cell's `construct`, as a tagging model does."""

    def __init__(self, crf):
        super().__init__()
        self.crf = crf

    def construct(self, emissions, tags, mask):
        best_tags, best_score = self.crf.decode(emissions, mask)
        return (self.crf.neg_log_likelihood(emissions, tags, mask), self.crf.log_partition(emissions, mask),
                self.crf.path_score(emissions, tags, mask), best_tags, best_score)


class NllGrad(nn.Cell):
    """Gradients of the NLL (`CRF.construct`) w.r.t. the emissions and the CRF's three tables."""

    def __init__(self, crf):
        super().__init__()
        self.crf = crf
        self.weights = ms.ParameterTuple(crf.trainable_params())
        self.grad = ops.GradOperation(get_all=True, get_by_list=True)

    def construct(self, emissions, tags, mask):
        (emission_grad, _, _), weight_grads = self.grad(self.crf, self.weights)(emissions, tags, mask)
        return emission_grad, weight_grads


class Decoder(nn.Cell):
    """The decoder alone, as exported for inference."""

    def __init__(self, crf):
        super().__init__()
        self.crf = crf

    def construct(self, emissions, mask):
        return self.crf.decode(emissions, mask)


def random_crf(num_tags, seed=0, forms=None):
    """A CRF with random N(0, 1) tables; returns it and the tables as float64 arrays."""
    rng = np.random.RandomState(seed)
    crf = CRF(num_tags, forms)
    tables = {}
    for param in (crf.transitions, crf.start_transitions, crf.end_transitions):
        value = rng.normal(0.0, 1.0, param.shape).astype(np.float32)
        param.set_data(ms.Tensor(value))
        tables[param.name] = value.astype(np.float64)
    return crf, tables


def random_batch(mask, num_tags, seed=1):
    """float32 emissions [B, S, T] and int32 tags [B, S] (-1 at padded positions)."""
    rng = np.random.RandomState(seed)
    emissions = rng.normal(0.0, 1.0, mask.shape + (num_tags,)).astype(np.float32)
    tags = rng.randint(0, num_tags, mask.shape).astype(np.int32)
    tags[mask == 0] = -1
    return emissions, tags


def path_score(path, emissions, tables):
    """Score of one tag path over the first len(path) positions of emissions [S, T]."""
    score = tables["start_transitions"][path[0]] + tables["end_transitions"][path[-1]]
    for t, tag in enumerate(path):
        score += emissions[t, tag]
        if t > 0:
            score += tables["transitions"][path[t - 1], tag]
    return score


def enumerate_paths(emissions, mask, tables):
    """Every tag path of every sequence, by brute force.

    Returns per sequence: log Z, the best path and its score, the marginals
    p(y_t = j) [L, T], and the expected count of each transition [T, T].
    """
    results = []
    for sequence_emissions, sequence_mask in zip(emissions.astype(np.float64), mask):
        length = int(sequence_mask.sum())
        num_tags = sequence_emissions.shape[1]
        paths = list(itertools.product(range(num_tags), repeat=length))
        scores = np.array([path_score(path, sequence_emissions, tables) for path in paths])
        log_z = np.logaddexp.reduce(scores)
        probs = np.exp(scores - log_z)
        marginals = np.zeros((length, num_tags))
        pair_counts = np.zeros((num_tags, num_tags))
        for path, prob in zip(paths, probs):
            marginals[np.arange(length), path] += prob
            for previous, tag in zip(path[:-1], path[1:]):
                pair_counts[previous, tag] += prob
        results.append(dict(log_z=log_z, best_path=paths[int(scores.argmax())], best_score=scores.max(),
                            marginals=marginals, pair_counts=pair_counts))
    return results


def run_nll_and_decode(crf, emissions, tags, mask):
    outputs = NllAndDecode(crf)(ms.Tensor(emissions), ms.Tensor(tags), ms.Tensor(mask))
    return [output.asnumpy() for output in outputs]


@pytest.mark.parametrize("loops", LOOP_FORMS)
def test_nll_and_viterbi_match_enumeration(loops):
    crf, tables = random_crf(NUM_TAGS, forms=LOOP_FORMS[loops])
    emissions, tags = random_batch(MASK, NUM_TAGS)
    nll, log_z, gold_score, best_tags, best_score = run_nll_and_decode(crf, emissions, tags, MASK)
    expected = enumerate_paths(emissions, MASK, tables)
    lengths = MASK.sum(1)
    expected_gold = [path_score(tags[b, :lengths[b]], emissions[b].astype(np.float64), tables)
                     for b in range(len(MASK))]
    expected_log_z = [sequence["log_z"] for sequence in expected]
    np.testing.assert_allclose(log_z, expected_log_z, atol=FP32_TOLERANCE)
    np.testing.assert_allclose(gold_score, expected_gold, atol=FP32_TOLERANCE)
    np.testing.assert_allclose(nll, np.mean(np.subtract(expected_log_z, expected_gold)), atol=FP32_TOLERANCE)
    np.testing.assert_allclose(best_score, [sequence["best_score"] for sequence in expected], atol=FP32_TOLERANCE)
    assert best_tags.dtype == np.int32 and best_tags.shape == MASK.shape
    for b, sequence in enumerate(expected):
        assert tuple(best_tags[b, :lengths[b]]) == sequence["best_path"]
        assert (best_tags[b, lengths[b]:] == 0).all()


@pytest.mark.parametrize("loops", LOOP_FORMS)
def test_nll_gradient_is_marginals_minus_gold(loops):
    crf, tables = random_crf(NUM_TAGS, seed=2, forms=LOOP_FORMS[loops])
    emissions, tags = random_batch(MASK, NUM_TAGS, seed=3)
    # NaN padding: any leak into the loss or the gradient would show.
    emissions[MASK == 0] = np.nan
    emission_grad, weight_grads = NllGrad(crf)(ms.Tensor(emissions), ms.Tensor(tags), ms.Tensor(MASK))
    emission_grad = emission_grad.asnumpy()
    transitions_grad, start_grad, end_grad = [grad.asnumpy() for grad in weight_grads]
    batch_size, _, num_tags = emissions.shape
    expected_emission_grad = np.zeros(emissions.shape)
    expected_transitions_grad = np.zeros((num_tags, num_tags))
    expected_start_grad = np.zeros(num_tags)
    expected_end_grad = np.zeros(num_tags)
    # d(log Z - gold)/d(score table entry) = expected count - gold count, then / B for the mean.
    for b, sequence in enumerate(enumerate_paths(emissions, MASK, tables)):
        length = MASK[b].sum()
        gold = tags[b, :length]
        marginals = sequence["marginals"]
        expected_emission_grad[b, :length] = marginals - np.eye(num_tags)[gold]
        expected_transitions_grad += sequence["pair_counts"]
        np.add.at(expected_transitions_grad, (gold[:-1], gold[1:]), -1.0)
        expected_start_grad += marginals[0] - np.eye(num_tags)[gold[0]]
        expected_end_grad += marginals[-1] - np.eye(num_tags)[gold[-1]]
    np.testing.assert_allclose(emission_grad, expected_emission_grad / batch_size, atol=FP32_TOLERANCE)
    assert (emission_grad[MASK == 0] == 0).all()
    np.testing.assert_allclose(transitions_grad, expected_transitions_grad / batch_size, atol=FP32_TOLERANCE)
    np.testing.assert_allclose(start_grad, expected_start_grad / batch_size, atol=FP32_TOLERANCE)
    np.testing.assert_allclose(end_grad, expected_end_grad / batch_size, atol=FP32_TOLERANCE)


@pytest.mark.parametrize("loops", LOOP_FORMS)
def test_padding_changes_neither_nll_nor_decoded_tags(loops):
    crf, _ = random_crf(NUM_TAGS, seed=4, forms=LOOP_FORMS[loops])
    emissions, tags = random_batch(MASK, NUM_TAGS, seed=5)
    extra = 3
    padded_mask = np.pad(MASK, ((0, 0), (0, extra)))
    # Padding emissions far larger than the real ones, of both signs, inf and NaN;
    # junk tags, some outside [0, T).
    rng = np.random.RandomState(6)
    junk = rng.choice([-1e4, 1e4, np.inf, np.nan], size=padded_mask.shape + (NUM_TAGS,)).astype(np.float32)
    padded_emissions = np.where(padded_mask[:, :, None] == 1, np.pad(emissions, ((0, 0), (0, extra), (0, 0))), junk)
    padded_tags = np.pad(tags, ((0, 0), (0, extra)))
    padded_tags[padded_mask == 0] = rng.randint(-1, NUM_TAGS + 5, (padded_mask == 0).sum())
    nll, _, _, best_tags, best_score = run_nll_and_decode(crf, emissions, tags, MASK)
    padded_nll, _, _, padded_best_tags, padded_best_score = run_nll_and_decode(
        crf, padded_emissions, padded_tags, padded_mask)
    np.testing.assert_allclose(padded_nll, nll, atol=FP32_TOLERANCE)
    np.testing.assert_allclose(padded_best_score, best_score, atol=FP32_TOLERANCE)
    np.testing.assert_array_equal(padded_best_tags[:, :MASK.shape[1]], best_tags)
    assert (padded_best_tags[:, MASK.shape[1]:] == 0).all()


def test_unrolled_loops_equal_while_loops_at_eight_tokens():
    """S=8 (4 steps more than the enumeration tests): the unrolled loops give the while loops'
    log-likelihood, gradients and Viterbi paths, and both the brute-force log Z and best paths."""
    mask = (np.arange(8)[None, :] < np.array([[8], [5], [1]])).astype(np.int32)
    emissions, tags = random_batch(mask, NUM_TAGS, seed=13)
    inputs = [ms.Tensor(emissions), ms.Tensor(tags), ms.Tensor(mask)]
    results = {}
    for loops, forms in LOOP_FORMS.items():
        crf, tables = random_crf(NUM_TAGS, seed=14, forms=forms)
        emission_grad, weight_grads = NllGrad(crf)(*inputs)
        results[loops] = (run_nll_and_decode(crf, emissions, tags, mask)
                          + [emission_grad.asnumpy()] + [grad.asnumpy() for grad in weight_grads])
    names = ["nll", "log_z", "gold score", "best tags", "best score", "emission grad", "transitions grad",
             "start grad", "end grad"]
    for name, unrolled, looped in zip(names, results["unrolled"], results["while"]):
        np.testing.assert_allclose(unrolled, looped, rtol=1e-6, atol=FP32_TOLERANCE, err_msg=name)
    expected = enumerate_paths(emissions, mask, tables)
    _, log_z, _, best_tags, _ = results["unrolled"][:5]
    np.testing.assert_allclose(log_z, [sequence["log_z"] for sequence in expected], atol=FP32_TOLERANCE)
    for b, sequence in enumerate(expected):
        assert tuple(best_tags[b, :mask[b].sum()]) == sequence["best_path"]


@pytest.fixture
def pynative_mode():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    yield
    ms.set_context(mode=ms.GRAPH_MODE)


def test_pynative_mode_gives_the_graph_results(pynative_mode):
    crf, tables = random_crf(NUM_TAGS, seed=7)
    emissions, tags = random_batch(MASK, NUM_TAGS, seed=8)
    nll, log_z, _, best_tags, best_score = run_nll_and_decode(crf, emissions, tags, MASK)
    expected = enumerate_paths(emissions, MASK, tables)
    np.testing.assert_allclose(log_z, [sequence["log_z"] for sequence in expected], atol=FP32_TOLERANCE)
    np.testing.assert_allclose(best_score, [sequence["best_score"] for sequence in expected], atol=FP32_TOLERANCE)
    for b, sequence in enumerate(expected):
        assert tuple(best_tags[b, :MASK[b].sum()]) == sequence["best_path"]


def test_full_size_graph_compiles_and_runs():
    """S=128, T=41 in graph mode: the loops compile without unrolling (about 1 s on CPU)."""
    crf, _ = random_crf(FULL_NUM_TAGS, seed=9)
    lengths = np.array([FULL_SEQ_LENGTH, 37])
    mask = (np.arange(FULL_SEQ_LENGTH)[None, :] < lengths[:, None]).astype(np.int32)
    emissions, tags = random_batch(mask, FULL_NUM_TAGS, seed=10)
    start = time.perf_counter()
    nll, _, _, best_tags, best_score = run_nll_and_decode(crf, emissions, tags, mask)
    print(f"CRF compile + run at B=2, S={FULL_SEQ_LENGTH}, T={FULL_NUM_TAGS}: {time.perf_counter() - start:.2f} s")
    assert math.isfinite(float(nll))
    assert best_tags.shape == mask.shape and best_score.shape == (2,)
    assert ((best_tags >= 0) & (best_tags < FULL_NUM_TAGS)).all()
    assert (best_tags[mask == 0] == 0).all()


def test_decoder_exports_to_mindir(tmp_path):
    crf, _ = random_crf(NUM_TAGS, seed=11)
    emissions, _ = random_batch(MASK, NUM_TAGS, seed=12)
    inputs = (ms.Tensor(emissions), ms.Tensor(MASK))
    decoder = Decoder(crf)
    ms.export(decoder, *inputs, file_name=str(tmp_path / "decoder"), file_format="MINDIR")
    exported = nn.GraphCell(ms.load(str(tmp_path / "decoder.mindir")))
    for output, expected in zip(exported(*inputs), decoder(*inputs)):
        np.testing.assert_array_equal(output.asnumpy(), expected.asnumpy())


def test_parameters_start_at_zero_with_checkpoint_names():
    crf = CRF(5)
    names = {param.name: param.asnumpy() for param in crf.get_parameters()}
    assert set(names) == {"transitions", "start_transitions", "end_transitions"}
    assert names["transitions"].shape == (5, 5)
    assert all((value == 0).all() for value in names.values())
    # Inside a model they take the attribute path as their prefix.
    assert {param.name for param in NllAndDecode(CRF(5)).get_parameters()} == {
        "crf.transitions", "crf.start_transitions", "crf.end_transitions"}


@pytest.mark.parametrize("num_tags", [0, -2, 3.0, True])
def test_rejects_invalid_num_tags(num_tags):
    with pytest.raises(ValueError, match="num_tags"):
        CRF(num_tags)
