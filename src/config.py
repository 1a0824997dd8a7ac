"""One configuration loader for every entry point: a YAML file plus `--key value` overrides.

A job's YAML file (pretrain_config.yaml; one per job) lists every key the
job reads, with its default and a comment saying what it does. On the command
line, `--key value` or `--key=value` overrides a key (`--section.key value` one
inside a section; the last of repeated flags wins); the value must have the
type of the YAML default (an int stays an int, a bool is true/false, a float
accepts 1e-4). `--config_path FILE` replaces the job's YAML file. `-h` or
`--help` prints every key with its default and comment, then exits.

The model is described by a named preset (`bert_network`: tiny, small, base,
large, nezha; see `bert_model.PRESETS`) that the `model` section then amends:

    preset  <  the file named by `model_config` (as written by the checkpoint
               converter)  <  the YAML `model` section  <  `--model.<field>=value`

Any unknown key or badly typed value raises `ConfigError` whose message is one
line naming the file or flag, the key and what was expected; entry points print
it and exit non-zero (`src.errors.exit_on_user_error`). So do a float that is not
finite (`inf`, `nan`, `1e999`, YAML's `.inf`), in a flag or a file: it would
reach the optimizer and make every weight NaN; and a `--config_path` file that
lacks keys of the job's own YAML (all are required, except `model` amendments).
"""

import argparse
import copy
import dataclasses
import difflib
import itertools
import math
import os
import re
import sys
import textwrap
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, NoReturn

import yaml

from src import files
from src.errors import UserError

if TYPE_CHECKING:  # src.bert_model imports MindSpore: only where a model is wanted
    from src.bert_model import BertConfig

# The section of BertConfig amendments: its fields are optional (the preset supplies the rest).
MODEL_SECTION = "model"
# Missing keys of a --config_path file named in its error line; the rest are counted.
MISSING_KEYS_SHOWN = 10
HELP_FLAGS = ("-h", "--help")
# Layout of the --help listing: the column where descriptions start, the line width.
HELP_KEY_WIDTH = 34
HELP_WIDTH = 100
# Lines of our YAML files, read for --help (PyYAML drops comments): a group
# header `# --- where and how to run ----`, a `key: value  # comment` line, and
# the comment at its end (a `#` after a space, outside quotes).
GROUP_HEADER = re.compile(r"#\s*---\s*(?P<title>.*?)[\s-]*")
KEY_LINE = re.compile(r"(?P<indent> *)(?P<key>[A-Za-z_]\w*):(?P<rest>.*)")
VALUE_AND_COMMENT = re.compile(r"""(?P<value>(?:"[^"]*"|'[^']*'|[^\s"']|\s+(?=[^\s#]))*)"""
                               r"(?:\s+(?P<hash>#)(?P<comment>.*)|\s*)")


class ConfigError(UserError):
    """A configuration file or flag is missing, unknown or has a bad value."""


class Config:
    """Read-only attribute access to a nested dict: `cfg.optimizer.learning_rate`."""

    def __init__(self, values: dict):
        object.__setattr__(self, "_values", values)

    def __getattr__(self, name):
        try:
            value = self._values[name]
        except KeyError:
            raise AttributeError(f"config has no key {name!r}") from None
        return Config(value) if isinstance(value, dict) else value

    def __setattr__(self, name, value):
        raise AttributeError("config is read-only; derive new values into new variables")

    def __contains__(self, name):
        return name in self._values

    def to_dict(self) -> dict:
        """A deep copy of the values, as nested dicts."""
        return copy.deepcopy(self._values)


def load_config(default_yaml: str, argv: list[str]) -> Config:
    """Load `default_yaml` (or `--config_path`), apply `--key value` overrides, resolve the model.

    Returns a `Config`; `cfg.model` holds every `BertConfig` field and
    `bert_config(cfg)` builds the `BertConfig`.
    """
    if any(arg in HELP_FLAGS for arg in argv):
        print_help(default_yaml, [arg for arg in argv if arg not in HELP_FLAGS])
    overrides = parse_overrides(argv)
    yaml_path = overrides.pop("config_path", default_yaml)
    values = read_yaml(yaml_path)
    if yaml_path != default_yaml:
        check_has_keys(values, read_yaml(default_yaml), yaml_path, default_yaml)
    model_overrides = {key: raw for key, raw in overrides.items() if key.startswith("model.")}
    for key, raw in overrides.items():
        if key not in model_overrides:
            set_override(values, key, raw, yaml_path)
    values["model"] = resolve_model(values, yaml_path)
    for key, raw in model_overrides.items():
        set_override(values, key, raw, yaml_path)
    return Config(values)


