"""Click plumbing shared by every ``kseg`` command group (no TensorFlow here)."""

from __future__ import annotations

from typing import Any

import click

from kseg.errors import KsegError

FAILED_GATE = 1  #: exit code: artifact written but its parity gate failed
USER_ERROR = 2  #: exit code: bad input (one line on stderr)


class KsegGroup(click.Group):
    """A click group that prints a :class:`KsegError` as one ``error:`` line, never a traceback.

    Used by the top-level group and by each sub-group, so a sub-group run on its own behaves the same.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KsegError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(FAILED_GATE if type(exc).__name__ == "ParityError" else USER_ERROR)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


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
