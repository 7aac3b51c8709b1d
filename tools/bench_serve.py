"""Benchmark ``kseg serve`` on loopback: throughput, latency, memory, overhead against the library.

A real ``kseg serve`` process (``--workers W``, one interpreter thread each) is started on a free
loopback port and driven by an asyncio httpx client on the same images:

1. **Overhead.** One client, one request at a time, against the same work done in this process
   by the library: ``decode_image`` + :func:`kseg.inference.segment_image` + the JSON outputs
   (statistics, GeoJSON, mask PNG), one interpreter thread, on the same bytes. Rounds alternate
   between the two so that load from other users of the machine hits both (target <= 15 %).
   The library-only inference time (``segment_image`` alone) is reported beside it. On a busy
   machine the rounds swing, so each HTTP request is also paired with its own library share,
   timed inside the server (``Server-Timing``: decode + inference + outputs): client time minus
   that share is what the service adds (HTTP, multipart/JSON, thread hop), under the same load.
   On a machine far busier than its cores, wall times are mostly waiting for a core, so the CPU
   time is compared too: the server process's CPU per request against one library call's.
2. **Bounded load.** ``C`` concurrent clients for ``--seconds`` (at least ``--min-requests``):
   requests/s, p50/p99 latency, errors (must be 0), and the server's resident memory sampled
   every 50 requests (flat: growth after warm-up under a few MiB).

The model is ``--model`` or an untrained ``mobile_unet`` INT8 converted here (latency does not
depend on the weights). Images: the first HC18 images when present (800x540 PNG), else synthetic
ultrasound frames.

Usage:
    python tools/bench_serve.py [--model M.tflite] [--seconds 60] [--clients 4] [--workers 2]
        [--out runs/bench]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kseg.atomic import write_json, write_text  # noqa: E402

HC18 = Path(os.environ.get("KSEG_HC18", REPO.parent / "shared" / "data" / "hc18"))


def default_model(size: int, out: Path) -> Path:
    """An untrained ``mobile_unet`` (``size`` x ``size`` x 1) converted to INT8 (cached)."""
    path = out / f"mobile_unet_{size}_int8.tflite"
    if path.is_file():
        return path
    from kseg.export import convert_model
    from kseg.models import create_model

    model = create_model("mobile_unet", input_shape=(size, size, 1), num_classes=1)
    rep = np.random.default_rng(0).uniform(0, 255, (8, size, size, 1)).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(convert_model(model, "int8", representative=rep))
    return path


def load_images(n: int) -> tuple[list[bytes], str]:
    """``n`` PNG files as bytes and where they came from."""
    import cv2

    files = sorted((HC18 / "images").glob("*.png"))[:n] if (HC18 / "images").is_dir() else []
    if len(files) == n:
        return [f.read_bytes() for f in files], f"HC18 {HC18 / 'images'} (first {n})"
    from kseg.data.synthetic import synthesize

    imgs = synthesize("ultrasound", n, size=512, seed=0).images
    return [
        cv2.imencode(".png", im)[1].tobytes() for im in imgs
    ], f"synthetic ultrasound 512x512 x{n}"


def library_call(pred, data: bytes, opts) -> dict:
    """What a program using the library does for the same answer as the service's JSON."""
    import base64

    from kseg.data.io import decode_image
    from kseg.inference import segment_image

    res = segment_image(pred, decode_image(data, int(pred.channels)), opts)
    return {
        "stats": res.stats(),
        "geojson": res.geojson(),
        "mask": base64.b64encode(res.mask_png()).decode("ascii"),
    }


