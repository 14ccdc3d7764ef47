"""`RunConfig.cli_command()` round trip (issue 12): the printed command rebuilds the same config.

The command is read back as a POSIX shell would split it (line continuations, quotes) and then
as the CLI reads its ``--set`` items: ``parse_set`` + ``RunConfig().with_overrides``.
"""
from __future__ import annotations

import shlex
import subprocess

import pytest

from hft_core.config import RunConfig, parse_set

CONFIGS = {
    "defaults": RunConfig(),
    "scalars": RunConfig(model="tiny:bert", task="classification", lr=3e-5, max_steps=7, batch_size=4,
                         precision="fp32", optimizer="sgd", schedule="cosine", warmup_steps=2, eval_at_start=True,
                         weight_decay=0.0, max_grad_norm=0.5, seed=3, eval_fraction=0.25, device="cpu"),
    "strings with spaces and colons": RunConfig(
        model="tiny:gpt2", task="causal-lm", data="/tmp/my data/q&a: set #2.jsonl", name="run: v2 (lr 3e-5)",
        group="sweep a:b", text_column="body text", label_column="it's"),
    "strings YAML would read as something else": RunConfig(name="123", group="true", text_column="1e-4",
                                                           label_column="null", data="- a.csv"),
    "quotes, $ and backslashes": RunConfig(name='say "hi" $HOME `x` \\n', group="a=b", data="[x].csv"),
    "strategies with non-default fields": RunConfig(model="tiny:bert", mix={
        "blend": {"alpha": 0.25, "mode": "shrink_perturb", "shrink": 0.3},
        "kd": {"teacher": "run:r-3f9a2c", "temperature": 4.0, "transfer_set": False},
        "eda": {"ops": "insert, swap", "copies": 2},
    }),
    "strategies at their defaults": RunConfig(mix={"lora": {}, "l2sp": {}}),
    "strategy strings": RunConfig(mix={"lora": {"target_modules": "query,value"}, "reinit": {"layers": 2}}),
}


def read_back(command: str) -> RunConfig:
    """The config the CLI builds from ``command`` typed into a shell."""
    words = shlex.split(command.replace("\\\n", " "))  # backslash-newline: the shell's line continuation
    assert words[:4] == ["python", "-m", "hft_core", "train"], command
    rest = words[4:]
    assert rest[0::2] == ["--set"] * (len(rest) // 2) and len(rest) % 2 == 0, command
    return RunConfig().with_overrides(parse_set(rest[1::2]))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_the_printed_command_rebuilds_the_config(name):
    cfg = CONFIGS[name]
    command = cfg.cli_command()
    back = read_back(command)
    assert back == cfg, f"{command}\nrebuilds\n{back.to_dict()}"
    assert back.to_dict() == cfg.to_dict()


def test_only_changed_fields_are_printed():
    assert RunConfig().cli_command() == "python -m hft_core train"
    cmd = RunConfig(model="tiny:bert", max_steps=7).cli_command()
    assert read_back(cmd) == RunConfig(model="tiny:bert", max_steps=7)
    assert cmd.count("--set") == 2


def test_bash_splits_the_command_into_the_same_words():
    """shlex stands in for the shell above; bash itself agrees on every word."""
    for cfg in CONFIGS.values():
        command = cfg.cli_command()
        script = f'set -- {command}\nprintf "%s\\0" "$@"'
        out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)
        words = out.stdout.split("\0")[:-1]
        assert out.returncode == 0, out.stderr
        assert words == shlex.split(command.replace("\\\n", " ")), command
