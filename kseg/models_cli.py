"""``kseg models``: list the architectures with their measured cost, or describe one.

Importable without TensorFlow (``kseg.cli`` adds this group at start-up); the commands import
TensorFlow when they run. A top-level command module, not part of :mod:`kseg.models`: measuring
a model converts it (:func:`kseg.export.measure.profile_architecture`), and the model zoo sits
below the exporter.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from kseg._cli import KsegGroup, flag, parse_key_values, path_option
from kseg.errors import KsegError


def _mb(n: int | None, estimate: int | None = None) -> str:
    if n is None:
        return "-" if estimate is None else f"~{estimate / 1e6:.2f} MB"
    return f"{n / 1e6:.2f} MB"


def _row_cells(row: dict[str, Any]) -> list[str]:
    ok = {True: "yes", False: "no", None: "-"}[row["int8_ok"]]
    if row["int8_ok"] is False:
        ok = f"no ({row['int8_reason']})"
    return [
        row["name"],
        f"{row['params'] / 1e6:.2f} M",
        f"{row['macs'] / 1e9:.2f} G",
        _mb(row["float32_bytes"], row.get("est_float32_bytes")),
        _mb(row["int8_bytes"], row.get("est_int8_bytes")),
        ok,
        row["description"],
    ]


_HEADER = ["name", "params", "MACs", "float32", "int8", "int8 ok", "description"]


def format_table(rows: list[dict[str, Any]], size: int) -> str:
    """Plain-text table of :func:`~kseg.export.measure.profile_architecture` rows."""
    header = list(_HEADER)
    header[2] = f"MACs@{size}"
    cells = [header] + [_row_cells(r) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header) - 1)]
    lines = []
    for i, c in enumerate(cells):
        lines.append(
            "  ".join(v.ljust(w) for v, w in zip(c[:-1], widths, strict=False)) + "  " + c[-1]
        )
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * len(header[-1]))
    return "\n".join(lines)


@click.group("models", cls=KsegGroup)
def models() -> None:
    """Architectures of the model zoo: list them with their cost, or describe one."""


@models.command("list")
@click.option(
    "--size",
    type=int,
    default=256,
    show_default=True,
    help="Input size for MACs and .tflite sizes.",
)
@click.option("--channels", type=click.IntRange(1, 3), default=1, show_default=True)
@flag(
    "--measure",
    help="Convert every model for exact .tflite sizes and INT8 convertibility (minutes).",
)
@click.option("--no-convert", is_flag=True, hidden=True, help="The default now; kept for scripts.")
@path_option("--json", "json_path", help="Also write the rows as JSON.")
def list_models(
    size: int, channels: int, measure: bool, no_convert: bool, json_path: Path | None
) -> None:
    """Every architecture with parameters, MACs, float32/INT8 .tflite sizes and INT8 convertibility.

    Sizes marked ~ are estimated from the weights and layer count in a few seconds (within 10 %
    of the converted size on the zoo); --measure converts each default model at --size for exact
    sizes and INT8 convertibility (a model that fails shows "no" and the reason).
    """
    from kseg.export.measure import profile_architecture, public_row
    from kseg.models import MODELS

    if measure and no_convert:
        raise KsegError("--measure converts; drop --no-convert")
    names = MODELS.names()
    rows = []
    label = "converting" if measure else "estimating"
    with click.progressbar(names, label=label, file=sys.stderr, show_pos=True) as bar:
        for name in bar:
            try:
                rows.append(
                    profile_architecture(name, size=size, channels=channels, convert=measure)
                )
            except KsegError as exc:
                click.echo(f"\n{name}: {exc}", err=True)
    click.echo(format_table(rows, size))
    if not measure:
        click.echo("~ estimated size (kseg models list --measure converts for exact sizes)")
    if json_path is not None:
        from kseg.atomic import write_json

        write_json(
            json_path, {"size": size, "channels": channels, "models": [public_row(r) for r in rows]}
        )


@models.command("info")
@click.argument("name")
@click.option(
    "--option",
    "-o",
    "option_items",
    multiple=True,
    metavar="KEY=VALUE",
    help="Architecture option, repeatable.",
)
@click.option("--size", type=int, default=256, show_default=True)
@click.option("--channels", type=click.IntRange(1, 3), default=1, show_default=True)
@click.option("--classes", "num_classes", type=int, default=1, show_default=True)
@flag("--no-convert", help="Skip TFLite conversion.")
@path_option(
    "--png",
    "png_path",
    help="Architecture diagram (needs graphviz + pydot); default NAME.png.",
)
def info(name, option_items, size, channels, num_classes, no_convert, png_path) -> None:
    """One architecture: its options, cost, INT8 convertibility, layer summary and a diagram."""
    from kseg.export.measure import profile_architecture
    from kseg.models import MODELS, create_model

    options = parse_key_values(option_items, flag="--option", example="depth=3")
    model = create_model(
        name, input_shape=(size, size, channels), num_classes=num_classes, **options
    )
    row = profile_architecture(
        name, size=size, channels=channels, options=options, convert=not no_convert, model=model
    )
    doc = (MODELS.get(name).__doc__ or "").strip()
    click.echo(f"{name}: {row['description']}\n")
    click.echo(doc + "\n")
    click.echo("options: " + json.dumps(row["options"]))
    click.echo(format_table([row], size) + "\n")
    if row["ops"]:
        click.echo("int8 ops: " + ", ".join(row["ops"]) + "\n")
    model.summary(print_fn=lambda line, **_: click.echo(line), line_length=110)
    png = png_path or Path(f"{name}.png")
    try:
        from kseg._keras import keras

        keras.utils.plot_model(model, to_file=str(png), show_shapes=True, dpi=60)
    except (ImportError, OSError) as exc:
        click.echo(f"diagram skipped: graphviz/pydot not available ({type(exc).__name__})")
    else:
        if png.is_file():
            click.echo(f"diagram: {png}")
        else:
            click.echo("diagram skipped: graphviz/pydot not available")
