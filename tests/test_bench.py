"""Checks of the benchmark's own arithmetic and inputs (no MindSpore, no torch; a few seconds).

    python -m pytest bench/test_bench.py -q

The suite's numbers rest on these: the FLOPs that MFU divides by, the rows both
sides train on, and the committed length histograms.
"""

import collections
import json
import os

import numpy as np
import pytest

from bench import make_lengths
from bench.common import (LENGTHS_FILE, REPO, LengthCase, ModelCase, forward_flops_per_sequence, length_rows,
                          model_flops_per_sample)

TINY = dict(vocab_size=50, hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=16,
            seq_length=6)


def brute_force_matmul_flops(model, masked_positions):
    """2·m·k·n summed over every matmul of one sequence's forward, listed one by one."""
    seq, hidden, inter = model["seq_length"], model["hidden_size"], model["intermediate_size"]
    heads = model["num_attention_heads"]
    head_size = hidden // heads
    per_layer = [(seq, hidden, hidden)] * 4 + [(seq, hidden, inter), (seq, inter, hidden)]
    per_layer += [(seq, head_size, seq)] * heads + [(seq, seq, head_size)] * heads  # QKᵀ, then PV, per head
    matmuls = per_layer * model["num_hidden_layers"]
    if masked_positions:
        matmuls += [(masked_positions, hidden, hidden), (masked_positions, hidden, model["vocab_size"])]
    return sum(2 * m * k * n for m, k, n in matmuls)


@pytest.mark.parametrize("task, masked", [("classifier", 0), ("pretrain", 20)])
def test_forward_flops_equal_a_matmul_by_matmul_count(task, masked):
    case = ModelCase("k", task, "t", 1, TINY, 2)
    assert forward_flops_per_sequence(case) == brute_force_matmul_flops(TINY, masked)
    assert model_flops_per_sample(case) == 3 * brute_force_matmul_flops(TINY, masked)


def length_case(task, rows, seq_length=128):
    return LengthCase("k", "tnews" if task == "classifier" else "cluener", task, "t", 32,
                      dict(TINY, seq_length=seq_length), 5, rows)


def test_length_rows_follow_the_histogram_and_repeat_with_the_seed():
    with open(os.path.join(REPO, LENGTHS_FILE), encoding="utf-8") as f:
        histogram = {int(k): v for k, v in json.load(f)["tnews"]["histogram"].items()}
    rows = length_rows(length_case("classifier", 20000))
    drawn = collections.Counter(len(ids) for ids, _ in rows)
    total = sum(histogram.values())
    for length, count in histogram.items():
        expected = count / total
        # Binomial standard error of a share over 20000 draws, 5 sigmas.
        assert abs(drawn[length] / len(rows) - expected) <= 5 * (expected * (1 - expected) / len(rows)) ** 0.5 + 1e-9
    assert set(drawn) <= set(histogram)
    assert all(0 <= label < 5 and isinstance(label, int) for _, label in rows)
    # Both sides (two processes) build their rows independently: they must be the same rows.
    assert length_rows(length_case("classifier", 50)) == length_rows(length_case("classifier", 50))


def test_length_rows_are_cut_to_seq_length_with_a_tag_per_token():
    rows = length_rows(length_case("ner", 500, seq_length=16))
    assert max(len(ids) for ids, _ in rows) == 16      # CLUENER has many texts over 14 characters
    assert all(len(tags) == len(ids) and max(tags) < 5 for ids, tags in rows)
    assert all(1 <= token < TINY["vocab_size"] for ids, _ in rows for token in ids)


def test_token_lengths_count_wordpieces_or_characters_plus_cls_and_sep(tmp_path):
    cola = tmp_path / "train.tsv"
    cola.write_text("gj04\t1\t\tThe dog barked.\ngj04\t0\t*\tThe dog.\n", encoding="utf-8")
    tnews = tmp_path / "train.json"
    tnews.write_text(json.dumps({"label": "100", "sentence": "孩子跟谁睡"}, ensure_ascii=False) + "\n",
                     encoding="utf-8")
    cluener = tmp_path / "ner.json"
    cluener.write_text(json.dumps({"text": "浙商银行 A", "label": {"company": {"浙商银行": [[0, 3]]}}},
                                  ensure_ascii=False) + "\n", encoding="utf-8")
    assert make_lengths.token_lengths("cola", str(cola)) == [4 + 2, 3 + 2]      # the dog barked . / the dog .
    assert make_lengths.token_lengths("tnews", str(tnews)) == [5 + 2]           # a token per Chinese character
    assert make_lengths.token_lengths("cluener", str(cluener)) == [6 + 2]       # a token per character, space too


def test_committed_histograms_hold_every_training_record():
    with open(os.path.join(REPO, LENGTHS_FILE), encoding="utf-8") as f:
        lengths = json.load(f)
    for dataset, records in (("cola", 8551), ("tnews", 3684), ("cluener", 10748)):
        histogram = {int(k): v for k, v in lengths[dataset]["histogram"].items()}
        assert sum(histogram.values()) == lengths[dataset]["records"] == records
        mean = sum(k * v for k, v in histogram.items()) / records
        assert mean == pytest.approx(lengths[dataset]["mean"], abs=0.005)
        assert min(histogram) >= 3   # [CLS] + at least one token + [SEP]
    assert np.isclose(lengths["cola"]["mean"], 11.3, atol=0.1)   # GLUE CoLA's published mean, 11.3 tokens