def server_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its threads."""
    import psutil

    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def rss_mib(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


def start_server(model: Path, workers: int, log: Path) -> tuple[subprocess.Popen, str]:
    import socket

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [
        sys.executable,
        "-c",
        "from kseg.cli import main; main()",
        "serve",
        "--model",
        str(model),
    ]
    cmd += ["--port", str(port), "--workers", str(workers), "--threads", "1"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        if proc.poll() is not None:
            raise SystemExit(f"kseg serve exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("kseg serve did not come up in 60 s")


def library_part_ms(server_timing: str) -> float:
    """The library's share of one request, from the server's ``Server-Timing`` header: decode +
    ``segment_image`` + statistics, GeoJSON and mask PNG (the same work :func:`library_call` does)."""
    parts = dict(item.strip().split(";dur=") for item in server_timing.split(","))
    return sum(float(parts[k]) for k in ("decode", "inference", "encode"))


async def sequential(
    client, url: str, images: list[bytes], n: int, paired: list[tuple[float, float]] | None = None
) -> list[float]:
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        r = await client.post(f"{url}/v1/segment", content=images[i % len(images)])
        r.raise_for_status()
        r.json()
        times.append((time.perf_counter() - t0) * 1e3)
        if paired is not None:
            paired.append((times[-1], library_part_ms(r.headers["server-timing"])))
    return times


async def load(
    url: str, images: list[bytes], clients: int, seconds: float, min_requests: int, pid: int
):
    import httpx

    lat: list[float] = []
    errors: list[str] = []
    rss: list[tuple[int, float]] = [(0, rss_mib(pid))]
    stop_at = time.perf_counter() + seconds
    counter = 0

    async def one(client, k: int) -> None:
        nonlocal counter
        i = k
        while time.perf_counter() < stop_at or counter < min_requests:
            t0 = time.perf_counter()
            try:
                r = await client.post(f"{url}/v1/segment", content=images[i % len(images)])
                if r.status_code != 200:
                    errors.append(f"{r.status_code}: {r.text[:200]}")
                else:
                    r.json()
            except Exception as e:  # noqa: BLE001 - counted as an error
                errors.append(repr(e))
            lat.append((time.perf_counter() - t0) * 1e3)
            counter += 1
            if counter % 50 == 0:
                rss.append((counter, rss_mib(pid)))
            i += clients

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(one(client, k) for k in range(clients)))
        wall = time.perf_counter() - t0
    rss.append((counter, rss_mib(pid)))
    return lat, errors, rss, wall


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--size", type=int, default=256, help="Input size of the default model.")
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=6, help="Alternating overhead rounds.")
    ap.add_argument("--per-round", type=int, default=16, help="Requests per overhead round.")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--min-requests", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "bench")
    args = ap.parse_args()

    import httpx

    from kseg.bench.latency import machine_info
    from kseg.inference import InferenceOptions, load_predictor

    args.out.mkdir(parents=True, exist_ok=True)
    model = args.model or default_model(args.size, args.out / "serve_models")
    images, source = load_images(args.images)
    pred = load_predictor(model, num_threads=1)
    opts = InferenceOptions()
    proc, url = start_server(model, args.workers, args.out / "bench_serve_server.log")
    try:
        # the service answers what the library computes
        first = httpx.post(f"{url}/v1/segment", content=images[0], timeout=60).json()
        lib = library_call(pred, images[0], opts)
        assert first["stats"] == lib["stats"] and first["mask_png_base64"] == lib["mask"], (
            "service and library disagree"
        )

        # 1. overhead: alternate library rounds and sequential HTTP rounds
        direct, direct_infer, served, per_round = [], [], [], []
        paired: list[tuple[float, float]] = []
        direct_cpu: list[float] = []  # CPU ms of one library call in this process
        served_cpu: list[float] = []  # the server process's CPU ms per request, per round

        async def overhead() -> None:
            from kseg.data.io import decode_image
            from kseg.inference import segment_image

            async with httpx.AsyncClient(timeout=60) as client:
                await sequential(client, url, images, len(images))  # warm both threads
                for _ in range(len(images)):
                    library_call(pred, images[_], opts)
                for r in range(args.rounds):
                    n0 = len(direct)
                    for i in range(args.per_round):
                        data = images[(r * args.per_round + i) % len(images)]
                        t0, c0 = time.perf_counter(), time.process_time()
                        library_call(pred, data, opts)
                        direct.append((time.perf_counter() - t0) * 1e3)
                        direct_cpu.append((time.process_time() - c0) * 1e3)
                        img = decode_image(data, int(pred.channels))
                        t0 = time.perf_counter()
                        segment_image(pred, img, opts)
                        direct_infer.append((time.perf_counter() - t0) * 1e3)
                    c0 = server_cpu_s(proc.pid)
                    got = await sequential(client, url, images, args.per_round, paired)
                    served_cpu.append((server_cpu_s(proc.pid) - c0) * 1e3 / args.per_round)
                    served.extend(got)
                    lib = statistics.median(direct[n0:])
                    per_round.append(100.0 * (statistics.median(got) - lib) / lib)

        asyncio.run(overhead())
        d_med, s_med, i_med = (statistics.median(x) for x in (direct, served, direct_infer))
        overhead_pct = 100.0 * (s_med - d_med) / d_med
        # the same request's library share, timed inside the server: contention hits both alike
        paired_ms = [c - lib for c, lib in paired]
        paired_pct = [100.0 * (c - lib) / lib for c, lib in paired]

        # 2. bounded load
        lat, errors, rss, wall = asyncio.run(
            load(url, images, args.clients, args.seconds, args.min_requests, proc.pid)
        )
    finally:
        proc.terminate()
        proc.wait(timeout=15)

    warm = [m for n, m in rss if n >= 100] or [rss[-1][1]]
    result = {
        "machine": machine_info(),
        "model": str(model),
        "images": source,
        "image_bytes_mean": float(np.mean([len(b) for b in images])),
        "workers": args.workers,
        "overhead": {
            "library_ms_p50": d_med,
            "library_segment_only_ms_p50": i_med,
            "service_ms_p50": s_med,
            "overhead_pct": overhead_pct,
            "overhead_pct_per_round": per_round,
            "library_cpu_ms_mean": statistics.mean(direct_cpu),
            "server_cpu_ms_per_request_mean": statistics.mean(served_cpu),
            "cpu_overhead_pct": 100.0
            * (statistics.mean(served_cpu) - statistics.mean(direct_cpu))
            / statistics.mean(direct_cpu),
            "paired_overhead_ms_p50": statistics.median(paired_ms),
            "paired_overhead_pct_p50": statistics.median(paired_pct),
            "paired_library_ms_p50": statistics.median(lib for _, lib in paired),
            "n_each": len(direct),
            "target_pct": 15.0,
        },
        "load": {
            "clients": args.clients,
            "seconds": wall,
            "requests": len(lat),
            "errors": len(errors),
            "error_samples": errors[:5],
            "requests_per_s": len(lat) / wall,
            "p50_ms": pct(lat, 50),
            "p99_ms": pct(lat, 99),
            "max_ms": max(lat),
            "rss_mib": rss,
            "rss_after_warmup_min_mib": min(warm),
            "rss_after_warmup_max_mib": max(warm),
            "rss_growth_after_warmup_mib": warm[-1] - warm[0],
        },
    }
    write_json(args.out / "serve.json", result)
    o, ld = result["overhead"], result["load"]
    md = f"""# Service benchmark (`kseg serve`)

