"""The configuration loader: overrides, types, unknown keys, presets and model files."""

import glob
import os

import pytest
import yaml

from src.config import ConfigError, KeyDoc, bert_config, documented_keys, help_text, load_config
from src.errors import exit_on_user_error

JOB_YAML = """\
bert_network: tiny
model_config: ""
model:
  seq_length: 64
epochs: 3
learning_rate: 1.0e-4
do_train: true
run_name: "demo"
bucket_list: [64, 128]
optimizer:
  name: Lamb
  warmup_steps: 100
"""


@pytest.fixture
def job_yaml(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(JOB_YAML)
    return str(path)


def test_defaults_come_from_the_yaml_and_the_preset(job_yaml):
    cfg = load_config(job_yaml, [])
    assert (cfg.epochs, cfg.learning_rate, cfg.do_train, cfg.optimizer.name) == (3, 1e-4, True, "Lamb")
    assert cfg.model.hidden_size == 64 and cfg.model.num_hidden_layers == 2  # tiny preset
    assert cfg.model.seq_length == 64                                         # YAML amendment
    assert bert_config(cfg).attention_head_size == 32


def test_overrides_are_typed_like_the_defaults(job_yaml):
    cfg = load_config(job_yaml, ["--epochs=7", "--learning_rate=5e-5", "--do_train=False",
                                 "--run_name=123", "--optimizer.warmup_steps=10", "--bucket_list=[32,64]",
                                 "--model.hidden_size=128", "--model.use_relative_positions=true"])
    assert cfg.epochs == 7 and isinstance(cfg.epochs, int)
    assert cfg.learning_rate == 5e-5 and isinstance(cfg.learning_rate, float)
    assert cfg.do_train is False
    assert cfg.run_name == "123"
    assert cfg.optimizer.warmup_steps == 10
    assert cfg.bucket_list == [32, 64]
    assert cfg.model.hidden_size == 128 and cfg.model.use_relative_positions is True


def test_the_last_of_repeated_flags_wins(job_yaml):
    assert load_config(job_yaml, ["--epochs=1", "--model.hidden_size=32", "--epochs=2"]).epochs == 2
    assert load_config(job_yaml, ["--epochs", "1", "--epochs=2"]).epochs == 2
    assert load_config(job_yaml, ["--epochs=2", "--epochs", "1"]).epochs == 1


def test_key_space_value_equals_key_equals_value(job_yaml):
    spaced = ["--epochs", "7", "--learning_rate", "5e-5", "--do_train", "false", "--run_name", "",
              "--optimizer.warmup_steps", "-5", "--bucket_list", "[32, 64]", "--model.hidden_size", "128"]
    joined = [f"{key}={value}" for key, value in zip(spaced[::2], spaced[1::2])]
    assert load_config(job_yaml, spaced).to_dict() == load_config(job_yaml, joined).to_dict()
    cfg = load_config(job_yaml, spaced)
    assert (cfg.epochs, cfg.learning_rate, cfg.do_train, cfg.run_name) == (7, 5e-5, False, "")
    assert (cfg.optimizer.warmup_steps, cfg.bucket_list, cfg.model.hidden_size) == (-5, [32, 64], 128)


def test_negative_numbers_after_a_key_are_values(job_yaml):
    cfg = load_config(job_yaml, ["--epochs", "-1", "--learning_rate", "-5", "--run_name", "-x"])
    assert (cfg.epochs, cfg.learning_rate, cfg.run_name) == (-1, -5.0, "-x")


def test_bert_network_override_selects_another_preset(job_yaml):
    cfg = load_config(job_yaml, ["--bert_network=base"])
    assert (cfg.model.hidden_size, cfg.model.num_hidden_layers, cfg.model.seq_length) == (768, 12, 64)


@pytest.mark.parametrize("argv, message", [
    (["--epochs=2.5"], "--epochs: expected an integer, got '2.5'"),
    (["--do_train=yes"], "--do_train: expected true or false, got 'yes'"),
    (["--learning_rate=fast"], "--learning_rate: expected a number, got 'fast'"),
    (["--bucket_list=[a]"], "--bucket_list: expected an integer, got 'a'"),
    (["--model.hidden_size=big"], "--model.hidden_size: expected an integer, got 'big'"),
    (["--epoch=2"], "--epoch: unknown key (did you mean 'epochs'?)"),
    (["--optimizer.nam=Adam"], "--optimizer.nam: unknown key (did you mean 'name'?)"),
    (["--model.hiden_size=8"], "--model.hiden_size: unknown key (did you mean 'hidden_size'?)"),
    (["--epochs.x=1"], "'epochs' is not a section"),
    (["--optimizer=Adam"], "--optimizer: is a section"),
    (["--bert_network=huge"], "bert_network: expected one of"),
    (["epochs=2"], "argument 'epochs=2': expected --key value or --key=value"),
    (["-epochs", "2"], "argument '-epochs': expected --key value or --key=value"),
    (["--=2"], "argument '--=2': expected --key value or --key=value"),
    (["--epochs"], "--epochs: missing value (--epochs VALUE or --epochs=VALUE)"),
    (["--epochs", "--do_train", "true"], "--epochs: missing value"),
    (["--epochs", "2", "3"], "argument '3': expected --key value"),
    (["--do_train", "yes"], "--do_train: expected true or false, got 'yes'"),
    (["--do_train", "1"], "--do_train: expected true or false, got '1'"),
])
def test_bad_overrides_name_the_key_and_what_was_expected(job_yaml, argv, message):
    with pytest.raises(ConfigError) as error:
        load_config(job_yaml, argv)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_inconsistent_model_is_reported_as_a_config_error(job_yaml):
    cfg = load_config(job_yaml, ["--model.num_attention_heads=3"])
    with pytest.raises(ConfigError, match="model: hidden_size .64. is not a multiple of num_attention_heads .3."):
        bert_config(cfg)


def test_missing_and_malformed_yaml_files(tmp_path, job_yaml):
    with pytest.raises(ConfigError, match="nope.yaml: cannot read config file"):
        load_config(str(tmp_path / "nope.yaml"), [])
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="broken.yaml: not valid YAML"):
        load_config(job_yaml, [f"--config_path={broken}"])
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="scalar.yaml: expected a mapping"):
        load_config(str(scalar), [])


