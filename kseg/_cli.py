"""Click plumbing shared by every ``kseg`` command group (no TensorFlow here)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from kseg.errors import KsegError

FAILED_GATE = 1  #: exit code: artifact written but its parity gate failed
USER_ERROR = 2  #: exit code: bad input (one line on stderr)


class _OneLineErrors:
    """Click mixin: a :class:`KsegError` is printed as one ``error:`` line (exit 2, or 1 for a
    failed parity gate), never a traceback; Ctrl-C prints ``interrupted`` (exit 130)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KsegError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(FAILED_GATE if type(exc).__name__ == "ParityError" else USER_ERROR)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


class KsegGroup(_OneLineErrors, click.Group):
    """A click group that reports user errors as one line (see :class:`_OneLineErrors`).

    Used by the top-level group and by each sub-group, so a sub-group run on its own behaves the same.
    """


class KsegCommand(_OneLineErrors, click.Command):
    """A click command that reports user errors as one line, also when it runs without the
    ``kseg`` group (``python -m kseg.bench.cli``, ``CliRunner().invoke(bench)``)."""


def parse_key_values(items: tuple[str, ...], *, flag: str, example: str) -> dict[str, Any]:
    """``("depth=3", "norm=group")`` -> ``{"depth": 3, "norm": "group"}`` (values parsed as YAML)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise KsegError(f"{flag} {item!r}: use KEY=VALUE, e.g. {flag} {example}")
        key, raw = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(raw)
    return out


def warn_provenance(prov: dict[str, Any] | None) -> None:
    """One plain stderr line when the checked images may include training images (the
    ``warning`` of a data provenance record; nothing when there is none)."""
    if prov and prov.get("warning"):
        click.echo(f"warning: {prov['warning']}", err=True)


def path_option(
    *param_decls: str, **attrs: Any
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A click option whose value is a :class:`~pathlib.Path` (``--out``, ``--model``, ``--json``,
    ...): ``click.option(*param_decls, type=click.Path(path_type=Path), **attrs)``."""
    return click.option(*param_decls, type=click.Path(path_type=Path), **attrs)


def flag(*param_decls: str, help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:  # noqa: A002
    """An option that is off unless given (``--force``, ``--tta``, ...): ``click.option(...,
    is_flag=True)``."""
    return click.option(*param_decls, is_flag=True, help=help)


def switch(
    name: str,
    *,
    default: bool | None,
    help: str,  # noqa: A002
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--NAME/--no-NAME`` (``name`` is ``--NAME``): a boolean either way, its default shown in
    --help; ``default=None`` when neither is given leaves the choice to the command's config."""
    off = "--no-" + name.removeprefix("--")
    return click.option(f"{name}/{off}", default=default, show_default=True, help=help)


def model_option(help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:  # noqa: A002
    """``--model FILE`` (required, the parameter ``model_path``) with the command's own help."""
    return path_option("--model", "model_path", required=True, help=help)


def runtime_option(
    help: str,  # noqa: A002
    *,
    choices: Sequence[str] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--runtime`` (default ``auto``): the interpreter package for .tflite files.

    Args:
        help: The command's own help text.
        choices: The names offered (``kseg.runtime.Runtime.values()``); None takes any text and
            leaves the check to the model loader (``kseg evaluate``, ``kseg predict``).
    """
    kind = click.Choice(choices) if choices is not None else None
    return click.option("--runtime", default="auto", show_default=True, type=kind, help=help)


def config_option(help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:  # noqa: A002
    """``--config FILE`` (the parameter ``config_path``): a YAML config, with the command's help."""
    return path_option("--config", "config_path", help=help)


def sets_option(help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:  # noqa: A002
    """``--set KEY=VALUE`` (repeatable, the parameter ``sets``): any config key; read the values
    with ``parse_key_values(sets, flag="--set", example=...)``."""
    return click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help=help)


def group_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--group-regex`` and ``--group-column``: how a data folder's files are grouped for splits."""
    fn = click.option("--group-column", help="manifest.csv column naming the group.")(fn)
    return click.option(
        "--group-regex", help="Regex whose first group on the file stem names the group."
    )(fn)
