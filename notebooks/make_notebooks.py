"""Write the teaching notebooks (outputs empty) from the cell sources below.

    python notebooks/make_notebooks.py      # rewrites notebooks/*.ipynb

Each notebook is the baseline plus ONE idea, with the new lines marked ``# NEW``
(STYLE.md #12). The parameter cell reads HFT_NOTEBOOK_QUICK: "1" runs a tiny random
model for a few steps (seconds; what tests/test_notebooks.py does), anything else the
bundled real model (a minute or a few on a laptop CPU).
"""
from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

PARAMS = '''# Parameters. HFT_NOTEBOOK_QUICK=1 (the tests) runs a tiny random 2-layer model for a few steps, in seconds;
# otherwise the bundled MiniLM-L6 on BBC News (1-3 minutes on a laptop CPU).
import os

QUICK = os.environ.get("HFT_NOTEBOOK_QUICK") == "1"
MODEL = "tiny:bert" if QUICK else "bundled:minilm-l6"
STEPS = 3 if QUICK else 40
N_TRAIN = 32 if QUICK else 200
N_EVAL = 16 if QUICK else 200'''

BASELINE = '''from hft_core.config import RunConfig
from hft_core.runs import run_here
from hft_core.sinks import MemorySink

baseline = RunConfig(model=MODEL, data="bundled:bbc-news", n_train=N_TRAIN, n_eval=N_EVAL,
                     max_length=64, batch_size=16, max_steps=STEPS, eval_every=10, device="cpu", seed=0)
baseline_log = MemorySink()
baseline_result = run_here(baseline, sink=baseline_log)  # queued in the lab's store: the app's Live page shows it
baseline_result.metrics'''

PLOT = '''import pandas as pd
import plotly.express as px


def curves(logs: dict, metric: str, title: str):
    """One line per run of ``metric`` against the step, from MemorySinks."""
    frames = []
    for name, log in logs.items():
        steps_values = log.series(metric)
        frames.append(pd.DataFrame({"step": [s for s, _ in steps_values], metric: [v for _, v in steps_values],
                                    "run": name}))
    return px.line(pd.concat(frames), x="step", y=metric, color="run", markers=True, title=title)'''


