"""A run's metrics, log lines and config as files (CSV or Parquet, plus config.yaml)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from hft_core.store import StoreError

if TYPE_CHECKING:
    from hft_core.store import RunStore


def export_run(store: RunStore, run_id: str, out_dir: str | Path, fmt: str = "csv", *,
               layout: str = "wide") -> list[Path]:
    """Write a run's metrics, log lines and config to ``out_dir``; returns the files written.

    layout="wide": one row per step, one column per metric (plus wall_time, the latest
    write time of that step); layout="long": the store's rows (run_id, step, name, value,
    wall_time). ``config.yaml`` loads back with ``RunConfig.load``.
    """
    import pandas as pd
    import yaml

    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt={fmt!r}: use 'csv' or 'parquet'")
    if layout not in ("wide", "long"):
        raise ValueError(f"layout={layout!r}: use 'wide' or 'long'")
    rec = store.get_run(run_id)
    store.flush()
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(f"cannot create the export folder {out}: {e.strerror or e}; choose another --out") from None
    df = store.metrics(run_id)
    if layout == "wide":
        table = df.pivot(index="step", columns="name", values="value")
        table = table.reindex(columns=sorted(table.columns))
        table.insert(0, "wall_time", df.groupby("step")["wall_time"].max())
        table = table.reset_index()
        table.columns.name = None
    else:
        table = df
    files = []
    metrics_path = out / f"metrics.{fmt}"
    if fmt == "csv":
        table.to_csv(metrics_path, index=False)
    else:
        try:
            table.to_parquet(metrics_path, index=False)
        except ImportError as e:
            raise StoreError(f"writing parquet needs pyarrow ({e}); `pip install pyarrow` or use --format csv") \
                from None
    files.append(metrics_path)
    config_path = out / "config.yaml"
    config_path.write_text(yaml.safe_dump(rec.config, sort_keys=False))
    files.append(config_path)
    events_path = out / "events.csv"
    pd.DataFrame(store.events(run_id, limit=1_000_000), columns=["time", "level", "message"]) \
        .to_csv(events_path, index=False)
    files.append(events_path)
    return files