def test_config_path_replaces_the_default_file(tmp_path, job_yaml):
    other = tmp_path / "other.yaml"
    other.write_text(JOB_YAML.replace("epochs: 3", "epochs: 9"))
    assert load_config(job_yaml, [f"--config_path={other}"]).epochs == 9


def test_model_config_file_sits_between_preset_and_yaml(tmp_path, job_yaml):
    model_file = tmp_path / "model.yaml"
    model_file.write_text("model:\n  hidden_size: 32\n  seq_length: 16\n  vocab_size: 99\n")
    cfg = load_config(job_yaml, [f"--model_config={model_file}", "--model.vocab_size=77"])
    assert cfg.model.hidden_size == 32   # from the model file
    assert cfg.model.seq_length == 64    # the job YAML's model section wins over the file
    assert cfg.model.vocab_size == 77    # the command line wins over both
    bad = tmp_path / "bad_model.yaml"
    bad.write_text("model:\n  hidden_sise: 32\n")
    with pytest.raises(ConfigError, match="bad_model.yaml: model.hidden_sise: unknown model field"):
        load_config(job_yaml, [f"--model_config={bad}"])
    mistyped = tmp_path / "mistyped.yaml"
    mistyped.write_text("model:\n  hidden_size: wide\n")
    with pytest.raises(ConfigError, match="mistyped.yaml: model.hidden_size: expected an integer"):
        load_config(job_yaml, [f"--model_config={mistyped}"])


def test_config_is_read_only(job_yaml):
    cfg = load_config(job_yaml, [])
    with pytest.raises(AttributeError, match="read-only"):
        cfg.epochs = 4