Machine: {result["machine"].get("cpu", "")} ({result["machine"].get("cpu_count", "?")} CPUs, shared).
Model: `{Path(str(model)).name}`; images: {source} (mean {result["image_bytes_mean"] / 1024:.0f} KiB PNG);
`kseg serve --workers {args.workers} --threads 1` on loopback, asyncio httpx client in another process.

## Overhead against the library (one request at a time, {o["n_each"]} each, alternating rounds)

| path | p50 ms |
|---|---:|
| library: decode + `segment_image` + stats, GeoJSON, mask PNG | {o["library_ms_p50"]:.1f} |
| library: `segment_image` alone | {o["library_segment_only_ms_p50"]:.1f} |
| service: HTTP POST -> JSON, measured at the client | {o["service_ms_p50"]:.1f} |
| service overhead, alternating rounds (wall time) | {o["overhead_pct"]:+.1f} % |
| **CPU per request: server process {o["server_cpu_ms_per_request_mean"]:.1f} ms vs library call {o["library_cpu_ms_mean"]:.1f} ms** | **{o["cpu_overhead_pct"]:+.1f} %** (target <= 15 %) |
| **service overhead, paired** (client time minus the same request's library share, timed in the server) | **{o["paired_overhead_ms_p50"]:.1f} ms = {o["paired_overhead_pct_p50"]:+.1f} %** of {o["paired_library_ms_p50"]:.1f} ms |

Overhead per round (median of {args.per_round} against median of {args.per_round}): {", ".join(f"{x:+.1f}" for x in per_round)} %
(median {statistics.median(per_round):+.1f} %).

## Bounded load ({ld["clients"]} concurrent clients, {ld["seconds"]:.0f} s)

| requests | errors | requests/s | p50 ms | p99 ms | max ms | server RSS after warm-up (MiB) |
|---:|---:|---:|---:|---:|---:|---|
| {ld["requests"]} | {ld["errors"]} | {ld["requests_per_s"]:.1f} | {ld["p50_ms"]:.1f} | {ld["p99_ms"]:.1f} | {ld["max_ms"]:.1f} | {ld["rss_after_warmup_min_mib"]:.1f} - {ld["rss_after_warmup_max_mib"]:.1f} (growth {ld["rss_growth_after_warmup_mib"]:+.1f}) |

RSS every 50 requests: {", ".join(f"{m:.0f}" for _, m in rss)} MiB.

Command: `python tools/bench_serve.py {" ".join(sys.argv[1:])}`
"""
    write_text(args.out / "serve.md", md)
    print(md)


if __name__ == "__main__":
    main()
