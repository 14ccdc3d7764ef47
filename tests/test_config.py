"""RunConfig: defaults, round trips, overrides and error messages a person can act on."""
import pytest

from hft_core.config import ConfigError, RunConfig, help_of, parse_set


def test_defaults_are_the_bundled_demo():
    cfg = RunConfig()
    assert (cfg.model, cfg.task, cfg.data) == ("bundled:minilm-l6", "classification", "bundled:bbc-news")
    assert len(cfg.mix) == 0


def test_yaml_and_json_round_trip():
    cfg = RunConfig(model="tiny:gpt2", task="causal-lm", data="bundled:qa", lr=3e-4, max_steps=7, seed=3, name="x")
    assert RunConfig.from_yaml(cfg.to_yaml()) == cfg
    assert RunConfig.from_json(cfg.to_json()) == cfg
    assert RunConfig.from_dict(cfg.to_dict()) == cfg


def test_every_field_has_help():
    from dataclasses import fields
    for f in fields(RunConfig):
        assert help_of(RunConfig, f.name), f"field {f.name} has no help text"


def test_yaml_scientific_notation_is_a_float():
    # YAML 1.1 reads 1e-4 as a string; the config must still take it
    cfg = RunConfig.from_yaml("lr: 1e-4\nmax_steps: '30'\n")
    assert cfg.lr == pytest.approx(1e-4) and cfg.max_steps == 30


@pytest.mark.parametrize("field,value,words", [
    ("lr", 5.0, ["lr=5.0", "between 0 and 1"]),
    ("batch_size", 0, ["batch_size=0", "at least 1"]),
    ("task", "regression", ["task='regression'", "classification"]),
    ("precision", "int4", ["precision='int4'", "fp32"]),
    ("n_train", -1, ["n_train=-1", "0 or more"]),
    ("eval_fraction", 1.5, ["eval_fraction=1.5", "between 0 and 1"]),
    ("device", "tpu", ["device='tpu'", "cpu"]),
    ("lr", "fast", ["lr='fast'", "number"]),
])
def test_bad_values_name_field_value_and_fix(field, value, words):
    with pytest.raises(ConfigError) as e:
        RunConfig(**{field: value})
    for w in words:
        assert w in str(e.value)


def test_unknown_field_lists_valid_ones():
    with pytest.raises(ConfigError, match="unknown config field.*'learning_rate'.*valid fields"):
        RunConfig.from_dict({"learning_rate": 1e-3})


def test_not_a_mapping_and_bad_yaml():
    with pytest.raises(ConfigError, match="mapping"):
        RunConfig.from_yaml("- a\n- b\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        RunConfig.from_yaml("lr: [1,\n")


def test_overrides_and_parse_set():
    cfg = RunConfig().with_overrides(parse_set(["lr=3e-4", "max_steps=5", "name=my run"]))
    assert cfg.lr == pytest.approx(3e-4) and cfg.max_steps == 5 and cfg.name == "my run"
    with pytest.raises(ConfigError, match="key=value"):
        parse_set(["lr"])
    with pytest.raises(ConfigError, match="unknown field 'lrr'"):
        RunConfig().with_overrides({"lrr": 1})


def test_unknown_strategy_lists_available():
    with pytest.raises(ConfigError, match="unknown strategy 'magic'"):
        RunConfig(mix={"magic": {}})


def test_config_file_missing(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        RunConfig.load(str(tmp_path / "nope.yaml"))


def test_strategies_do_not_import_config_and_config_error_is_one_class():
    """No import circle: the strategy registry and every strategy module import hft_core.fields, never
    hft_core.config; config.py re-exports ConfigError, so both names are the same class."""
    import subprocess
    import sys

    code = ("import sys, hft_core.strategies.base as b; b.all_specs(); "
            "assert 'hft_core.config' not in sys.modules, 'a strategy imported hft_core.config'; "
            "import hft_core.config as c, hft_core.fields as f; assert c.ConfigError is f.ConfigError")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
