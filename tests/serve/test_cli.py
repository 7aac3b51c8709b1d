"""``kseg serve`` on the command line: help, one-line errors before the port opens."""

from __future__ import annotations

from click.testing import CliRunner

from kseg.cli import main


def test_serve_help_lists_the_options():
    r = CliRunner().invoke(main, ["serve", "--help"])
    assert r.exit_code == 0
    for flag in ("--model", "--host", "--port", "--workers", "--token", "--max-megapixels"):
        assert flag in r.output
    assert "127.0.0.1" in r.output  # loopback by default


def test_missing_model_is_one_line_exit_2(tmp_path):
    r = CliRunner().invoke(main, ["serve", "--model", str(tmp_path / "none.tflite")])
    assert r.exit_code == 2
    assert r.output.strip().startswith("error:") and "none.tflite" in r.output
    assert "Traceback" not in r.output


def test_bad_settings_are_one_line_exit_2(tiny_tflite):
    r = CliRunner().invoke(main, ["serve", "--model", str(tiny_tflite["float"]), "--workers", "0"])
    assert r.exit_code == 2
    assert "workers must be >= 1" in r.output and "Traceback" not in r.output


def test_missing_extra_says_what_to_install(monkeypatch, tiny_tflite):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else real(name, *a)
    )
    r = CliRunner().invoke(main, ["serve", "--model", str(tiny_tflite["float"])])
    assert r.exit_code == 2
    assert "pip install 'kseg[serve]'" in r.output and "uvicorn" in r.output


def test_serve_builds_the_app_and_runs_uvicorn_with_the_flags(monkeypatch, tiny_tflite):
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    args = ["serve", "--model", str(tiny_tflite["float"]), "--port", "9123", "--workers", "2"]
    r = CliRunner().invoke(main, [*args, "--max-megapixels", "1.5"])
    assert r.exit_code == 0, r.output
    app, kw = calls[0]
    assert (kw["host"], kw["port"]) == ("127.0.0.1", 9123)
    s = app.state.settings
    assert (s.workers, s.max_pixels, s.token) == (2, 1_500_000, None)
    assert "warning" not in r.stderr

    r = CliRunner().invoke(main, [*args, "--host", "0.0.0.0"])
    assert "without --token" in r.stderr
    r = CliRunner().invoke(main, [*args, "--host", "0.0.0.0"], env={"KSEG_SERVE_TOKEN": "abc"})
    assert "warning" not in r.stderr
    assert calls[-1][0].state.settings.token == "abc"
