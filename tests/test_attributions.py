"""Token attributions (captum Integrated Gradients) of tiny classification runs: completeness,
token alignment, comparing two runs, clear errors; and the Runs page's view of them."""
import pytest
import torch

from hft_core import attributions as A
from hft_core import models
from hft_core.config import RunConfig
from hft_core.data import load_data
from hft_core.sinks import MemorySink
from hft_core.trainer import train

TEXT = "Shares in the bank fell sharply after the chancellor announced new taxes on profits."
COMMON = dict(model="tiny:bert", data="bundled:bbc-news", n_train=64, n_eval=20, batch_size=8, max_length=64,
              lr=5e-3, eval_every=0, device="cpu", precision="fp32", checkpoint_every=0)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def lab(hft_home):
    """A store with two finished classification runs (alpha 1 and alpha 0 blends of tiny:bert) and a
    finished masked-lm run, trained for real; yields (store, {"alpha1": "run:<id>", ...})."""
    from hft_core.store import RunStore

    store = RunStore(hft_home)
    configs = {"alpha1": RunConfig(**COMMON, max_steps=40, mix={"blend": {"alpha": 1.0}}, name="alpha 1"),
               "alpha0": RunConfig(**COMMON, max_steps=40, mix={"blend": {"alpha": 0.0}}, name="alpha 0"),
               "mlm": RunConfig(**{**COMMON, "task": "masked-lm", "max_steps": 1}, name="mlm")}
    sources = {}
    for key, cfg in configs.items():
        run_id = store.create_run(cfg, status="running", name=cfg.name, group="attr")
        result = train(cfg, store.sink(run_id), out_dir=store.run_dir(run_id))
        store.set_status(run_id, result.status, checkpoint_dir=result.checkpoint)
        sources[key] = f"run:{run_id}"
    store.flush()
    yield store, sources
    store.close()


@pytest.fixture(scope="module")
def runs(lab):
    return lab[1]


def test_attributions_sum_to_the_change_in_probability_within_the_convergence_delta(runs):
    ex = A.explain(runs["alpha1"], TEXT, true_label=0, n_steps=300)
    model, tok, _ = A.load_classifier(runs["alpha1"])
    ids = tok(TEXT, return_tensors="pt")["input_ids"]
    mask = torch.ones_like(ids)
    with torch.no_grad():
        fx = A.forward_probs(model, ids, mask)[0]
        fb = A.forward_probs(model, A.baseline_ids(ids, tok), mask)[0]
    assert ex.probs == pytest.approx(fx.tolist(), abs=1e-6) and ex.base_probs == pytest.approx(fb.tolist(), abs=1e-6)
    assert ex.targets[0] == ex.predicted == int(fx.argmax())
    assert abs(float(fx[ex.predicted] - fb[ex.predicted])) > 0.01   # the words do move the prediction
    for c in ex.targets:
        moved = float(fx[c] - fb[c])
        total = sum(ex.scores[c])
        assert abs(total - moved) <= abs(ex.delta[c]) + 1e-5          # completeness, up to captum's own gap
        assert abs(ex.delta[c]) < 0.02 * abs(moved) + 1e-4, (ex.delta[c], moved)  # and that gap is small
    coarse = A.explain(runs["alpha1"], TEXT, targets=[ex.predicted], n_steps=4)
    assert abs(coarse.delta[ex.predicted]) >= abs(ex.delta[ex.predicted])  # fewer steps, a bigger gap


def test_tokens_align_with_the_tokenizer_and_the_baseline_keeps_special_tokens(runs):
    ex = A.explain(runs["alpha1"], TEXT, true_label=3, n_steps=8)
    tok = models.load_tokenizer(runs["alpha1"])
    ids = tok(TEXT)["input_ids"]
    assert ex.tokens == tok.convert_ids_to_tokens(ids) and ex.tokens[0] == "[CLS]" and ex.tokens[-1] == "[SEP]"
    assert set(ex.targets) == {ex.predicted, 3} and ex.true_label == 3
    assert all(len(ex.scores[c]) == len(ex.tokens) for c in ex.targets)
    assert sum(ex.probs) == pytest.approx(1.0, abs=1e-5) and len(ex.probs) == len(ex.label_names) == 5
    assert ex.label_names == load_data("bundled:bbc-news", "classification").label_names
    folder = A.explain(models.resolve_path(runs["alpha1"]), TEXT, n_steps=8)   # its checkpoint folder: the same
    assert folder.label_names == ex.label_names and folder.probs == pytest.approx(ex.probs, abs=1e-6)
    base = A.baseline_ids(torch.tensor([ids]), tok)[0].tolist()
    assert base[0] == tok.cls_token_id and base[-1] == tok.sep_token_id
    assert set(base[1:-1]) == {tok.pad_token_id} and len(base) == len(ids)


def test_compare_two_runs_on_the_same_eval_example(runs):
    examples, names = A.eval_examples(runs["alpha1"])
    cfg = A.run_config(runs["alpha1"])
    expected = load_data(cfg.data, "classification", n_eval=cfg.n_eval, seed=cfg.seed).eval
    assert examples == expected and names[0] == "business"
    e = examples[0]
    one, zero = A.compare_runs([runs["alpha1"], runs["alpha0"]], e["text"], true_label=e["label"], n_steps=8)
    assert one.tokens == zero.tokens and one.source == runs["alpha1"] and zero.source == runs["alpha0"]
    assert one.probs != zero.probs                                # two different models
    assert e["label"] in one.targets and e["label"] in zero.targets


