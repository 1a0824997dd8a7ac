"""One configuration loader for every entry point: a YAML file plus `--key=value` overrides.

A job's YAML file (pretrain_config.yaml; one per job) lists every key the
job reads, with its default. On the command line, `--key=value` overrides a key
(`--section.key=value` one inside a section; the last of repeated flags wins);
the value must have the type of the YAML default (an int stays an int, a bool is true/false, a float accepts
1e-4). `--config_path=FILE` replaces the job's YAML file.

The model is described by a named preset (`bert_network`: tiny, small, base,
large, nezha; see `bert_model.PRESETS`) that the `model` section then amends:

    preset  <  the file named by `model_config` (as written by the checkpoint
               converter)  <  the YAML `model` section  <  `--model.<field>=value`

Any unknown key or badly typed value raises `ConfigError` whose message is one
line naming the file or flag, the key and what was expected; entry points print
it and exit non-zero (`src.errors.exit_on_user_error`).
"""

import argparse
import copy
import dataclasses
import difflib

import yaml

from src.errors import UserError


class ConfigError(UserError):
    """A configuration file or flag is missing, unknown or has a bad value."""


class Config:
    """Read-only attribute access to a nested dict: `cfg.optimizer.learning_rate`."""

    def __init__(self, values):
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

    def to_dict(self):
        return copy.deepcopy(self._values)


def load_config(default_yaml, argv):
    """Load `default_yaml` (or `--config_path`), apply `--key=value` overrides, resolve the model.

    Returns a `Config`; `cfg.model` holds every `BertConfig` field and
    `bert_config(cfg)` builds the `BertConfig`.
    """
    overrides = parse_overrides(argv)
    yaml_path = overrides.pop("config_path", default_yaml)
    values = read_yaml(yaml_path)
    model_overrides = {key: raw for key, raw in overrides.items() if key.startswith("model.")}
    for key, raw in overrides.items():
        if key not in model_overrides:
            set_override(values, key, raw, yaml_path)
    values["model"] = resolve_model(values, yaml_path)
    for key, raw in model_overrides.items():
        set_override(values, key, raw, yaml_path)
    return Config(values)


def bert_config(cfg):
    """The `BertConfig` of a loaded config; a bad combination raises ConfigError."""
    from src.bert_model import BertConfig  # imports MindSpore: only when a model is wanted
    try:
        return BertConfig(**cfg.model.to_dict())
    except ValueError as error:
        raise ConfigError(f"model: {error}") from None


def parse_overrides(argv):
    """['--a.b=1', ...] -> {'a.b': '1', ...} (raw strings, typed later); a repeated key: the last wins,
    so wrapper scripts can pass defaults that the user's own flags then override."""
    overrides = {}
    for arg in argv:
        if not arg.startswith("--") or "=" not in arg:
            raise ConfigError(f"argument {arg!r}: expected --key=value")
        key, raw = arg[2:].split("=", 1)
        overrides.pop(key, None)  # keep the order of last appearance
        overrides[key] = raw
    return overrides


def read_yaml(path):
    """A YAML file's top-level mapping; a missing or malformed file raises ConfigError."""
    try:
        with open(path, encoding="utf-8") as f:
            values = yaml.safe_load(f)
    except OSError as error:
        raise ConfigError(f"{path}: cannot read config file ({error.strerror})") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(error).split())})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values at the top level")
    return values


def set_override(values, dotted_key, raw, yaml_path):
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


def convert(raw, default, where):
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
            return float(raw)
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got {raw!r}") from None
    value = yaml.safe_load(raw)
    if isinstance(default, list):
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list such as [1, 2], got {raw!r}")
        if default:
            return [convert(str(item), default[0], where) for item in value]
    return value


def parse_bool(text):
    """'true'/'false' in any case -> bool; anything else -> None (never Python's bool('false') == True)."""
    return {"true": True, "false": False}.get(text.lower())


def bool_flag(text):
    """argparse `type` for true/false flags of the command-line tools that do not use a YAML file."""
    value = parse_bool(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return value


def resolve_model(values, yaml_path):
    """Merge preset, `model_config` file and the YAML `model` section into all BertConfig fields."""
    from src.bert_model import PRESETS, BertConfig  # imports MindSpore: only when a model is wanted
    name = values.get("bert_network")
    if name not in PRESETS:
        raise ConfigError(f"bert_network: expected one of {sorted(PRESETS)}, got {name!r}")
    model = dataclasses.asdict(BertConfig(**PRESETS[name]))
    model_file = values.get("model_config") or ""
    if model_file:
        model.update(checked_model_fields(read_yaml(model_file).get("model", {}), model, model_file))
    model.update(checked_model_fields(values.get("model") or {}, model, yaml_path))
    return model


def checked_model_fields(fields, defaults, source):
    """Check a YAML `model` mapping against BertConfig's fields and their types."""
    if not isinstance(fields, dict):
        raise ConfigError(f"{source}: 'model' must be a mapping of BertConfig fields")
    checked = {}
    for name, value in fields.items():
        if name not in defaults:
            raise ConfigError(f"{source}: model.{name}: unknown model field{did_you_mean(name, defaults)}")
        checked[name] = convert(str(value), defaults[name], f"{source}: model.{name}")
    return checked


def did_you_mean(name, known):
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""

