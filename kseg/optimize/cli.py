"""``kseg optimize``: QAT, pruning, clustering, distillation and recipes (click group).

Importing this module does not import TensorFlow; each command imports what it needs when it
runs. The top-level CLI adds it with ``main.add_command(optimize)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from kseg._cli import (
    KsegGroup,
    flag,
    model_option,
    parse_key_values,
    path_option,
    switch,
    warn_provenance,
)
from kseg.errors import KsegError


def _default_out(model: Path, step: str) -> Path:
    return model.parent / f"{model.stem}_{step}"


def _load(model: Path) -> Any:
    from kseg.models import load_model

    return load_model(model)


def _prepare(model: Path, data: str | None, out: Path | None, seed: int, step: str) -> tuple:
    """Load the model and its data (one stderr warning when the validation images may include
    training images): ``(keras_model, fit_data, data description, out folder)``."""
    from kseg.optimize.steps import load_data

    keras_model = _load(model)
    fit_data, desc = load_data(model, keras_model, data, seed=seed)
    warn_provenance(fit_data.provenance)
    return keras_model, fit_data, desc, out or _default_out(model, step)


def _echo_metrics(record: dict[str, Any]) -> None:
    m = record.get("metrics", {})
    if "before" in m:
        click.echo(f"validation dice: {m['before']['dice']:.4f} -> {m['after']['dice']:.4f}")


_model_opt = model_option("Trained model (.keras/.h5/SavedModel).")
_data_opt = click.option(
    "--data",
    default=None,
    help="Folder with images/ and masks/, or synthetic:KIND[:N]; default: the model's run directory data.",
)
_out_opt = path_option("--out", default=None, help="Run directory for the artifacts.")
_bs_opt = click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1))
_lr_opt = click.option("--lr", "learning_rate", default=1e-4, show_default=True, type=float)
_seed_opt = click.option("--seed", default=42, show_default=True, type=int)
_loss_opt = click.option(
    "--loss", default="combo", show_default=True, help="kseg loss name for fine-tuning."
)


def _fit_options(epochs: int, min_epochs: int):
    """``--data --out --epochs --batch-size --lr --loss --seed``: the fine-tuning steps' options
    (the command receives ``data``, ``out`` and the rest as ``**fit``)."""
    epochs_opt = click.option(
        "--epochs", default=epochs, show_default=True, type=click.IntRange(min=min_epochs)
    )
    options = (_data_opt, _out_opt, epochs_opt, _bs_opt, _lr_opt, _loss_opt, _seed_opt)

    def decorate(fn):
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


@click.group(cls=KsegGroup, invoke_without_command=True)
@path_option(
    "--recipe",
    default=None,
    help="YAML recipe chaining steps (configs/recipes/).",
)
@path_option("--model", default=None, help="Overrides the recipe's model.")
@click.option("--data", default=None, help="Overrides the recipe's data.")
@path_option(
    "--out",
    default=None,
    help="Run directory (default runs/optimize_NAME).",
)
@click.pass_context
def optimize(
    ctx: click.Context, recipe: Path | None, model: Path | None, data: str | None, out: Path | None
) -> None:
    """Shrink a trained model for edge devices: QAT, pruning, clustering, distillation, or a recipe
    chaining them."""
    if ctx.invoked_subcommand is not None:
        if recipe is not None:
            raise KsegError("--recipe runs a whole chain; drop the subcommand or --recipe")
        return
    if recipe is None:
        click.echo(ctx.get_help())
        return
    from kseg.optimize.recipe import load_recipe, run_recipe

    spec = load_recipe(recipe, {"model": str(model) if model else None, "data": data})
    out = out or Path("runs") / f"optimize_{spec['name']}"
    summary = run_recipe(spec, out)
    for rec in summary["steps"]:
        click.echo(f"{rec['step']}: {rec.get('model', '')}")
    click.echo(f"summary: {out / 'summary.md'}")
    warn_provenance((summary.get("data") or {}).get("provenance"))


@optimize.command()
@_model_opt
@_fit_options(epochs=3, min_epochs=0)
@flag("--preserve-sparsity", help="Pruning-preserving QAT (for a pruned model).")
@click.option(
    "--leave-float", multiple=True, help="Layer-name pattern to keep in float (reported)."
)
def qat(
    model_path: Path,
    data: str | None,
    out: Path | None,
    preserve_sparsity: bool,
    leave_float: tuple[str, ...],
    **fit: Any,
) -> None:
    """Quantization-aware fine-tuning; writes OUT/qat.h5 (convert it with kseg convert --int8)."""
    from kseg.optimize.steps import run_qat

    keras_model, fit_data, desc, out = _prepare(model_path, data, out, fit["seed"], "qat")
    res = run_qat(
        keras_model, fit_data, out, preserve_sparsity=preserve_sparsity, leave_float=leave_float,
        **fit,
    )  # fmt: skip
    click.echo(f"data: {desc}")
    for item in res.record["left_float"]:
        click.echo(
            f"warning: layer {item['name']} ({item['class']}) left in float: {item['reason']}",
            err=True,
        )
    _echo_metrics(res.record)
    click.echo(f"qat model: {res.path}")


@optimize.command()
@_model_opt
@click.option(
    "--sparsity",
    required=True,
    type=click.FloatRange(0.0, 0.99),
    help="Target share of zero weights in pruned layers.",
)
@click.option(
    "--schedule",
    type=click.Choice(["polynomial", "constant"]),
    default="polynomial",
    show_default=True,
)
@path_option(
    "--policy",
    default=None,
    help="YAML pruning policy (dense/encoder patterns, overrides).",
)
@flag("--structured-2-4", "structured", help="2:4 structured sparsity (Conv2D/Dense).")
@click.option(
    "--qat-epochs",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Then pruning-preserving QAT for this many epochs, so sparsity survives into INT8.",
)
@_fit_options(epochs=4, min_epochs=1)
def prune(
    model_path: Path,
    sparsity: float,
    schedule: str,
    policy: Path | None,
    structured: bool,
    qat_epochs: int,
    data: str | None,
    out: Path | None,
    **fit: Any,
) -> None:
    """Magnitude pruning with a per-layer policy; strips wrappers and reports sparsity per layer."""
    from kseg.optimize.steps import run_prune, run_qat

    keras_model, fit_data, desc, out = _prepare(model_path, data, out, fit["seed"], "prune")
    res = run_prune(
        keras_model, fit_data, out, sparsity=sparsity, schedule=schedule, policy=policy,
        structured_2_4=structured, **fit,
    )  # fmt: skip
    click.echo(f"data: {desc}")
    _echo_metrics(res.record)
    click.echo(
        f"sparsity (pruned layers): {res.record['sparsity']['overall_pruned']:.4f}; report: {out / 'sparsity.json'}"
    )
    click.echo(f"pruned model: {res.path}")
    if qat_epochs:
        qat_fit = {**fit, "epochs": qat_epochs}
        q = run_qat(res.model, fit_data, out / "qat", preserve_sparsity=True, **qat_fit)
        _echo_metrics(q.record)
        click.echo(f"pruning-preserving qat model: {q.path}")


@optimize.command()
@_model_opt
@click.option(
    "--clusters",
    default=16,
    show_default=True,
    type=int,
    help="Distinct values per clustered kernel (3..256 with sparsity preserved).",
)
@click.option(
    "--init",
    default="kmeans_plus_plus",
    show_default=True,
    help="Centroid initialization: kmeans_plus_plus, density_based, linear, random.",
)
@switch(
    "--preserve-sparsity",
    default=True,
    help="Keep a pruned model's zeros (one centroid fixed at zero).",
)
@click.option(
    "--dense",
    multiple=True,
    help="Layer-name pattern left unclustered (repeatable; default @first_conv @head logits*).",
)
@_fit_options(epochs=3, min_epochs=0)
def cluster(
    model_path: Path,
    clusters: int,
    init: str,
    preserve_sparsity: bool,
    dense: tuple[str, ...],
    data: str | None,
    out: Path | None,
    **fit: Any,
) -> None:
    """Weight clustering: each kernel keeps CLUSTERS distinct values (a pruned model keeps its
    zeros); strips the wrappers and reports distinct values per layer. Run it after prune; the
    INT8 file then gzips smaller."""
    from kseg.optimize.cluster import check_clusters, check_init
    from kseg.optimize.steps import run_cluster

    check_clusters(clusters, preserve_sparsity=preserve_sparsity)  # before loading anything
    check_init(init)
    keras_model, fit_data, desc, out = _prepare(model_path, data, out, fit["seed"], "cluster")
    res = run_cluster(
        keras_model, fit_data, out, clusters=clusters, init=init,
        preserve_sparsity=preserve_sparsity, dense=dense or None, **fit,
    )  # fmt: skip
    c = res.record["clustering"]
    click.echo(f"data: {desc}")
    _echo_metrics(res.record)
    click.echo(
        f"clustered {c['clustered_layers']} layers ({c['clustered_share']:.1%} of the kernel weights), "
        f"at most {c['max_unique']} distinct values each; report: {out / 'clusters.json'}"
    )
    if c["not_clustered"]:
        skipped = ", ".join(f"{i['layer']} ({i['reason']})" for i in c["not_clustered"])
        click.echo(f"not clustered: {skipped}")
    s = res.record["sparsity"]
    click.echo(f"sparsity: {s['before']:.4f} -> {s['overall']:.4f}")
    click.echo(f"clustered model: {res.path}")


@optimize.command()
@path_option("--teacher", required=True, help="Trained teacher model.")
@click.option("--student", required=True, help="Student architecture name (kseg models list).")
@click.option(
    "--option",
    "student_options",
    multiple=True,
    help="Student option KEY=VALUE (repeatable), e.g. width=0.5.",
)
@click.option(
    "--alpha",
    default=0.5,
    show_default=True,
    type=click.FloatRange(0.0, 1.0),
    help="Weight of the task loss.",
)
@click.option("--temperature", default=2.0, show_default=True, type=click.FloatRange(min=0.01))
@flag("--attention", help="Also match attention maps of the features feeding the heads.")
@flag(
    "--augment",
    help="On-line flips and brightness/contrast for student and baseline; the teacher labels each view.",
)
@click.option(
    "--unlabeled",
    metavar="DIR|synthetic:KIND:N",
    help="Images without masks that the teacher labels for the student (a transfer set): a "
    "folder of images, or synthetic:ultrasound:800.",
)
@_data_opt
@_out_opt
@click.option("--epochs", default=10, show_default=True, type=click.IntRange(min=1))
@_bs_opt
@click.option("--lr", "learning_rate", default=1e-3, show_default=True, type=float)
@click.option(
    "--lr-schedule",
    type=click.Choice(["constant", "cosine"]),
    default="constant",
    show_default=True,
    help="Learning rate over the run (cosine decays to 0), for both students.",
)
@_loss_opt
@_seed_opt
def distill(
    teacher: Path,
    student: str,
    student_options: tuple[str, ...],
    alpha: float,
    temperature: float,
    attention: bool,
    augment: bool,
    unlabeled: str | None,
    data: str | None,
    out: Path | None,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    lr_schedule: str,
    loss: str,
    seed: int,
) -> None:
    """Teacher -> student distillation; also trains the student alone with the same budget."""
    from kseg.optimize.steps import run_distill

    t, fit_data, desc, out = _prepare(teacher, data, out, seed, f"distill_{student}")
    res = run_distill(
        t,
        fit_data,
        out,
        student=student,
        student_options=parse_key_values(student_options, flag="--option", example="width=0.5"),
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        lr_schedule=lr_schedule,
        loss=loss,
        alpha=alpha,
        temperature=temperature,
        attention=attention,
        augment=augment,
        unlabeled=unlabeled,
        seed=seed,
    )
    m = res.record["metrics"]
    click.echo(f"data: {desc}")
    if res.record["settings"]["unlabeled"]:
        click.echo(f"transfer set: {res.record['settings']['unlabeled']}")
    click.echo(
        f"teacher dice {m['teacher']['dice']:.4f} ({res.record['params']['teacher']} params); "
        f"student {m['student']['dice']:.4f} ({res.record['params']['student']} params); "
        f"same student alone {m['baseline']['dice']:.4f}"
    )
    click.echo(f"student model: {res.path}")