def bert_config(cfg: Config) -> "BertConfig":
    """The `BertConfig` of a loaded config, for the job's `device_target` (`compute_type: auto` becomes
    that target's precision); a bad combination raises ConfigError."""
    from src.device import job_target
    return concrete_bert_config(cfg.model.to_dict(), job_target(cfg), "model")


def concrete_bert_config(fields: dict, device_target: str, source: str) -> "BertConfig":
    """`BertConfig(**fields)` for a resolved `device_target`: `compute_type: auto` (the default, kept in
    the files we write) becomes float16 on Ascend/GPU, float32 on CPU (`src.device.compute_type_for`),
    so that a model is always built with a concrete dtype. `source` names the fields in errors."""
    from src.bert_model import DTYPES, BertConfig  # imports MindSpore: only when a model is wanted
    from src.device import AUTO, compute_type_for
    compute_type = fields.get("compute_type", AUTO)
    if compute_type != AUTO and compute_type not in DTYPES:
        raise ConfigError(f"{source}: compute_type must be {AUTO} or one of {', '.join(DTYPES)}, "
                          f"got {compute_type!r}")
    try:
        return BertConfig(**dict(fields, compute_type=compute_type_for(compute_type, device_target)))
    except ValueError as error:
        raise ConfigError(f"{source}: {error}") from None


def parse_overrides(argv: list[str]) -> dict[str, str]:
    """['--a.b', '1', '--c=2', ...] -> {'a.b': '1', 'c': '2'} (raw strings, typed later).

    A key takes the next argument as its value unless it is written `--key=value`;
    `-1` is a value, `--x` is the next key. A repeated key: the last wins, so
    wrapper scripts can pass defaults that the user's own flags then override.
    """
    overrides = {}
    for key, raw in split_flags(argv):
        overrides.pop(key, None)  # keep the order of last appearance
        overrides[key] = raw
    return overrides


def split_flags(argv: list[str]) -> list[tuple[str, str]]:
    """['--a', '1', '--b=2'] -> [('a', '1'), ('b', '2')], in order; a key without a value raises ConfigError."""
    pairs = []
    position = 0
    while position < len(argv):
        arg = argv[position]
        key, sep, raw = arg[2:].partition("=")
        if not arg.startswith("--") or not key:
            raise ConfigError(f"argument {arg!r}: expected --key value or --key=value")
        if not sep:
            position += 1
            if position == len(argv) or argv[position].startswith("--"):
                raise ConfigError(f"--{key}: missing value (--{key} VALUE or --{key}=VALUE)")
            raw = argv[position]
        pairs.append((key, raw))
        position += 1
    return pairs


def read_yaml(path: str, flag: str = "") -> dict:
    """A YAML file's top-level mapping; a missing or malformed file raises ConfigError naming `path`
    (after `flag`, the option that gave it, when there is one)."""
    where = files.file_named(path, flag)
    try:
        values = yaml.safe_load(read_text(path, flag))
    except yaml.YAMLError as error:
        raise ConfigError(f"{where}: not valid YAML ({' '.join(str(error).split())})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping of keys to values at the top level")
    for key, value in dotted_items(values):
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where}: {key}: expected a finite number, got {value}")
    return values


def read_text(path: str, flag: str = "") -> str:
    """A config file's text (`src.files.read_text`); a missing, unreadable or non-UTF-8 file raises
    ConfigError, the error of everything about configuration, named as `read_yaml` does."""
    try:
        return files.read_text(path, flag, what="config file")
    except files.FileFormatError as error:
        raise ConfigError(str(error)) from None


def dotted_items(values: dict, prefix: str = "") -> Iterator[tuple[str, object]]:
    """('a.b', value) for every leaf of a nested mapping (a list's items under its key), in file order."""
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from dotted_items(value, f"{dotted}.")
        elif isinstance(value, list):
            yield from ((dotted, item) for item in value)
        else:
            yield dotted, value


def missing_keys(defaults: dict, values: dict, prefix: str = "") -> list[str]:
    """Keys of `defaults` absent from `values`, dotted; a missing section is named once, without its keys."""
    missing = []
    for key, default in defaults.items():
        if key not in values:
            missing.append(f"{prefix}{key}")
        elif isinstance(default, dict) and isinstance(values[key], dict):
            missing += missing_keys(default, values[key], f"{prefix}{key}.")
    return missing


