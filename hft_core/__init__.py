"""HFT Lab core: hybrid fine-tuning of transformer language models.

Importing this package sets safe defaults for the Hugging Face libraries (no
telemetry; with ``HFT_OFFLINE=1`` no hub calls at all, which ``datasets`` needs on a
machine without a hub) and imports torch and transformers eagerly, in the
importing (main) thread: first imports of these from two threads at once can fail.
Set ``HFT_VERBOSE=1`` to keep transformers' own info logs and progress bars.
"""
import os

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("HFT_OFFLINE", "") == "1":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch  # noqa: E402,F401
import transformers  # noqa: E402,F401

if os.environ.get("HFT_VERBOSE", "") != "1":
    # Loading a pretrained encoder with a new head prints a "MISSING classifier" report and
    # saving prints shard progress bars: expected here every time, so keep the logs readable.
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

__version__ = "0.1.0"
