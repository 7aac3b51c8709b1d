"""The ``kseg bench`` click command (no TensorFlow; the lead adds it with ``main.add_command``)."""

from __future__ import annotations

from pathlib import Path

import click

from kseg._cli import KsegCommand, flag, path_option, runtime_option, switch
from kseg.errors import ConfigError
from kseg.runtime.backends import Runtime


@click.command("bench", cls=KsegCommand)
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--threads", default="1", show_default=True, help="Thread counts to measure, e.g. 1,2,4."
)
@click.option(
    "--runs", default=50, show_default=True, type=int, help="Timed inferences per setting."
)
@click.option("--warmup", default=5, show_default=True, type=int, help="Untimed inferences first.")
@runtime_option(
    "TFLite interpreter package (.onnx files always run on onnxruntime).",
    choices=Runtime.values(),
)
@click.option("--delegate", default=None, help="none | xnnpack (default) | external:PATH.so")
@click.option(
    "--npu",
    "npu",
    multiple=True,
    help="Device profile name or YAML path to emulate (repeat or comma-separate); 'all' for every profile.",
)
@click.option(
    "--vela",
    type=click.Choice(["auto", "yes", "no"]),
    default="auto",
    show_default=True,
    help="Arm Ethos-U profiles: add Vela's cycle estimate (auto: when ethos-u-vela is installed).",
)
@path_option(
    "--vela-calibrate",
    "vela_calibrate",
    default=None,
    help="Fit the (one) Ethos-U profile's utilization and bandwidth to Vela's latencies of FILES "
    "and write the calibrated profile YAML here (needs ethos-u-vela).",
)
@path_option("--baseline", default=None, help="File the ratios are against.")
@click.option(
    "--cpus",
    default=None,
    help="Pin to these CPU ids, e.g. 0 (single-core emulation with --threads 1).",
)
@path_option(
    "--json",
    "json_out",
    default=None,
    help="Write the JSON report.",
)
@path_option(
    "--md",
    "md_out",
    default=None,
    help="Write the Markdown report.",
)
@path_option("--plots", default=None, help="Folder for PNG charts.")
@switch("--isolate", default=True, help="One fresh process per measurement (clean peak RSS).")
@switch("--calibrate", default=True, help="Measure this machine's INT8 peak.")
@flag("--static-only", help="Only analyse the files (ops, MACs, device emulation); no timing.")
@flag("--profile", help="Per-op latency: time every op as a one-op model, rank op types by share.")
def bench(
    files: tuple[Path, ...],
    threads: str,
    runs: int,
    warmup: int,
    runtime: str,
    delegate: str | None,
    npu: tuple[str, ...],
    vela: str,
    vela_calibrate: Path | None,
    baseline: Path | None,
    cpus: str | None,
    json_out: Path | None,
    md_out: Path | None,
    plots: Path | None,
    isolate: bool,
    calibrate: bool,
    static_only: bool,
    profile: bool,
) -> None:
    """Measure .tflite (and .onnx, on ONNX Runtime) files on this machine and emulate them on
    NPU/delegate profiles.

    Reports init time, first inference, latency mean/p50/p90/p99/std, throughput, peak resident
    memory, size, achieved GMAC/s and its share of this machine's measured INT8 peak; with --npu,
    which ops each device runs, partitions, handoffs, fallbacks and a roofline latency estimate.

    --profile attributes the latency to each op (each op cut out into a one-op model of the
    same shapes and timed alone; LiteRT's Python package has no op profiler) and names the
    slowest op types.

    Example: kseg bench model_int8.tflite model_float.tflite --baseline model_float.tflite
    --threads 1,2 --cpus 0 --npu edgetpu,generic_npu --json bench.json --plots bench/
    """
    from kseg.bench.devices import available_profiles
    from kseg.bench.report import to_markdown, write_charts, write_json_report, write_markdown
    from kseg.bench.run import parse_int_list, run_benchmark

    names = [n.strip() for item in npu for n in item.split(",") if n.strip()]
    if "all" in names:
        names = sorted(available_profiles())
    if vela_calibrate is not None:
        if vela == "no":
            raise ConfigError("--vela-calibrate needs Vela; drop --vela no")
        from kseg.bench.vela import one_ethos_profile

        one_ethos_profile(names)
        vela = "yes"
    report = run_benchmark(
        files,
        threads=parse_int_list(threads, "--threads") or [1],
        runs=runs,
        warmup=warmup,
        runtime=runtime,
        delegate=delegate,
        npu=names,
        baseline=baseline,
        cpus=parse_int_list(cpus, "--cpus"),
        isolate=isolate,
        calibrate=calibrate,
        measure_latency=not static_only,
        vela=vela,
        profile=profile,
    )
    click.echo(to_markdown(report))
    if vela_calibrate is not None:
        from kseg.bench.vela import calibrate_from_report

        click.echo(calibrate_from_report(report, names, vela_calibrate))
    if json_out:
        write_json_report(report, json_out)
        click.echo(f"wrote {json_out}")
    if md_out:
        write_markdown(report, md_out)
        click.echo(f"wrote {md_out}")
    if plots:
        charts = write_charts(report, plots)
        click.echo(
            f"wrote {len(charts)} chart(s) to {plots}"
            if charts
            else "no charts (matplotlib missing)"
        )


if (
    __name__ == "__main__"
):  # python -m kseg.bench.cli FILE.tflite ... (without the kseg entry point)
    bench()
