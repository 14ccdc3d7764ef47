"""A bench's scratch folder: made in the system's temp folder, removed when the bench exits.

A MiniLM run's checkpoint with its optimizer state is ~270 MB; a bench that trains a dozen
runs leaves gigabytes, and on a shared disk that is someone else's failed CI. Set
``HFT_BENCH_KEEP=1`` to keep the folder (its path is printed) to look at the runs afterwards.
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path


def scratch_dir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if os.environ.get("HFT_BENCH_KEEP") != "1":
        owner = os.getpid()  # a forked child inherits atexit hooks: only the bench itself removes it

        def remove() -> None:
            if os.getpid() == owner:
                shutil.rmtree(path, ignore_errors=True)

        atexit.register(remove)
    return path
