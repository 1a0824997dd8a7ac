"""NER tag schemes: hand-written tag sequences, strict decoding, and the spans -> tags -> spans round trip.

The round trip is checked on every line of the shared CLUENER2020 train file
and on seeded random spans; strict decoding is also checked against a
brute-force reading of its definition on random (mostly ill-formed) tag
sequences.
"""

import json
import os
import random

import pytest

from src.ner_tagging import SCHEMES, TaggingError, label_list, spans_to_tags, tags_to_spans

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLUENER_TRAIN = os.path.join(REPO_ROOT, "..", "shared", "data", "cluener", "train.json")

# Found by scanning the file: line 1507 (index 1506) tags the book title
# 《招商银行：投资永隆银行浮亏逾百亿港元》 (characters 15-34) and, inside it, the
# company 招商银行 (16-19). Per-character tags cannot hold both, so that line is
# rejected; every other line has disjoint spans.
CLUENER_TRAIN_LINES = 10748
CLUENER_TRAIN_SPANS = 23972
CLUENER_OVERLAPPING_LINES = {1506: (("book", 15, 34), ("company", 16, 19))}

ALL_SCHEMES = sorted(SCHEMES)


def test_label_lists():
    assert label_list(["PER", "LOC"], "BIO") == ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    assert label_list(["PER"], "BIOES") == ["O", "B-PER", "I-PER", "E-PER", "S-PER"]
    assert label_list(["name", "game"], "BMES") == [
        "O", "B_name", "M_name", "E_name", "S_name", "B_game", "M_game", "E_game", "S_game"]
    assert label_list([], "BIO") == ["O"]


def test_label_list_errors():
    with pytest.raises(TaggingError, match="unknown tag scheme 'IOB'"):
        label_list(["PER"], "IOB")
    with pytest.raises(TaggingError, match="repeated"):
        label_list(["PER", "LOC", "PER"], "BIO")
    with pytest.raises(TaggingError, match="non-empty"):
        label_list(["PER", ""], "BIO")


# Length 7: PER over 0-2, a one-character LOC at 3, ORG over 5-6.
SPANS = [("PER", 0, 2), ("LOC", 3, 3), ("ORG", 5, 6)]


@pytest.mark.parametrize("scheme, expected", [
    ("BIO", ["B-PER", "I-PER", "I-PER", "B-LOC", "O", "B-ORG", "I-ORG"]),
    ("BIOES", ["B-PER", "I-PER", "E-PER", "S-LOC", "O", "B-ORG", "E-ORG"]),
    ("BMES", ["B_PER", "M_PER", "E_PER", "S_LOC", "O", "B_ORG", "E_ORG"]),
])
def test_spans_to_tags(scheme, expected):
    assert spans_to_tags(7, SPANS, scheme) == expected
    assert tags_to_spans(expected, scheme) == sorted(SPANS)


def test_adjacent_entities_of_one_type_stay_apart():
    spans = [("PER", 0, 1), ("PER", 2, 2), ("PER", 3, 4)]
    assert spans_to_tags(5, spans, "BIO") == ["B-PER", "I-PER", "B-PER", "B-PER", "I-PER"]
    assert spans_to_tags(5, spans, "BMES") == ["B_PER", "E_PER", "S_PER", "B_PER", "E_PER"]
    for scheme in ALL_SCHEMES:
        assert tags_to_spans(spans_to_tags(5, spans, scheme), scheme) == spans


def test_spans_to_tags_errors():
    with pytest.raises(TaggingError, match=r"spans \('A', 0, 9\) and \('B', 2, 3\) overlap"):
        spans_to_tags(10, [("C", 5, 6), ("B", 2, 3), ("A", 0, 9)], "BIO")   # nested, given out of order
    with pytest.raises(TaggingError, match=r"spans \('A', 0, 2\) and \('B', 2, 4\) overlap"):
        spans_to_tags(10, [("A", 0, 2), ("B", 2, 4)], "BIOES")              # one shared character
    with pytest.raises(TaggingError, match="overlap"):
        spans_to_tags(10, [("A", 3, 3), ("A", 3, 3)], "BMES")               # the same span twice
    with pytest.raises(TaggingError, match=r"not within a text of length 4"):
        spans_to_tags(4, [("A", 2, 4)], "BIO")
    with pytest.raises(TaggingError, match=r"not within"):
        spans_to_tags(4, [("A", 2, 1)], "BIO")                              # end before start
    with pytest.raises(TaggingError, match="empty entity type"):
        spans_to_tags(4, [("", 0, 1)], "BIO")