def notebook(title: str, intro: str, cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [new_markdown_cell(f"# {title}\n\n{intro}"), new_code_cell(PARAMS)]
    for kind, src in cells:
        nb.cells.append(new_markdown_cell(src) if kind == "md" else new_code_cell(src))
    for i, c in enumerate(nb.cells):  # stable ids: regenerating gives the same file
        c["id"] = f"cell-{i:02d}"
    return nb


NOTEBOOKS: dict[str, tuple[str, str, list[tuple[str, str]]]] = {}

NOTEBOOKS["00_quickstart"] = ("Quickstart: one fine-tuning run with hft_core", """\
Fine-tune a small pretrained model on BBC News (5 topics) with `hft_core.runs.run_here`,
collect its numbers in a `MemorySink`, and plot them. The run goes through the lab's queue and
store like any other (`run_here`): the app's Live page shows it while it trains, Stop there
stops it, and Runs keeps it. Every other notebook is this one
plus **one** idea, with the new lines marked `# NEW`.""", [
    ("md", "## The baseline run\nA `RunConfig` describes the run; `run_here` queues it in the store, trains it here "
           "in its turn and sends every number to the store and to the sink."),
    ("code", BASELINE),
    ("md", "## What was logged\nEvery step logs `loss` and each loss term (`loss/task`, ...), the learning rate, "
           "throughput; every eval logs `eval/*`."),
    ("code", '''frame = baseline_log.to_frame()
print(sorted(c for c in frame.columns if c != "step"))
frame.tail()'''),
    ("code", PLOT),
    ("code", '''curves({"baseline": baseline_log}, "loss", "training loss")'''),
    ("code", '''curves({"baseline": baseline_log}, "eval/accuracy", "eval accuracy (chance = 0.2)")'''),
    ("md", "## The run's log\nEvents: the device and precision plan, the data, the final metrics."),
    ("code", '''for level, message in baseline_log.events:
    print(f"[{level}] {message[:160]}")'''),
    ("md", "The same run from a terminal: `hft train --set n_train=200 --set max_length=64 "
           "--set max_steps=40`; the app's Live page shows it, wherever it was started."),
])

NOTEBOOKS["01_alpha_blend"] = ("Alpha blend: pretrained x random start", r"""\
The baseline starts from the pretrained weights. Here the start point is a blend
$\theta = \alpha\,\theta_{pretrained} + (1-\alpha)\,\theta_{random}$: $\alpha = 1$ is the
baseline, $\alpha = 0$ trains from scratch. **New:** one line, `mix.blend.alpha`.""", [
    ("code", BASELINE),
    ("md", "## The one new idea: blend the start point"),
    ("code", '''# NEW: start from half pretrained, half fresh random weights
blended = baseline.with_overrides({"mix.blend.alpha": 0.5})  # NEW
blended_log = MemorySink()
blended_result = run_here(blended, sink=blended_log)
# NEW: and from scratch, for the other end
scratch = baseline.with_overrides({"mix.blend.alpha": 0.0})  # NEW
scratch_log = MemorySink()
scratch_result = run_here(scratch, sink=scratch_log)
{"baseline": baseline_result.metrics, "alpha 0.5": blended_result.metrics, "alpha 0": scratch_result.metrics}'''),
    ("code", PLOT),
    ("code", '''logs = {"baseline (alpha 1)": baseline_log, "alpha 0.5": blended_log, "alpha 0 (scratch)": scratch_log}
curves(logs, "loss", "training loss")'''),
    ("code", '''curves(logs, "eval/accuracy", "eval accuracy (chance = 0.2)")'''),
    ("md", "**Look for:** the lower alpha, the higher the first losses and the lower the accuracy after the same "
           "steps; from scratch stays near chance. (With the tiny random model of the quick setting there is "
           "nothing pretrained to keep, so the three runs look alike.)"),
])

NOTEBOOKS["02_distillation"] = ("Knowledge distillation: a tiny student learns from a fine-tuned teacher", r"""\
First fine-tune MiniLM (the baseline: the teacher). Then train a 2-layer, 64-wide student
from a random start, once on the labels alone and once with the teacher's softened
predictions too (Hinton et al. 2015):
$(1-r)\,\mathrm{CE}(s, y) + r\,T^2\,\mathrm{KL}(\mathrm{softmax}(t/T) \Vert \mathrm{softmax}(s/T))$.
**New:** `mix.kd.teacher` pointing at the teacher's checkpoint.""", [
    ("code", BASELINE),
    ("code", '''teacher_folder = baseline_result.checkpoint  # model weights + tokenizer + run_config.yaml
teacher_folder'''),
    ("md", "## The student alone\n`tiny:bert` shares MiniLM's tokenizer, so the teacher's inputs and the student's match."),
    ("code", '''STUDENT_STEPS = 3 if QUICK else 150
student = baseline.with_overrides({"model": "tiny:bert", "lr": 1e-3, "max_steps": STUDENT_STEPS, "eval_every": 50})
student_log = MemorySink()
student_result = run_here(student, sink=student_log)
student_result.metrics'''),
    ("md", "## The one new idea: learn from the teacher too"),
    ("code", '''# NEW: the same student, now also matching the teacher's predictions at temperature 2
distilled = student.with_overrides({"mix.kd.teacher": teacher_folder, "mix.kd.temperature": 2.0,  # NEW
                                    "mix.kd.ratio": 0.5})  # NEW
distilled_log = MemorySink()
distilled_result = run_here(distilled, sink=distilled_log)
{"teacher": baseline_result.metrics["eval/accuracy"], "student alone": student_result.metrics["eval/accuracy"],
 "student + KD": distilled_result.metrics["eval/accuracy"]}'''),
    ("code", PLOT),
    ("code", '''curves({"student alone": student_log, "student + KD": distilled_log}, "eval/accuracy", "the students' eval accuracy")'''),
    ("code", '''# NEW: the loss terms of the distilled run: labels (already weighted by 1 - r), teacher, transfer set
import plotly.express as px

frame = distilled_log.to_frame()
px.line(frame, x="step", y=[c for c in ("loss/task", "loss/kd", "loss/kd_transfer") if c in frame], title="loss terms")'''),
    ("md", "**Look for:** the KD student above the student alone (the `distill_student` preset checks it over "
           "several seeds), and `loss/kd` falling as the student learns to match the teacher."),
])

NOTEBOOKS["03_l2sp"] = ("L2-SP: pull toward the pretrained weights", r"""\
With very few examples, plain fine-tuning can wander far from the pretrained weights.
L2-SP adds $\frac{\beta}{2}\lVert w - w_0\rVert^2$ to the loss (Li et al. 2018), usually with
weight decay off. **New:** `mix.l2sp`, `weight_decay=0`, and a few-shot training set.""", [
    ("code", '''N_TRAIN = 16 if QUICK else 25   # few-shot: the setting L2-SP is for'''),
    ("code", BASELINE),
    ("md", "## The one new idea: L2-SP instead of weight decay"),
    ("code", '''# NEW: penalise the distance from the starting weights; the penalty replaces weight decay
l2sp = baseline.with_overrides({"mix.l2sp.beta": 0.01, "mix.l2sp.gamma": 0.01, "weight_decay": 0.0})  # NEW
l2sp_log = MemorySink()
l2sp_result = run_here(l2sp, sink=l2sp_log)
{"baseline": baseline_result.metrics, "L2-SP": l2sp_result.metrics}'''),
    ("code", PLOT),
    ("code", '''curves({"L2-SP": l2sp_log}, "loss/l2sp", "the L2-SP term: 0 at the start, grows as the weights move")'''),
    ("code", '''curves({"baseline": baseline_log, "L2-SP": l2sp_log}, "eval/accuracy", "eval accuracy")'''),
    ("md", "**Look for:** `loss/l2sp` starts at exactly 0. The accuracy difference on one seed is small and noisy; "
           "the `l2sp_few_shot` preset runs it over several seeds."),
])

NOTEBOOKS["04_lora"] = ("LoRA: train a low-rank update", r"""\
LoRA freezes the pretrained weights and learns $W_0 x + \frac{\alpha}{r} B A x$ beside the
attention's query and value layers (Hu et al. 2021). **New:** `mix.lora.r` and a higher
learning rate, which LoRA usually needs.""", [
    ("code", BASELINE),
    ("md", "## The one new idea: LoRA adapters"),
    ("code", '''# NEW: rank-8 adapters on query/value; only they and the new head train
lora = baseline.with_overrides({"mix.lora.r": 8, "lr": 1e-3})  # NEW
lora_log = MemorySink()
lora_result = run_here(lora, sink=lora_log)
{"baseline": baseline_result.metrics, "LoRA": lora_result.metrics}'''),
    ("code", '''# NEW: how many parameters each run trained
for name, log in {"full": baseline_log, "LoRA r=8": lora_log}.items():
    print(f"{name:9} trains {log.last('params_trainable'):>12,.0f} of {log.last('params_total'):,.0f} parameters "
          f"({100 * log.last('params_trainable') / log.last('params_total'):.2f}%)")'''),
    ("code", PLOT),
    ("code", '''curves({"full fine-tuning": baseline_log, "LoRA r=8": lora_log}, "eval/accuracy", "eval accuracy")'''),
    ("md", "**Look for:** a tiny share of trainable parameters with accuracy close to full fine-tuning. On a CPU "
           "the step is not much faster: the forward pass still runs the whole model."),
])

NOTEBOOKS["05_precision"] = ("Precision: bf16 autocast vs fp32", """\
bf16 keeps fp32's range with 8 bits of precision. On a GPU with bf16 it is faster; on a
CPU without native bf16 it is emulated and slower. **New:** `precision="bf16"`, and a
look at what the device supports.""", [
    ("code", BASELINE.replace('device="cpu", seed=0)', 'device="cpu", seed=0, precision="fp32")')),
    ("md", "## What this machine can do"),
    ("code", '''from hft_core.precision import describe_device, plan_precision

plan = plan_precision("bf16", describe_device("cpu"))  # NEW: the plan the trainer will use
print(plan.reason)
print(plan.warning or "native bf16: expect a speed-up")'''),
    ("md", "## The one new idea: bf16 autocast"),
    ("code", '''bf16 = baseline.with_overrides({"precision": "bf16"})  # NEW
bf16_log = MemorySink()
bf16_result = run_here(bf16, sink=bf16_log)
{"fp32": baseline_result.metrics, "bf16": bf16_result.metrics}'''),
    ("code", '''import statistics

for name, log in {"fp32": baseline_log, "bf16": bf16_log}.items():
    speeds = [v for _, v in log.series("samples_per_s")][1:]  # the first step includes warm-up
    print(f"{name}: {statistics.fmean(speeds):.1f} samples/s")'''),
    ("code", PLOT),
    ("code", '''curves({"fp32": baseline_log, "bf16": bf16_log}, "loss", "training loss")'''),
    ("md", "**Look for:** near-identical loss curves; the speed depends on the hardware, and on this lab's CPUs "
           "bf16 is the slower one."),
])

NOTEBOOKS["06_augmentation"] = ("EDA: augment a small training set", """\
With only 50 labelled examples, EDA (Wei & Zou 2019) adds copies of each text with a few
words inserted, swapped or deleted. **New:** `mix.eda` and a 50-example training set.""", [
    ("code", '''N_TRAIN = 16 if QUICK else 50   # small data: where EDA is meant to help'''),
    ("code", BASELINE),
    ("md", "## What EDA does to a sentence"),
    ("code", '''from hft_core.explain import eda_examples

for op, text in eda_examples("The central bank raised interest rates again on Thursday", rate=0.2):
    print(f"{op:6}  {text}")'''),
    ("md", "## The one new idea: train on augmented copies too"),
    ("code", '''# NEW: two augmented copies of every example, 10% of the words changed per operation
eda = baseline.with_overrides({"mix.eda.rate": 0.1, "mix.eda.copies": 2})  # NEW
eda_log = MemorySink()
eda_result = run_here(eda, sink=eda_log)
{"baseline": baseline_result.metrics, "EDA": eda_result.metrics}'''),
    ("code", PLOT),
    ("code", '''curves({"baseline": baseline_log, "EDA": eda_log}, "eval/accuracy", "eval accuracy")'''),
    ("md", "**Look for:** each EDA step sees three times as many texts (slower); the accuracy gain, if any, is "
           "within seed noise on one run: the `eda_small_data` preset runs several seeds."),
])


NOTEBOOKS["07_wise_ft"] = ("WiSE-FT: interpolate after fine-tuning", r"""\
Fine-tune (the baseline), then walk the straight line between the starting weights and
the fine-tuned ones, $\theta(a) = (1-a)\,\theta_0 + a\,\theta_{ft}$, and evaluate each point
(Wortsman et al. 2022). No extra training. **New:** `merge.wise_ft_sweep` after the run.""", [
    ("code", BASELINE),
    ("md", "## The one new idea: sweep a from the start to the fine-tuned weights"),
    ("code", '''# NEW: the same held-out examples the run evaluated on
from hft_core import data, merge

held_out = data.load_data(baseline.data, baseline.task, n_train=baseline.n_train, n_eval=baseline.n_eval,
                          seed=baseline.seed).eval
# NEW: theta_0 = the model the run started from (its new head drawn from the same seed), theta_ft = the checkpoint
rows = merge.wise_ft_sweep(baseline.model, baseline_result.checkpoint, baseline.task, held_out,
                           seed=baseline.seed, max_length=baseline.max_length)
[(r["alpha"], round(r["eval/accuracy"], 3)) for r in rows]'''),
    ("code", '''import plotly.express as px

px.line(x=[r["alpha"] for r in rows], y=[r["eval/accuracy"] for r in rows], markers=True,
        labels={"x": "a (0 = start, 1 = fine-tuned)", "y": "eval accuracy"}, title="WiSE-FT: accuracy along the line")'''),
    ("md", "**Look for:** a = 0 is at chance, because the start point's classifier head is random; the curve "
           "rises and flattens before a = 1. The paper's out-of-distribution gains need a zero-shot head and a "
           "shifted test set, which this example does not have. (The quick setting's tiny random model has "
           "nothing to interpolate from, so its curve is flat noise.)"),
])

NOTEBOOKS["08_pretrain_then_finetune"] = ("Pretraining, then fine-tuning: why pretraining matters", r"""\
A tiny BERT trained from scratch learns the 5 BBC News topics poorly from 200 labelled articles.
Here it first learns from the *text* of the 1,700 training articles, without their labels, for a
minute, with two self-supervised objectives: a contrastive one (two random passages of one article
must find each other among the batch's other articles; SimCSE/Contriever-style InfoNCE) and BERT's
masked-language-model (hide 15% of the tokens and predict them). Then each pretrained model and an
untouched one are fine-tuned the same way, next to a bag-of-words logistic regression. The eval
articles are held out of the pretraining too (the pretraining split of `bundled:bbc-news` is the
classification split without its labels). **New:** a vocabulary learnt from the training articles
(`corpus_vocab`), a `task="contrastive"` run, then its checkpoint as the `model` to fine-tune.""", [
    ("code", '''TINY = "tiny:bert" if QUICK else "tiny:bert-small"   # 2 layers, 128 wide, random
VOCAB = 500 if QUICK else 4000          # NEW: a WordPiece vocabulary of this many words, learnt from the training texts
PRETRAIN_STEPS = 3 if QUICK else 300     # steps of 32 articles (about a minute each on 2 CPU cores)
FT_STEPS = 3 if QUICK else 100'''),
    ("md", "## What masked-LM training sees"),
    ("code", '''# BERT's masking: 15% of the tokens are chosen; of those 80% become [MASK], 10% a random token, 10% stay
import torch

from hft_core.models import load_tokenizer
from hft_core.tasks import mask_tokens

tok = load_tokenizer(TINY)
ids = tok(["Shares in the bank fell sharply after the chancellor announced new taxes on profits."],
          return_tensors="pt")["input_ids"]
masked, labels = mask_tokens(ids, tok, generator=torch.Generator().manual_seed(1))
print(tok.decode(masked[0]))
print("to predict:", tok.convert_ids_to_tokens(labels[0][labels[0] != -100].tolist()))'''),
    ("md", "## Pretrain twice on the training articles, labels unused"),
    ("code", '''from hft_core.config import RunConfig
from hft_core.home import hft_home
from hft_core.sinks import MemorySink
from hft_core.trainer import train

# NEW: the pretraining runs. Contrastive: eval = how often a held-out passage finds its article's other passage
# among 32 (chance 3%); masked-LM: eval = perplexity on a fixed masking of the held-out articles
SHARED = dict(model=TINY, corpus_vocab=VOCAB, init_std=0.02, data="bundled:bbc-news", n_eval=N_EVAL, max_length=128,
              batch_size=32, max_steps=PRETRAIN_STEPS, warmup_steps=0 if QUICK else 30, eval_every=0 if QUICK else 100,
              eval_at_start=True, device="cpu", seed=0)
pretrained, pretrain_logs = {}, {}
for task, lr in (("contrastive", 1e-3), ("masked-lm", 2e-3)):
    pretrain_logs[task] = MemorySink()
    pretrained[task] = train(RunConfig(task=task, lr=lr, **SHARED), pretrain_logs[task],
                             out_dir=hft_home() / "notebooks" / f"08_{task}").checkpoint
{"contrastive retrieval accuracy": pretrain_logs["contrastive"].series("eval/retrieval_accuracy"),
 "masked-LM perplexity": [(s, round(p)) for s, p in pretrain_logs["masked-lm"].series("eval/perplexity")]}'''),
    ("md", "## Fine-tune each the same way on the labelled articles, next to a bag-of-words baseline"),
    ("code", '''def finetune(model: str, **extra) -> MemorySink:
    cfg = RunConfig(model=model, data="bundled:bbc-news", n_train=N_TRAIN, n_eval=N_EVAL, max_length=128,
                    batch_size=16, max_steps=FT_STEPS, lr=1e-3, init_std=0.02, eval_every=0 if QUICK else 25,
                    device="cpu", seed=0, **extra)
    log = MemorySink()
    train(cfg, log)
    return log


logs = {"from scratch": finetune(TINY, corpus_vocab=VOCAB),           # the same architecture and vocabulary
        "after contrastive": finetune(pretrained["contrastive"]),    # NEW: a pretrained checkpoint as the model
        "after masked-LM": finetune(pretrained["masked-lm"]),
        "bag-of-words": finetune("baseline:bag-of-words")}           # NEW: TF-IDF + logistic regression
{name: round(log.last("eval/accuracy"), 3) for name, log in logs.items()}'''),
    ("code", PLOT + '''


curves(logs, "eval/accuracy", "Fine-tuning the same tiny BERT: from scratch vs after each pretraining")'''),
    ("md", "**Look for:** the contrastive run's retrieval accuracy climbs from chance within a minute; the "
           "masked-LM run's perplexity falls from about the vocabulary size. Fine-tuned the same way, the "
           "model after contrastive pretraining learns sooner and ends higher than the one from scratch, and "
           "the one after as many masked-LM steps does not: that objective has only learnt word frequencies "
           "so far. Measured (the `pretrain_then_finetune` preset, seeds 0-5, in its `result:`) and drawn "
           "against the pretraining budget and the number of labels on the Learn page. The bag-of-words "
           "line is still above every tiny BERT: the topic of a news article is in its words. (The quick "
           "setting trains a few steps only: its numbers are noise.)"),
])

NOTEBOOKS["09_attributions"] = ("Token attributions: which words made the prediction", r"""\
Fine-tune as in the quickstart, then ask *why* the model predicted what it did for one held-out
article. Integrated Gradients (Sundararajan et al. 2017, through captum) integrates the gradient
of a class's probability along a straight path from a "no words" baseline ([PAD] everywhere but
[CLS]/[SEP]) to the text; each token's share adds up to the change in probability. **New:**
`attributions.explain` on the run's checkpoint.""", [
    ("code", BASELINE.replace("baseline_result = train(baseline, baseline_log)",
                              "from hft_core.home import hft_home\n"
                              "baseline_result = train(baseline, baseline_log, out_dir=hft_home() / \"notebooks\" / \"09_finetuned\")")),
    ("md", "## The one new idea: attribute the prediction to the tokens"),
    ("code", '''# NEW: the run's own held-out examples, and Integrated Gradients toward the predicted and the true class
from hft_core import attributions

examples, names = attributions.eval_examples(baseline_result.checkpoint)
example = examples[0]
ex = attributions.explain(baseline_result.checkpoint, example["text"], true_label=example["label"])
print("true:", names[example["label"]], "| predicted:", names[ex.predicted])
{names[c]: round(p, 3) for c, p in enumerate(ex.probs)}'''),
    ("code", '''# NEW: the text, tokens coloured toward (orange) or against (blue) each class
from IPython.display import HTML

HTML(attributions.legend_html() + "".join(
    f"<p>toward <b>{ex.name(c)}</b>: sum of attributions {sum(ex.scores[c]):+.3f} = p(text) - p(baseline) "
    f"{ex.probs[c] - ex.base_probs[c]:+.3f}, convergence delta {ex.delta[c]:+.1e}</p>"
    + attributions.tokens_html(ex.tokens, ex.scores[c]) for c in ex.targets))'''),
    ("code", '''# NEW: the ten tokens that moved the predicted class most, either way
sorted(((t, round(s, 4)) for t, s in zip(ex.tokens, ex.scores[ex.predicted])), key=lambda ts: -abs(ts[1]))[:10]'''),
    ("md", "**Look for:** the topic words (a company, a minister, a team) carry most of the attribution "
           "toward the predicted class, and the attributions add up to the change in probability up to a "
           "tiny convergence delta. Where the prediction is wrong, compare the two rows: which words "
           "pulled it away from the true class? The Runs page shows the same for any finished "
           "classification run, and two runs side by side. (The quick setting's tiny model has barely "
           "trained, so its attributions are small and noisy.)"),
])

def write_all(names: list[str] | None = None) -> list[Path]:
    paths = []
    for name, (title, intro, cells) in NOTEBOOKS.items():
        if names and name not in names:
            continue
        nb = notebook(title, intro, cells)
        nbformat.validate(nb)
        path = HERE / f"{name}.ipynb"
        nbformat.write(nb, str(path))
        paths.append(path)
    return paths


if __name__ == "__main__":
    for p in write_all():
        print(p)
