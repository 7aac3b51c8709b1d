"""kseg/_cli.py: the shared click options and the one-line error reporting of commands run alone."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from kseg._cli import (
    KsegCommand,
    config_option,
    flag,
    runtime_option,
    sets_option,
    switch,
    warn_provenance,
)
from kseg.errors import ConfigError
from kseg.export.parity import ParityError
from kseg.runtime import Runtime


def _echo_command(**option_kwargs) -> click.Command:
    """A command with ``--runtime`` (``runtime_option(**option_kwargs)``) that echoes its value."""

    @click.command()
    @runtime_option("Interpreter package.", **option_kwargs)
    def cmd(runtime: str) -> None:
        click.echo(f"runtime={runtime}")

    return cmd


def test_runtime_option_offers_the_given_names_with_auto_by_default():
    cmd = _echo_command(choices=Runtime.values())
    assert CliRunner().invoke(cmd, []).output == "runtime=auto\n"
    assert CliRunner().invoke(cmd, ["--runtime", "tflite_runtime"]).output == (
        "runtime=tflite_runtime\n"
    )
    bad = CliRunner().invoke(cmd, ["--runtime", "onnx"])
    assert bad.exit_code == 2
    assert "'onnx' is not one of 'auto', 'litert', 'tflite_runtime', 'tf'" in bad.output
    help_text = CliRunner().invoke(cmd, ["--help"]).output
    assert "--runtime [auto|litert|tflite_runtime|tf]" in help_text
    assert "[default: auto]" in help_text


def test_runtime_option_without_choices_passes_any_name_on():
    cmd = _echo_command()
    assert CliRunner().invoke(cmd, ["--runtime", "onnx"]).output == "runtime=onnx\n"
    assert "--runtime TEXT" in CliRunner().invoke(cmd, ["--help"]).output


def test_config_and_set_options_name_their_parameters():
    @click.command()
    @config_option("YAML config.")
    @sets_option("Any config key.")
    def cmd(config_path, sets) -> None:
        click.echo(f"{config_path!r} {sets!r}")

    res = CliRunner().invoke(cmd, ["--config", "a.yaml", "--set", "x=1", "--set", "y=2"])
    assert res.output == "PosixPath('a.yaml') ('x=1', 'y=2')\n"
    assert CliRunner().invoke(cmd, []).output == "None ()\n"
    assert "--set KEY=VALUE" in CliRunner().invoke(cmd, ["--help"]).output


def test_flag_is_off_unless_given_and_switch_takes_both_spellings():
    @click.command()
    @flag("--force", help="Replace.")
    @flag("--2-4", "sparse", help="Sparse.")
    @switch("--isolate", default=True, help="Fresh process.")
    @switch("--int8", default=None, help="Convert.")
    def cmd(force, sparse, isolate, int8) -> None:
        click.echo(f"{force} {sparse} {isolate} {int8}")

    run = CliRunner().invoke
    assert run(cmd, []).output == "False False True None\n"
    assert (
        run(cmd, ["--force", "--2-4", "--no-isolate", "--int8"]).output == "True True False True\n"
    )
    assert run(cmd, ["--isolate", "--no-int8"]).output == "False False True False\n"
    assert run(cmd, ["--force", "yes"]).exit_code == 2  # a flag takes no value
    help_lines = run(cmd, ["--help"]).output.splitlines()
    assert "  --isolate / --no-isolate  Fresh process.  [default: isolate]" in help_lines
    assert "  --int8 / --no-int8        Convert." in help_lines  # no default to show


@pytest.mark.parametrize(
    ("exc", "code", "line"),
    [
        (ConfigError("--x: use 3"), 2, "error: --x: use 3"),
        (ParityError("dice drop 0.2 > 0.01"), 1, "error: dice drop 0.2 > 0.01"),
        (KeyboardInterrupt(), 130, "interrupted"),
    ],
)
def test_a_command_run_alone_reports_errors_in_one_line(exc, code, line):
    @click.command(cls=KsegCommand)
    def cmd() -> None:
        click.echo("started")
        raise exc

    res = CliRunner().invoke(cmd, [])
    assert res.exit_code == code
    assert res.stdout == "started\n"
    assert res.stderr == line + "\n"
    assert "Traceback" not in res.output


def test_warn_provenance_writes_one_stderr_line_only_for_a_warning():
    @click.command()
    @click.argument("warning", required=False)
    def cmd(warning) -> None:
        warn_provenance({"warning": warning, "source": "run"} if warning else None)
        warn_provenance({"source": "run"})

    res = CliRunner().invoke(cmd, ["val images overlap training"])
    assert (res.stdout, res.stderr) == ("", "warning: val images overlap training\n")
    assert CliRunner().invoke(cmd, []).output == ""