@pytest.mark.parametrize("scheme, tags, expected", [
    # BIO: B-X I-X* is an entity; a stray I-X is nothing and starts nothing.
    ("BIO", ["O", "I-PER", "I-PER", "O"], []),
    ("BIO", ["B-PER", "I-LOC", "I-LOC"], [("PER", 0, 0)]),               # type change ends PER
    ("BIO", ["B-PER", "I-PER", "B-PER"], [("PER", 0, 1), ("PER", 2, 2)]),
    ("BIO", ["O", "O", "B-PER"], [("PER", 2, 2)]),                       # B- at the last position
    ("BIO", ["B-PER", "O", "I-PER"], [("PER", 0, 0)]),
    # BIOES: B I* E or S; anything cut short is nothing.
    ("BIOES", ["B-PER", "I-PER", "O"], []),                              # B without E
    ("BIOES", ["B-PER", "I-PER"], []),                                   # ... at the end of the text
    ("BIOES", ["O", "I-PER", "E-PER"], []),                              # I/E without B
    ("BIOES", ["E-PER"], []),
    ("BIOES", ["B-PER", "E-LOC"], []),                                   # type change
    ("BIOES", ["B-PER", "I-LOC", "E-PER"], []),
    ("BIOES", ["B-PER", "S-PER", "E-PER"], [("PER", 1, 1)]),             # S interrupts, then stray E
    ("BIOES", ["B-PER", "E-PER", "E-PER"], [("PER", 0, 1)]),             # second E is stray
    ("BIOES", ["B-PER", "B-PER", "E-PER"], [("PER", 1, 2)]),             # B restarts
    ("BIOES", ["B-LOC", "E-LOC", "S-PER"], [("LOC", 0, 1), ("PER", 2, 2)]),
    ("BIOES", ["S-PER"], [("PER", 0, 0)]),
    # BMES: as BIOES with M for the middle.
    ("BMES", ["B_name", "M_name", "M_name", "E_name"], [("name", 0, 3)]),
    ("BMES", ["B_name", "M_name"], []),
    ("BMES", ["M_name", "E_name"], []),
    ("BMES", ["B_name", "M_game", "E_name"], []),
    ("BMES", ["S_game", "B_name", "E_name"], [("game", 0, 0), ("name", 1, 2)]),
    ("BIO", [], []),
])
def test_strict_decoding(scheme, tags, expected):
    assert tags_to_spans(tags, scheme) == expected


def test_spans_come_sorted_by_type_then_position():
    tags = ["B-ZZZ", "I-ZZZ", "B-AAA", "O", "B-ZZZ"]
    assert tags_to_spans(tags, "BIO") == [("AAA", 2, 2), ("ZZZ", 0, 1), ("ZZZ", 4, 4)]


@pytest.mark.parametrize("scheme, tags, bad", [
    ("BIO", ["O", "B_PER"], "'B_PER' at position 1 is not a BIO tag"),   # BMES spelling
    ("BIO", ["E-PER"], "'E-PER' at position 0 is not a BIO tag"),        # BIO has no E
    ("BMES", ["I_PER"], "'I_PER' at position 0 is not a BMES tag"),
    ("BIOES", ["B-"], "'B-' at position 0"),
    ("BIOES", ["o"], "'o' at position 0"),
])
def test_tags_outside_the_scheme_are_errors(scheme, tags, bad):
    with pytest.raises(TaggingError, match=bad):
        tags_to_spans(tags, scheme)


