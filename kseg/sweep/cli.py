"""The ``kseg sweep`` click command (TensorFlow is imported when it runs)."""

from __future__ import annotations

import click

from kseg._cli import config_option, parse_key_values, path_option, sets_option, switch
from kseg.sweep.engines import CellResources, Engine


@click.command("sweep")
@click.option(
    "--models",
    default=None,
    help="Comma-separated architectures, e.g. segnet,unet,unet2,dilated_unet "
    "(default: the config's sweep.models).",
)
@click.option(
    "--losses",
    default=None,
    help="Comma-separated losses, e.g. bce,focal,dice,tversky,combo "
    "(default: the config's sweep.losses).",
)
@click.option(
    "--data",
    default=None,
    help="Folder with images/ and masks/, or synthetic:KIND[:N] (default: the config's).",
)
@config_option(
    "YAML config shared by every cell; its optional sweep: section gives models, losses, "
    "seeds, int8, hd95 (flags win)."
)
@click.option("--epochs", type=int, default=None, help="Epochs per cell.")
@click.option(
    "--budget-minutes",
    type=float,
    default=None,
    help="Wall-clock budget per cell (stops after the epoch it runs out in).",
)
@click.option(
    "--seeds", default=None, help="Training seeds, e.g. 0,1 (default: sweep.seeds, else 0)."
)
@switch(
    "--int8",
    default=None,
    help="Convert each cell to INT8 TFLite and record its Dice (default: sweep.int8, else on).",
)
@switch(
    "--hd95",
    default=None,
    help="Evaluate each cell for HD95 at the original size (default: sweep.hd95, else on).",
)
@sets_option("Any config key for every cell.")
@path_option("--out", required=True, help="Sweep folder (rerun the same command to resume).")
@click.option(
    "--engine",
    type=click.Choice([e.value for e in Engine]),
    default=Engine.LOCAL.value,
    show_default=True,
    help="local: cells one after another in this process; ray: one Ray task per cell "
    "(pip install 'kseg[ray]').",
)
@click.option(
    "--address",
    default=None,
    help="Ray cluster to run on, e.g. 10.0.0.5:6379 (default: RAY_ADDRESS, else Ray started on "
    "this machine). On several machines OUT and the data must be on a shared filesystem.",
)
@click.option(
    "--cpus-per-cell",
    type=float,
    default=None,
    help="Ray: CPUs reserved per cell, also its TensorFlow threads (default 1).",
)
@click.option("--gpus-per-cell", type=float, default=None, help="Ray: GPUs per cell (default 0).")
@click.option(
    "--retries",
    type=int,
    default=None,
    help="Ray: restarts of a cell whose worker dies; it continues from its last epoch (default 3).",
)
def sweep(
    models,
    losses,
    data,
    config_path,
    epochs,
    budget_minutes,
    seeds,
    int8,
    hd95,
    sets,
    out,
    engine,
    address,
    cpus_per_cell,
    gpus_per_cell,
    retries,
) -> None:
    """Train every model x loss (x seed) cell under one split, schedule and budget; resumable.

    Writes OUT/results.csv|json|md, heatmap.png (models x losses), curves.png (every cell) and
    TensorBoard HParams logs; each cell is a run directory under OUT/cells/. A shipped recipe:
    kseg sweep --config configs/sweeps/hc18_classic.yaml --data HC18 --out runs/sweep_hc18
    (add --engine ray --address HEAD:6379 --cpus-per-cell 2 to spread the cells over a cluster).
    """
    from kseg.sweep.runner import make_plan, run_sweep

    given = {
        "cpus": cpus_per_cell,
        "gpus": gpus_per_cell,
        "retries": retries,
        "address": address,
    }
    resources = CellResources(**{k: v for k, v in given.items() if v is not None})
    plan = make_plan(config_path, models=models, losses=losses, seeds=seeds, int8=int8, hd95=hd95)
    overrides: dict = {}
    if data:
        if str(data).startswith("synthetic:"):
            from kseg.data.synthetic import parse_synthetic_spec

            kind, n = parse_synthetic_spec(str(data), "--data")
            overrides.update(
                {"data.path": None, "data.synthetic_kind": str(kind), "data.synthetic_n": n}
            )
        else:
            overrides["data.path"] = str(data)
    if epochs is not None:
        overrides["train.epochs"] = epochs
    if budget_minutes is not None:
        overrides["train.time_limit_minutes"] = budget_minutes
    overrides.update(parse_key_values(sets, flag="--set", example="train.batch_size=8"))
    records = run_sweep(
        plan,
        out,
        config_path=config_path,
        base_overrides=overrides,
        log=click.echo,
        engine=engine,
        resources=resources,
    )
    click.echo(
        f"{len(records)} cells done; wrote {out}/results.md, results.csv, results.json, heatmap.png, curves.png"
    )