def check_has_keys(values: dict, defaults: dict, yaml_path: str, default_yaml: str) -> None:
    """A `--config_path` file must hold every key of the job's own YAML (`defaults`): the job reads them all.
    The `model` section is exempt: its fields amend the preset."""
    missing = missing_keys({key: value for key, value in defaults.items() if key != MODEL_SECTION}, values)
    if missing:
        shown = ", ".join(missing[:MISSING_KEYS_SHOWN])
        more = f" and {len(missing) - MISSING_KEYS_SHOWN} more" if len(missing) > MISSING_KEYS_SHOWN else ""
        raise ConfigError(f"--config_path {yaml_path}: missing {len(missing)} key(s) of the job's "
                          f"{os.path.basename(default_yaml)}: {shown}{more}")


def set_override(values: dict, dotted_key: str, raw: str, yaml_path: str) -> None:
    """Set `values[a][b]` for 'a.b' to `raw` converted to the type of the existing value."""
    *sections, name = dotted_key.split(".")
    node = values
    for depth, section in enumerate(sections):
        node = node.get(section)
        if not isinstance(node, dict):
            raise ConfigError(f"--{dotted_key}: {'.'.join(sections[:depth + 1])!r} "
                              f"is not a section of {yaml_path}")
    if name not in node:
        raise ConfigError(f"--{dotted_key}: unknown key{did_you_mean(name, node)} (not in {yaml_path})")
    node[name] = convert(raw, node[name], f"--{dotted_key}")


def convert(raw: str, default: object, where: str) -> object:
    """Parse the command-line string `raw` as a value of the same type as `default`."""
    if isinstance(default, dict):
        raise ConfigError(f"{where}: is a section; set its keys as {where}.KEY=VALUE")
    if isinstance(default, str):
        return raw
    if isinstance(default, bool):
        value = parse_bool(raw)
        if value is None:
            raise ConfigError(f"{where}: expected true or false, got {raw!r}")
        return value
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{where}: expected an integer, got {raw!r}") from None
    if isinstance(default, float):
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got {raw!r}") from None
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {raw!r}")
        return value
    value = yaml.safe_load(raw)
    if isinstance(default, list):
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list such as [1, 2], got {raw!r}")
        if default:
            return [convert(str(item), default[0], where) for item in value]
    return value


def parse_bool(text: str) -> bool | None:
    """'true'/'false' in any case -> bool; anything else -> None (never Python's bool('false') == True)."""
    return {"true": True, "false": False}.get(text.lower())