def _cluener_spans(label):
    return [(entity_type, start, end)
            for entity_type, entities in label.items()
            for positions in entities.values()
            for start, end in positions]


def test_round_trip_on_every_cluener_train_line():
    if not os.path.isfile(CLUENER_TRAIN):
        pytest.fail(f"{CLUENER_TRAIN} is missing: the shared data must sit beside the repository")
    with open(CLUENER_TRAIN, encoding="utf-8") as f:
        examples = [json.loads(line) for line in f]
    assert len(examples) == CLUENER_TRAIN_LINES

    mismatched_text, num_spans, overlapping = 0, 0, {}
    for index, example in enumerate(examples):
        text, spans = example["text"], _cluener_spans(example["label"])
        num_spans += len(spans)
        mismatched_text += sum(text[start:end + 1] != entity_text
                               for entities in example["label"].values()
                               for entity_text, positions in entities.items()
                               for start, end in positions)
        for scheme in ALL_SCHEMES:
            try:
                tags = spans_to_tags(len(text), spans, scheme)
            except TaggingError as error:
                overlapping[index] = str(error)
                continue
            assert len(tags) == len(text)
            assert tags_to_spans(tags, scheme) == sorted(spans), (index, scheme)

    assert num_spans == CLUENER_TRAIN_SPANS
    assert mismatched_text == 0           # every [start, end] covers exactly its entity text
    assert sorted(overlapping) == sorted(CLUENER_OVERLAPPING_LINES)
    for index, (first, second) in CLUENER_OVERLAPPING_LINES.items():
        assert overlapping[index] == f"spans {first} and {second} overlap"


def _random_spans(rng, length, entity_types):
    """Disjoint spans at random places: walk the text, skipping a random gap before each."""
    spans, position = [], rng.randrange(3)
    while position < length:
        end = min(length - 1, position + rng.choice([0, 0, 1, 2, 5]))
        spans.append((rng.choice(entity_types), position, end))
        position = end + 1 + rng.choice([0, 0, 1, 3])   # gap 0 makes adjacent entities
    rng.shuffle(spans)
    return spans


@pytest.mark.parametrize("scheme", ALL_SCHEMES)
def test_round_trip_on_random_spans(scheme):
    rng = random.Random(1234)
    for _ in range(2000):
        length = rng.randrange(0, 25)
        spans = _random_spans(rng, length, ["A", "B", "name"])
        tags = spans_to_tags(length, spans, scheme)
        assert tags_to_spans(tags, scheme) == sorted(spans), (spans, tags)


def _is_entity(tags, entity_type, start, end, scheme):
    """Whether tags[start..end] is a well-formed entity, read straight from the definition."""
    rules = SCHEMES[scheme]
    tag = {role: f"{getattr(rules, role)}{rules.separator}{entity_type}" for role in ("begin", "inside")}
    if rules.end is None:   # BIO: B I*, and the next tag does not continue it
        return (tags[start] == tag["begin"] and all(t == tag["inside"] for t in tags[start + 1:end + 1])
                and (end + 1 == len(tags) or tags[end + 1] != tag["inside"]))
    if start == end:
        return tags[start] == f"{rules.single}{rules.separator}{entity_type}"
    return (tags[start] == tag["begin"] and all(t == tag["inside"] for t in tags[start + 1:end])
            and tags[end] == f"{rules.end}{rules.separator}{entity_type}")


@pytest.mark.parametrize("scheme", ALL_SCHEMES)
def test_strict_decoding_matches_brute_force_on_random_tags(scheme):
    rng = random.Random(99)
    entity_types = ["A", "B"]
    labels = label_list(entity_types, scheme)
    for _ in range(1000):
        tags = [rng.choice(labels) for _ in range(rng.randrange(0, 10))]
        expected = sorted((entity_type, start, end)
                          for entity_type in entity_types
                          for start in range(len(tags)) for end in range(start, len(tags))
                          if _is_entity(tags, entity_type, start, end, scheme))
        assert tags_to_spans(tags, scheme) == expected, tags