def test_entry_points_exit_with_one_line_on_config_errors(job_yaml, capsys):
    @exit_on_user_error
    def main(argv):
        load_config(job_yaml, argv)

    with pytest.raises(SystemExit) as exit_info:
        main(["--epochs=many"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: --epochs: expected an integer, got 'many'\n"


def test_the_shipped_pretrain_config_loads():
    cfg = load_config("pretrain_config.yaml", ["--bert_network=nezha"])
    assert bert_config(cfg).use_relative_positions is True


DOCUMENTED_YAML = """\
# A job.
# Second line of the intro.

# --- where to run -------------------
device: CPU           # Ascend | CPU
# The seed of
# every random choice.
seed: 1
name: "a # b"         # quoted '#' is a value
url: a#b              # '#' without a space before it too
model: {}             # BertConfig fields
long: 1               # first line,
                      # second line

# --- optimiser ---
Lamb:
  lr: 3.0e-4          # peak
  # not a continuation: another column
  eps: 1.0e-8
bare: true
"""


def test_documented_keys_reads_comments_groups_and_nesting():
    assert documented_keys(DOCUMENTED_YAML) == [
        KeyDoc("device", "CPU", "Ascend | CPU", "where to run", False),
        KeyDoc("seed", "1", "The seed of every random choice.", "where to run", False),
        KeyDoc("name", '"a # b"', "quoted '#' is a value", "where to run", False),
        KeyDoc("url", "a#b", "'#' without a space before it too", "where to run", False),
        KeyDoc("model", "{}", "BertConfig fields", "where to run", False),
        KeyDoc("long", "1", "first line, second line", "where to run", False),
        KeyDoc("Lamb", "", "", "optimiser", True),
        KeyDoc("Lamb.lr", "3.0e-4", "peak", "optimiser", False),
        KeyDoc("Lamb.eps", "1.0e-8", "not a continuation: another column", "optimiser", False),
        KeyDoc("bare", "true", "", "optimiser", False),
    ]


def flattened(values, prefix=""):
    """{'a.b': value} of every leaf (an empty mapping is a leaf) of a nested dict."""
    leaves = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            leaves.update(flattened(value, f"{prefix}{key}."))
        else:
            leaves[prefix + key] = value
    return leaves


SHIPPED_YAMLS = sorted(glob.glob(os.path.join(os.path.dirname(os.path.dirname(__file__)), "*_config.yaml")))


@pytest.mark.parametrize("path", SHIPPED_YAMLS, ids=os.path.basename)
def test_every_shipped_key_has_a_description_and_its_default(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    leaves = {doc.key: doc for doc in documented_keys(text) if not doc.is_section}
    expected = flattened(yaml.safe_load(text))
    assert list(leaves) == list(expected)  # the reader finds every key, in file order
    assert {key: yaml.safe_load(doc.default) for key, doc in leaves.items()} == expected
    assert [key for key, doc in leaves.items() if not doc.description] == []


def test_help_anywhere_lists_every_key_with_its_default_and_exits_0(job_yaml, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_config(job_yaml, ["--epochs", "2", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for key_and_default in ('bert_network tiny', 'model_config ""', "model.seq_length 64", "epochs 3",
                            "learning_rate 1.0e-4", "do_train true", 'run_name "demo"', "bucket_list [64, 128]",
                            "optimizer.name Lamb", "optimizer.warmup_steps 100"):
        assert f"  --{key_and_default}\n" in out


def test_help_shows_the_files_comments_by_group(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(DOCUMENTED_YAML)
    lines = help_text(str(path), "job.py").splitlines()
    assert lines[0] == "usage: job.py [--KEY VALUE | --KEY=VALUE ...] [--config_path FILE]"
    assert lines[2:4] == ["A job.", "Second line of the intro."]
    assert lines[lines.index("where to run:") + 1] == "  --device CPU".ljust(34) + "Ascend | CPU"
    assert lines[lines.index("optimiser:") + 1] == "  --Lamb.lr 3.0e-4".ljust(34) + "peak"
    assert "  --model.FIELD VALUE".ljust(34) + "BertConfig fields" in lines


def test_help_reads_config_path_and_h(job_yaml, tmp_path, capsys):
    other = tmp_path / "other.yaml"
    other.write_text("only_here: 1  # a key of the other file\n")
    with pytest.raises(SystemExit):
        load_config(job_yaml, ["-h", "--config_path", str(other)])
    out = capsys.readouterr().out
    assert "--only_here 1" in out and "a key of the other file" in out and "--epochs" not in out
    with pytest.raises(ConfigError, match="nope.yaml: cannot read config file"):
        load_config(job_yaml, ["--help", f"--config_path={tmp_path / 'nope.yaml'}"])