def test_clear_errors(runs):
    with pytest.raises(ValueError, match=r"run nope has no checkpoint"):
        A.explain("run:nope", TEXT)
    with pytest.raises(A.AttributionError, match=rf"{runs['mlm']} is a masked-lm run, not a classification run"):
        A.explain(runs["mlm"], TEXT)
    with pytest.raises(A.AttributionError, match=r"tiny:bert is not a classification checkpoint"):
        A.explain("tiny:bert", TEXT)
    with pytest.raises(A.AttributionError, match="text to explain is empty"):
        A.explain(runs["alpha1"], "   ")
    with pytest.raises(A.AttributionError, match="true_label=9 is not a class"):
        A.explain(runs["alpha1"], TEXT, true_label=9)
    with pytest.raises(A.AttributionError, match="n_steps=1"):
        A.explain(runs["alpha1"], TEXT, n_steps=1)
    with pytest.raises(A.AttributionError, match="is a masked-lm run"):
        A.eval_examples(runs["mlm"])


# ---- the Runs page's view -----------------------------------------------------------------------
def test_view_colours_are_blue_orange_and_scale_with_the_row():
    V = A  # the rendering lives in hft_core.attributions (the notebook uses it too)
    assert V.colour(0.5, 1.0)[0] == "rgba(230, 97, 1, 0.425)"        # orange: toward the class
    assert V.colour(-1.0, 1.0)[0] == "rgba(33, 102, 172, 0.85)"      # blue: against it
    assert V.colour(3.0, 1.0)[0].endswith("0.85)") and V.colour(0.0, 0.0)[0].endswith(" 0.0)")
    assert V.colour(-1.0, 1.0)[1] == "#ffffff" and V.colour(0.1, 1.0)[1] == "#111111"  # readable text
    pieces = V.words(["[CLS]", "share", "##holders", "sold", "[SEP]"], [0.0, 0.2, -0.1, 0.4, 0.0])
    assert pieces == [("share", 0.2, True), ("holders", -0.1, False), ("sold", 0.4, True)]
    out = V.tokens_html(["[CLS]", "a", "<b>", "[SEP]"], [0.0, -0.5, 1.0, 0.0])
    assert "&lt;b&gt;" in out and "<b>" not in out and "[CLS]" not in out   # escaped, specials hidden
    assert 'title="a: -0.5000"' in out and "rgba(33, 102, 172, 0.425)" in out
    faint = A.tokens_html(["x", "y"], [0.001, -0.002])              # tiny effects stay pale: 0.02 is full colour
    assert "rgba(230, 97, 1, 0.043)" in faint and "rgba(33, 102, 172, 0.085)" in faint


def test_view_texts_say_what_the_numbers_are(runs):
    from ui import attributions_view as V

    ex = A.explain(runs["alpha1"], TEXT, true_label=2, n_steps=8)
    rows = V.probs_rows(ex)
    assert [r["probability"] for r in rows] == sorted(ex.probs, reverse=True)
    assert rows[0][""].startswith("predicted") and any("true" in r[""] for r in rows)
    assert V.target_title(ex, ex.predicted).startswith(f"toward **{ex.name(ex.predicted)}** (predicted")
    note = V.completeness_note(ex, 2)
    assert f"{sum(ex.scores[2]):+.4f}" in note and "convergence delta" in note and "8 steps" in note
    flat = A.Explanation(source="x", text="a b", tokens=["a", "b"], label_names=["p", "q"], probs=[0.5, 0.5],
                         base_probs=[0.5, 0.5], predicted=0, true_label=None, scores={0: [1e-4, -1e-4]},
                         delta={0: 0.0})
    assert "barely depends on the words" in V.completeness_note(flat, 0)
    assert "barely" not in V.completeness_note(
        A.Explanation(**{**flat.__dict__, "scores": {0: [0.3, -0.1]}}), 0)
    examples, names = A.eval_examples(runs["alpha1"])
    assert V.example_label(0, examples[0], names).startswith(f"#0 · {names[examples[0]['label']]} · ")


def test_runs_page_explains_a_run_and_compares_it_with_another(lab, monkeypatch):
    """The Runs page in AppTest: the section is there for a classification run, Explain fills it
    with the two runs side by side; a masked-lm run gets no section."""
    import sys
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from hft_core.runs import RunManager
    from ui.state import MANAGER_KEY

    root = Path(__file__).resolve().parents[1]
    monkeypatch.syspath_prepend(str(root))
    store, sources = lab
    rid, other = sources["alpha1"][4:], sources["alpha0"][4:]
    mgr = RunManager(store, train_fn=lambda *a, **k: None)
    try:
        at = AppTest.from_file(str(root / "app.py"), default_timeout=120)
        at.session_state[MANAGER_KEY] = mgr
        at.session_state["runs.selected"] = rid
        at.run()
        at.switch_page("pages/runs.py").run()
        assert not at.exception, at.exception
        assert any("Why this prediction" in e.label for e in at.expander)
        at.selectbox(key="runs.attr.other").set_value(other).run()
        at.number_input(key="runs.attr.steps").set_value(8).run()
        at.button(key="runs.attr.go").click().run()
        assert not at.exception, at.exception
        result = at.session_state["runs.attr.result"][1]
        assert [ex.source for ex in result] == [f"run:{rid}", f"run:{other}"]
        shown = " ".join(m.value for m in at.markdown)
        assert "toward **" in shown and "alpha 0" in shown
        at.session_state["runs.selected"] = sources["mlm"][4:]
        at.run()
        assert not any("Why this prediction" in e.label for e in at.expander)
    finally:
        mgr.shutdown()
