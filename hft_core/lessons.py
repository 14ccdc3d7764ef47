"""The Learn page's text: for each strategy or topic, what it does in plain words, its formula,
its source, what to look for in the curves, and which picture ``hft_core.explain`` draws for it.

Titles and references come from the strategy registry where a strategy is registered, so they
are written once; a strategy registered without a lesson here still gets one from its entry.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Lesson:
    key: str            # registry name of the strategy when there is one, else a topic
    title: str
    plain: str          # what it does, in plain words
    formula: str        # LaTeX
    reference: str      # paper and year
    look_for: str       # what to look for in the curves
    picture: str        # which picture the page draws ("blend", "temperature", ...)


LESSONS: list[Lesson] = [
    Lesson("blend", "Alpha blend: pretrained x random",
           "Start from a mix of the pretrained weights and a fresh random initialisation. alpha = 1 is plain "
           "fine-tuning, alpha = 0 is training from scratch; in between keeps part of what pretraining learnt. "
           "Shrink-and-perturb is the same idea with its own two knobs.",
           r"\theta_{init} = \alpha\,\theta_{pretrained} + (1-\alpha)\,\theta_{random}"
           r"\qquad\text{shrink-perturb: } \theta = s\,\theta + p\,\theta_{fresh}",
           "Ash & Adams 2020 (shrink and perturb); the alpha knob is this lab's convex case",
           "Eval accuracy after few steps falls as alpha falls; alpha = 0 stays near chance (20% on 5 BBC topics). "
           "The first losses start higher the lower alpha is.", "blend"),
    Lesson("reinit", "Re-initialise the top k layers",
           "Throw away the last k transformer blocks and start them fresh; the lower blocks keep their "
           "pretrained weights. The top layers are the most specific to the pretraining task.",
           r"\theta_{\ell} \sim \mathcal{N}(0, 0.02^2)\ \text{for}\ \ell > L-k,\ \ \theta_\ell = \theta_\ell^{pre}\ \text{otherwise}",
           "Zhang et al. 2021, Revisiting few-sample BERT fine-tuning",
           "Small k can make few-sample runs steadier; large k approaches training from scratch.", "reinit"),
    Lesson("mixout", "Mixout: dropout toward the pretrained weights",
           "Like dropout, but a dropped weight entry is replaced by its pretrained value instead of zero, then "
           "rescaled so the expected weight is unchanged. It keeps few-sample fine-tuning close to the start.",
           r"\tilde w = \frac{(1-M)\odot w_0 + M \odot w - p\,w_0}{1-p},\quad M \sim \mathrm{Bernoulli}(1-p)",
           "Lee, Cho & Kang 2020", "Steadier few-sample runs; identity at eval time, so eval curves are comparable.",
           "mixout"),
    Lesson("l2sp", "L2-SP: stay near the start point",
           "Plain weight decay pulls weights toward zero; L2-SP pulls them back toward the pretrained weights, "
           "so a model trained on very few examples cannot wander far from what it knew.",
           r"\mathcal{L} = \mathcal{L}_{task} + \frac{\beta}{2}\lVert w - w_0 \rVert^2 + \frac{\gamma}{2}\lVert w_{head} \rVert^2",
           "Li, Grandvalet & Davoine 2018",
           "loss/l2sp starts at 0 and grows as training moves away from the pretrained point. It guards against "
           "forgetting, so it shows only when fine-tuning moves the weights far (a high learning rate, many steps, "
           "little data); in a short gentle run the two curves lie on top of each other.",
           "l2sp"),
    Lesson("kd", "Knowledge distillation",
           "A small student learns from a trained teacher's softened probabilities as well as from the labels. "
           "The temperature T spreads probability over the wrong-but-similar classes, which carries the teacher's "
           "'dark knowledge'. A transfer set (unlabelled text) gives the teacher more to teach.",
           r"\mathcal{L} = (1-r)\,\mathrm{CE}(s, y) + r\,T^2\,\mathrm{KL}\big(\mathrm{softmax}(t/T)\,\Vert\,\mathrm{softmax}(s/T)\big)",
           "Hinton, Vinyals & Dean 2015; DistilBERT (Sanh et al. 2019)",
           "loss/kd and loss/task side by side; compare the student's eval accuracy with and without the teacher.",
           "temperature"),
    Lesson("mutual", "Mutual learning",
           "Two models train together; each minimises its own cross-entropy plus a KL term toward the other's "
           "predictions, so they teach each other without a pretrained teacher.",
           r"\mathcal{L}_1 = \mathrm{CE}(p_1, y) + \lambda\,\mathrm{KL}(p_2 \Vert p_1)",
           "Zhang et al. 2018, Deep Mutual Learning", "loss/mutual shrinks as the two models agree.", "temperature"),
    Lesson("aux", "Auxiliary task loss",
           "Keep a language-modelling loss on the same texts while training the classifier, so the encoder keeps "
           "modelling language instead of only separating labels.",
           r"\mathcal{L} = \mathcal{L}_{task} + \lambda\,\mathcal{L}_{LM}", "Radford et al. 2018 (GPT-1), lambda = 0.5",
           "loss/aux_lm beside loss/task; lambda = 0 gives exactly plain fine-tuning.", "aux"),
    Lesson("eda", "EDA: easy data augmentation",
           "Make extra training sentences by replacing a few words with WordNet synonyms, inserting, swapping and "
           "deleting words. Helps most when there are only tens or hundreds of examples. (Synonyms come from "
           "WordNet 3.0 read with nltk from installed files; insertion reuses the sentence's own words.)",
           r"n = \max(1, \lfloor a \cdot \text{words} \rfloor)\ \text{words changed per operation},\ a = 0.1",
           "Wei & Zou 2019", "Train loss is noisier; compare eval accuracy with 50 examples, with and without EDA.",
           "eda"),
    Lesson("neftune", "NEFTune: noisy embeddings",
           "During instruction tuning, add small uniform noise to the input embeddings (training only). The bound "
           "shrinks with sequence length and width, so long inputs get less noise per coordinate.",
           r"\epsilon \sim \mathcal{U}\!\left(-\tfrac{\alpha}{\sqrt{L d}},\ \tfrac{\alpha}{\sqrt{L d}}\right),\ \alpha = 5",
           "Jain et al. 2023 (LLaMA-2-7B on Alpaca: AlpacaEval 29.8% -> 64.7%)",
           "Training loss a little higher (noise), eval loss similar; the published gain is in answer quality, "
           "which a few steps on a laptop will not show.", "neftune"),
    Lesson("lora", "LoRA: low-rank adapters",
           "Freeze the pretrained weights and learn a small low-rank update B A beside chosen layers. B starts at 0, "
           "so training starts exactly at the pretrained model. Far fewer trainable parameters. The lab adapts every "
           "linear layer of the blocks by default (QLoRA found that necessary to match full fine-tuning); the "
           "original paper's query/value only is an option (mix.lora.target_modules).",
           r"h = W_0 x + \frac{\alpha}{r} B A x,\quad B \in \mathbb{R}^{d_{out}\times r},\ A \in \mathbb{R}^{r\times d_{in}},\ B_0 = 0",
           "Hu et al. 2021; Dettmers et al. 2023 (QLoRA: all linear layers)", "params_trainable is a small "
           "fraction; accuracy close to full fine-tuning with all linear layers adapted, often needing a higher "
           "learning rate; query/value only trails it after few steps.", "lora"),
    Lesson("freeze", "Freeze the bottom k layers",
           "Keep the lowest k blocks (and embeddings) fixed and train the rest: fewer trainable parameters, and the "
           "general features stay intact.", r"\nabla_{\theta_\ell} = 0\ \text{for}\ \ell \le k",
           "Howard & Ruder 2018 (ULMFiT, gradual unfreezing); common practice", "params_trainable drops; speed rises a little.",
           "freeze"),
    Lesson("half_ft", "Half fine-tuning",
           "Freeze a random half of the parameters in each layer, a different half per layer, and train the other "
           "half: a cheap guard against forgetting.", r"\theta = \theta_{frozen} \cup \theta_{trained},\ |\theta_{trained}| \approx |\theta|/2",
           "Hui et al. 2024", "params_trainable about half; curves close to full fine-tuning.", "half_ft"),
    Lesson("lpft", "LP-FT: linear probe, then fine-tune",
           "First train only the new classifier head with the body frozen, then unfreeze everything. A random head "
           "no longer sends large, random gradients into the pretrained body at the start.",
           r"\text{steps } 1..h:\ \nabla_{body}=0;\quad \text{steps } > h:\ \text{all}",
           "Kumar et al. 2022", "A visible bend in the loss curve at the switch step.", "lpft"),
    Lesson("instruct", "Instruction tuning a chat model",
           "Train a causal language model on prompt/answer pairs formatted with its chat template. Only the answer "
           "tokens are in the loss, so the model learns how to answer, not how to ask.",
           r"\mathcal{L} = -\sum_{t \in \text{answer}} \log p_\theta(x_t \mid x_{<t})",
           "Wei et al. 2022 (FLAN); Ouyang et al. 2022 (InstructGPT)",
           "eval/loss and perplexity on held-out answers, and the sample generations logged at the end of each run.",
           "instruct"),
    Lesson("pretraining", "Pretraining, then fine-tuning",
           "Before it sees a single label, a model can learn from raw text. BERT-style encoders learn by masked-LM "
           "(hide 15% of the tokens and predict them from both sides), GPT-style decoders by predicting each next "
           "token, sentence encoders contrastively (two passages of one document must find each other among the "
           "batch's other documents). Fine-tuning then starts from weights that already encode words and topics, so "
           "few labels go further. Which objective pays depends on the budget and the task: on a CPU in a minute, "
           "a tiny BERT gains from the contrastive objective, which asks for what topic classification needs, while "
           "masked-LM has only learnt word frequencies and leaves the model worse than random weights. Compare with "
           "the best from-scratch init (here a vocabulary learnt from the corpus and BERT's init std 0.02; a borrowed "
           "30,522-word vocabulary or std 0.08 make scratch much worse, and a pretraining 'gain' over them is not "
           "one), and with a bag-of-words baseline: on 200 news articles it is still the one to beat. Pretrain only "
           "on text that is not in your eval split, or the test is no longer fair.",
           r"\mathcal{L}_{InfoNCE} = -\frac{1}{B}\sum_i \log \frac{e^{\cos(a_i, b_i)/\tau}}{\sum_j e^{\cos(a_i, b_j)/\tau}}"
           r"\ \ (a_i, b_i:\ \text{two passages of article } i);\ \ "
           r"\mathcal{L}_{MLM} = -\sum_{i \in M} \log p_\theta(x_i \mid x_{\setminus M})",
           "Devlin et al. 2019 (BERT); Gao et al. 2021 (SimCSE); Izacard et al. 2022 (Contriever: random crops of one "
           "document as positives); Radford et al. 2018 (GPT); Gururangan et al. 2020 (don't stop pretraining)",
           "The pretraining runs first: contrastive eval/retrieval_accuracy climbs from chance, masked-LM "
           "eval/perplexity falls; then fine-tune each as model run:<id> and compare with the same model from scratch "
           "and the bag-of-words baseline (the pretrain_then_finetune preset; `hft preset pretrain_then_finetune "
           "--label-budgets 25,50,100,200` repeats it at each number of labels).",
           "pretraining"),
    Lesson("precision", "Precision: fp32, bf16, fp16",
           "Numbers are stored with a sign, an exponent (range) and a mantissa (precision). bf16 keeps fp32's range "
           "with 8 bits of precision; fp16 has more precision but overflows past 65504 and needs loss scaling.",
           r"x = (-1)^s \cdot 2^{e-\text{bias}} \cdot 1.m",
           "IEEE 754; bf16 from Google Brain; mixed precision: Micikevicius et al. 2018",
           "On a GPU with bf16, faster steps and near-identical curves. On a CPU without native bf16 (like this "
           "lab's test machines) bf16 is emulated and slower than fp32.", "precision"),
    Lesson("wise_ft", "WiSE-FT: interpolate after training",
           "After fine-tuning, mix the fine-tuned weights back with the pretrained ones and evaluate each mix. "
           "No extra training: one fine-tuned run, a sweep over a.",
           r"\theta(a) = (1-a)\,\theta_0 + a\,\theta_{ft},\quad a \in [0, 1]",
           "Wortsman et al. 2022 (robust fine-tuning of zero-shot models)",
           "Accuracy against a: in-distribution it mostly rises with a; under distribution shift the best a is "
           "often in the middle. With a new random classifier head (as here) small a is near chance.", "wise_ft"),
]


def lessons() -> list[Lesson]:
    """LESSONS, with title and reference taken from the strategy registry where the strategy is registered."""
    try:
        from hft_core.strategies import base as registry

        specs = {s.name: s for s in registry.all_specs()}
    except Exception:  # the registry is optional for the page's pictures
        specs = {}
    out = []
    for les in LESSONS:
        spec = specs.get(les.key)
        if spec is not None:
            les = Lesson(les.key, spec.title or les.title, les.plain, les.formula,
                         spec.reference or les.reference, les.look_for, les.picture)
        out.append(les)
    written = {les.key for les in LESSONS}
    for name, spec in specs.items():  # a strategy added later still gets a page, from its registry entry
        if name not in written:
            out.append(Lesson(name, spec.title, spec.summary, r"\text{see } \texttt{hft\_core/strategies/" +
                              name.replace("_", r"\_") + r".py}", spec.reference or "(no reference given)",
                              "Compare its curves with plain fine-tuning on the Compare page.", "none"))
    return out
