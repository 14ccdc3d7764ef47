"""Where HFT Lab keeps its files: ``$HFT_HOME`` or ``~/.hft_lab``.

    $HFT_HOME/runs.sqlite          the run store
    $HFT_HOME/runs/<run_id>/       one folder per run: checkpoint/, exports
    $HFT_HOME/cache/               converted bundled models (e.g. SmolLM2 from GGUF)
"""
from __future__ import annotations

import os
import re
import uuid
from pathlib import Path


def hft_home() -> Path:
    return Path(os.environ.get("HFT_HOME") or Path.home() / ".hft_lab").expanduser()


def cache_dir() -> Path:
    return hft_home() / "cache"


def run_dir(run_id: str, home: str | Path | None = None) -> Path:
    """The one place a run's folder is found (not created here): checkpoint/, run_config.yaml.
    ``home``: the store's folder (default $HFT_HOME); ``RunStore.run_dir`` passes its own."""
    from hft_core.errors import StoreError

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", run_id or ""):
        raise StoreError(f"{run_id!r} is not a run id (ids look like 'r-3f9a2c')")
    return (Path(home).expanduser() if home is not None else hft_home()) / "runs" / run_id


def checkpoint_dir(run_id: str, home: str | Path | None = None) -> Path:
    """The run's latest checkpoint: model safetensors + tokenizer + config.yaml + trainer_state."""
    return run_dir(run_id, home) / "checkpoint"


def check_home(home: Path, db_name: str = "runs.sqlite") -> None:
    """Create ``home`` if missing and make sure a store can live there; StoreError says what is wrong."""
    from hft_core.errors import StoreError

    what_to_do = "Set HFT_HOME (or pass home=) to a writable folder."
    if home.exists() and not home.is_dir():
        raise StoreError(f"the HFT Lab home {home} is a file, not a folder. {what_to_do} "
                         f"(it is created if missing), or move the file away.")
    try:
        home.mkdir(parents=True, exist_ok=True)
    except NotADirectoryError:
        raise StoreError(f"cannot create the HFT Lab home {home}: a part of that path is a file, not a "
                         f"folder. {what_to_do}") from None
    except OSError as e:
        raise StoreError(f"cannot create the HFT Lab home {home}: {e.strerror or e}. {what_to_do}") from None
    # os.access alone is not enough (root passes it on a read-only or immutable folder,
    # and it says nothing about a full disk): write and remove a real byte.
    probe = home / f".write-test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"x")
        finally:
            os.close(fd)
    except OSError as e:
        raise StoreError(f"the HFT Lab home {home} is not writable ({e.strerror or e}): check the disk has "
                         f"free space and the folder's permissions. {what_to_do}") from None
    finally:
        try:
            probe.unlink()
        except OSError:
            pass
    db = home / db_name
    if db.exists() and not db.is_file():
        raise StoreError(f"{db} is a folder, not a store file; move it away or set HFT_HOME to another folder.")
