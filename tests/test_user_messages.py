"""What a new user sees in the terminal: no library deprecation noise from a LoRA run, and a model path
that is a file named as a file (with what a model folder holds)."""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hft_core.models import ModelError, load_model, resolve_path  # noqa: E402
from hft_core.strategies.lora import wrap_lora  # noqa: E402


def test_wrapping_lora_raises_no_gradient_checkpointing_futurewarning():
    model = load_model("tiny:bert", "classification", num_labels=3, seed=0)
    # the library itself still warns when asked directly (so the filter below is what hides it, nothing else)
    with pytest.warns(FutureWarning, match="is_gradient_checkpointing"):
        model.is_gradient_checkpointing
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        peft_model = wrap_lora(model, r=4, alpha=8, dropout=0.0, target_modules="all-linear")
    assert not [w for w in seen if "is_gradient_checkpointing" in str(w.message)], [str(w.message) for w in seen]
    assert any("lora_A" in n for n, _ in peft_model.named_parameters())
    with warnings.catch_warnings(record=True) as after:  # the filter is scoped: nothing else stays silenced
        warnings.simplefilter("always")
        warnings.warn("other", FutureWarning)
    assert [str(w.message) for w in after] == ["other"]


def test_a_model_path_that_is_a_file_says_so(tmp_path):
    stray = tmp_path / "notes.txt"
    stray.write_text("x")
    with pytest.raises(ModelError, match=r"is a file .* not a model folder: a model folder holds config.json and the "
                                         r"weights \(model.safetensors\)"):
        resolve_path(str(stray))
    folder = tmp_path / "saved"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_text("x")
    with pytest.raises(ModelError, match=f"give the folder it is in, {folder}"):
        resolve_path(str(folder / "model.safetensors"))
    with pytest.raises(ModelError, match="does not exist"):
        resolve_path(str(tmp_path / "nowhere"))