def bool_flag(text: str) -> bool:
    """argparse `type` for true/false flags of the command-line tools that do not use a YAML file."""
    value = parse_bool(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return value


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """--help lines of the command-line tools end with the option's default as typed (true/false), or (required)."""

    def _get_help_string(self, action):
        if action.required:
            return f"{action.help} (required)"
        if action.default in (None, argparse.SUPPRESS):
            return action.help
        shown = str(action.default).lower() if isinstance(action.default, bool) else str(action.default) or '""'
        return f"{action.help} (default: {shown.replace('%', '%%')})"


def command_parser(description: str) -> argparse.ArgumentParser:
    """The argument parser of a command-line tool without a YAML file: no abbreviated options (`--max_seq_len`
    must not silently mean `--max_seq_length`), every default shown by --help."""
    return argparse.ArgumentParser(description=description, allow_abbrev=False,
                                   formatter_class=DefaultsHelpFormatter)


def resolve_model(values: dict, yaml_path: str) -> dict:
    """Merge preset, `model_config` file and the YAML `model` section into all BertConfig fields.

    `compute_type` defaults to auto, which `bert_config` resolves for the job's device.
    """
    from src.bert_model import PRESETS, BertConfig  # imports MindSpore: only when a model is wanted
    from src.device import AUTO
    name = values.get("bert_network")
    if name not in PRESETS:
        raise ConfigError(f"bert_network: expected one of {sorted(PRESETS)}, got {name!r}")
    model = dict(dataclasses.asdict(BertConfig(**PRESETS[name])), compute_type=AUTO)
    model_file = values.get("model_config") or ""
    if model_file:
        model.update(checked_model_fields(read_yaml(model_file).get("model", {}), model, model_file))
    model.update(checked_model_fields(values.get("model") or {}, model, yaml_path))
    return model


def checked_model_fields(fields: object, defaults: dict, source: str) -> dict:
    """Check a YAML `model` mapping against BertConfig's fields and their types."""
    if not isinstance(fields, dict):
        raise ConfigError(f"{source}: 'model' must be a mapping of BertConfig fields")
    checked = {}
    for name, value in fields.items():
        if name not in defaults:
            raise ConfigError(f"{source}: model.{name}: unknown model field{did_you_mean(name, defaults)}")
        checked[name] = convert(str(value), defaults[name], f"{source}: model.{name}")
    return checked


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """' (did you mean X?)' naming the closest of `known` to the unknown `name`, or ''."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""



@dataclasses.dataclass
class KeyDoc:
    """One key of a YAML file as --help lists it."""
    key: str          # dotted for nested keys: Lamb.learning_rate
    default: str      # the value as written in the file
    description: str  # the comment at the end of its line, else the comment lines just above it
    group: str        # the title of the `# --- title ---` header above it
    is_section: bool  # `key:` with nothing after it: holds nested keys


def documented_keys(text: str) -> list[KeyDoc]:
    """Every key of a YAML file's text with its comments, in file order.

    Reads the block style our files use (one `key: value` per line, nesting by
    indentation). A comment line that starts in the column of the previous
    line's end comment continues that comment; a blank line ends a comment block.
    """
    docs, parents, block = [], [], []
    group, continued, continue_at = "", None, -1
    for line in text.splitlines():
        stripped = line.strip()
        header, key_line = GROUP_HEADER.fullmatch(stripped), KEY_LINE.fullmatch(line)
        if header:
            group, block, continued = header["title"], [], None
        elif stripped.startswith("#"):
            if continued and line.index("#") == continue_at:
                continued.description += " " + stripped[1:].strip()
            else:
                block, continued = block + [stripped[1:].strip()], None
        elif key_line:
            indent = len(key_line["indent"])
            parents = [(depth, name) for depth, name in parents if depth < indent]
            parts = VALUE_AND_COMMENT.fullmatch(key_line["rest"])
            value, comment = parts["value"].strip(), (parts["comment"] or "").strip()
            doc = KeyDoc(".".join([name for _, name in parents] + [key_line["key"]]), value,
                         comment or " ".join(block), group, not value)
            docs.append(doc)
            parents.append((indent, key_line["key"]))
            continued = doc if comment else None
            continue_at = key_line.start("rest") + parts.start("hash") if comment else -1
            block = []
        else:
            block, continued = [], None
    return docs


def print_help(default_yaml: str, argv: list[str]) -> NoReturn:
    """Print the keys of the job's YAML (or of `--config_path` in `argv`) and exit 0, as argparse's --help."""
    yaml_path = parse_overrides(argv).get("config_path", default_yaml)
    print(help_text(yaml_path, os.path.basename(sys.argv[0])))
    sys.exit(0)


def help_text(yaml_path: str, prog: str) -> str:
    """Usage, the file's opening comment, then each key with its default and description, by group."""
    read_yaml(yaml_path)  # a missing or malformed file: the one-line error of a run
    text = read_text(yaml_path)
    opening = [line.lstrip("#").strip()
               for line in itertools.takewhile(lambda line: line.startswith("#"), text.splitlines())]
    lines = [f"usage: {prog} [--KEY VALUE | --KEY=VALUE ...] [--config_path FILE]", "",
             *([*opening, ""] if opening else []),
             f"keys of {yaml_path} (default as written there; booleans are true or false):"]
    group = None
    for doc in documented_keys(text):
        if doc.group != group:
            lines += ["", f"{doc.group}:"] if doc.group else [""]
            group = doc.group
        if not doc.is_section:
            flag = f"--{doc.key}.FIELD VALUE" if doc.default == "{}" else f"--{doc.key} {doc.default}"
            lines += help_entry(flag, doc.description)
    return "\n".join(lines)


def help_entry(flag: str, description: str) -> list[str]:
    """['  --key default    description...'] wrapped in the description column, below a flag too long for it."""
    indent = " " * HELP_KEY_WIDTH
    body = textwrap.wrap(description, HELP_WIDTH, initial_indent=indent, subsequent_indent=indent)
    head = f"  {flag}"
    if len(head) < HELP_KEY_WIDTH and body:
        return [head.ljust(HELP_KEY_WIDTH) + body[0].lstrip()] + body[1:]
    return [head] + body
