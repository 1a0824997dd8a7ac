"""Per-character NER tags for CLUENER2020-style data: entity spans to tags and back.

CLUENER2020 labels each text with character spans (entity type, start, end
inclusive); a token classifier needs one tag per character instead. Three tag
schemes are supported:

- "BIO":   B-X begins an entity of type X, I-X continues it, O is outside.
- "BIOES": as BIO, plus E-X ending a multi-character entity and S-X for a
           single-character one.
- "BMES":  the MindSpore model zoo's CLUENER scheme: B_X, M_X (middle), E_X,
           S_X and O. Underscores, not hyphens, as the zoo spells them.

Decoding is strict, by seqeval's `mode="strict"` rules: only a well-formed tag
run is an entity. Under BIO that is B-X followed by any number of I-X; a stray
I-X (after O or another type) is no entity and does not start one. Under
BIOES/BMES it is B-X (I-X|M-X)* E-X, or a single S-X; a run that is cut off
(B without E, a type change, I/M/E without B) yields nothing. Strictness keeps
an ill-formed prediction from being scored as a correct entity.

Spans are (entity_type, start, end_inclusive) tuples throughout.
"""

from collections import namedtuple
from collections.abc import Iterable, Sequence

from src.errors import UserError

OUTSIDE_TAG = "O"

# The place a tag marks in an entity; `label_list` emits each type's tags in this order.
ROLES = ("begin", "inside", "end", "single")

# Per scheme: the separator between prefix and type, and each role's prefix.
# `end`/`single` are None where the scheme has no such tag: BIO tags an
# entity's last character, and a one-character entity, like any other.
Scheme = namedtuple("Scheme", ("separator",) + ROLES)
SCHEMES = {
    "BIO": Scheme(separator="-", begin="B", inside="I", end=None, single=None),
    "BIOES": Scheme(separator="-", begin="B", inside="I", end="E", single="S"),
    "BMES": Scheme(separator="_", begin="B", inside="M", end="E", single="S"),
}


class TaggingError(UserError):
    """Spans that cannot be tagged, tags that are not in the scheme, or an unknown scheme."""


def get_scheme(scheme: str) -> Scheme:
    if scheme not in SCHEMES:
        raise TaggingError(f"unknown tag scheme {scheme!r}; expected one of {', '.join(SCHEMES)}")
    return SCHEMES[scheme]


def _tag(prefix, entity_type, rules):
    return f"{prefix}{rules.separator}{entity_type}"


def _prefixes(rules):
    """{prefix: role} for the roles the scheme has, in `ROLES` order."""
    return {getattr(rules, role): role for role in ROLES if getattr(rules, role)}


def label_list(entity_types: Iterable[str], scheme: str) -> list[str]:
    """All tags of `scheme` for `entity_types`: "O" first (id 0), then each type's tags in order.

    E.g. label_list(["name"], "BMES") == ["O", "B_name", "M_name", "E_name", "S_name"].
    """
    rules = get_scheme(scheme)
    entity_types = list(entity_types)
    if len(set(entity_types)) != len(entity_types):
        raise TaggingError(f"entity types are repeated: {entity_types}")
    if any(not entity_type for entity_type in entity_types):
        raise TaggingError(f"entity types must be non-empty strings: {entity_types}")
    return [OUTSIDE_TAG] + [_tag(prefix, entity_type, rules)
                            for entity_type in entity_types for prefix in _prefixes(rules)]


def _check_spans(length, spans):
    """Each span is inside [0, length) and no two share a character; returns them by position."""
    for entity_type, start, end in spans:
        if not entity_type:
            raise TaggingError(f"span {(entity_type, start, end)} has an empty entity type")
        if not 0 <= start <= end < length:
            raise TaggingError(f"span {(entity_type, start, end)} is not within a text of length {length}")
    by_position = sorted(spans, key=lambda span: (span[1], span[2]))
    reaching_furthest = None   # the span seen so far that ends last
    for span in by_position:
        if reaching_furthest is not None and span[1] <= reaching_furthest[2]:
            raise TaggingError(f"spans {tuple(reaching_furthest)} and {tuple(span)} overlap")
        if reaching_furthest is None or span[2] > reaching_furthest[2]:
            reaching_furthest = span
    return by_position


def spans_to_tags(length: int, spans: Sequence[tuple[str, int, int]], scheme: str) -> list[str]:
    """Tag each of `length` characters from non-overlapping (type, start, end_inclusive) spans."""
    rules = get_scheme(scheme)
    tags = [OUTSIDE_TAG] * length
    for entity_type, start, end in _check_spans(length, spans):
        if start == end and rules.single:
            tags[start] = _tag(rules.single, entity_type, rules)
            continue
        tags[start] = _tag(rules.begin, entity_type, rules)
        for position in range(start + 1, end):
            tags[position] = _tag(rules.inside, entity_type, rules)
        if end > start:
            tags[end] = _tag(rules.end or rules.inside, entity_type, rules)
    return tags


def _parse_tag(tag, position, scheme, rules):
    """(role, type) of `tag`: role is one of `ROLES`, or "outside" (type None) for "O"."""
    if tag == OUTSIDE_TAG:
        return "outside", None
    prefix, separator, entity_type = tag.partition(rules.separator)
    roles = _prefixes(rules)
    if not separator or not entity_type or prefix not in roles:
        raise TaggingError(f"tag {tag!r} at position {position} is not a {scheme} tag")
    return roles[prefix], entity_type


def tags_to_spans(tags: Sequence[str], scheme: str) -> list[tuple[str, int, int]]:
    """The well-formed entities in `tags` (strict rules, see the module docstring).

    Returns (type, start, end_inclusive) tuples in tuple order (by type, then
    position), so that tags_to_spans(spans_to_tags(n, spans, s), s) == sorted(spans).
    """
    rules = get_scheme(scheme)
    spans = []
    open_type, open_start = None, None   # the entity being read, if any
    for position, tag in enumerate(tags):
        role, entity_type = _parse_tag(tag, position, scheme, rules)
        continues = open_type is not None and entity_type == open_type
        if role == "inside" and continues:
            continue
        if role == "end" and continues:
            spans.append((open_type, open_start, position))
        elif rules.end is None and open_type is not None:
            spans.append((open_type, open_start, position - 1))   # BIO: any other tag closes it
        # Under BIOES/BMES anything else abandons an unfinished entity: it was ill-formed.
        open_type, open_start = None, None
        if role == "single":
            spans.append((entity_type, position, position))
        elif role == "begin":
            open_type, open_start = entity_type, position
    if rules.end is None and open_type is not None:
        spans.append((open_type, open_start, len(tags) - 1))
    return sorted(spans)


def infer_scheme(tags: Iterable[str]) -> str:

    """The scheme whose tag set `tags` (e.g. a label2id map's keys) is: a label map names its scheme.

    Raises TaggingError if no scheme has exactly these tags.
    """
    tags = list(tags)
    entity_types = sorted({tag.split(rules.separator, 1)[1] for rules in SCHEMES.values() for tag in tags
                           if tag != OUTSIDE_TAG and rules.separator in tag})
    for scheme in SCHEMES:
        if set(label_list(entity_types, scheme)) == set(tags):
            return scheme
    raise TaggingError(f"the tags {tags[:6]}... are not the full tag set of any scheme ({', '.join(SCHEMES)})")
