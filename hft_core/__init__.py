"""HFT Lab core: hybrid fine-tuning of transformer language models.

Importing this package sets safe defaults for the Hugging Face libraries (no
telemetry; with ``HFT_OFFLINE=1`` no hub calls at all, which ``datasets`` needs on a
machine without a hub) and imports torch and transformers eagerly, in the
importing (main) thread: first imports of these from two threads at once can fail.
"""
import os

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("HFT_OFFLINE", "") == "1":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch  # noqa: E402,F401
import transformers  # noqa: E402,F401

__version__ = "0.1.0"
