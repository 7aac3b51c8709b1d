"""The ``kseg plan`` click command (TensorFlow is imported only when probing)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from kseg.errors import KsegError


@click.command("plan")
@click.argument("data", type=click.Path(path_type=Path))
@click.option(
    "--budget-minutes",
    type=float,
    default=15.0,
    show_default=True,
    help="Wall-clock minutes the training run may take on this machine.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the config here (YAML with the reasons as comments); default: print it.",
)
@click.option(
    "--target",
    default=None,
    help="Device profile (kseg bench --npu names or a YAML) to pick the fastest up-sampling for.",
)
@click.option("--group-regex", default=None, help="As data.group_regex: groups in file names.")
@click.option("--seed", type=int, default=42, show_default=True)
def plan_command(
    data: Path,
    budget_minutes: float,
    out: Path | None,
    target: str | None,
    group_regex: str | None,
    seed: int,
) -> None:
    """Plan a training recipe for DATA that fits a CPU time budget.

    Fingerprints the folder (sizes, channels, intensity, foreground fraction, object sizes,
    groups), measures this machine's training speed for a few U-Nets (a few seconds each), and
    writes a config whose input size, width, depth, batch, epochs and schedule fit the budget,
    with the reasons as comments; --out CONFIG.yaml also writes CONFIG.plan.json.

    Example: kseg plan data/hc18 --budget-minutes 15 --out hc18_15min.yaml
    """
    from kseg.atomic import write_json, write_text
    from kseg.plan.planner import plan, to_yaml

    try:
        if out is not None and out.exists():
            raise KsegError(
                f"{out} exists; choose another --out (an existing file is not replaced)"
            )
        p = plan(
            str(data),
            budget_minutes,
            target=target,
            group_regex=group_regex,
            seed=seed,
            log=lambda m: click.echo(m, err=True),
        )
        text = to_yaml(p)
        if out is None:
            click.echo(text, nl=False)
            return
        write_text(out, text)
        plan_json = out.with_suffix(".plan.json")
        write_json(plan_json, p.as_dict())
        click.echo(text, nl=False)
        click.echo(f"wrote {out} and {plan_json}")
        click.echo(f"next: kseg train --config {out} --out runs/planned")
    except KsegError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)


def plan_notes(p) -> dict[str, str]:
    """The files ``kseg train --budget`` adds to the run directory."""
    from kseg.plan.planner import to_yaml

    return {"plan.yaml": to_yaml(p), "plan.json": json.dumps(p.as_dict(), indent=2) + "\n"}
