"""``python -m kseg.bench._worker '{json args}'``: one isolated measurement, JSON on stdout.

A module of its own (not imported by :mod:`kseg.bench`) so ``-m`` runs it without re-importing.
"""

from __future__ import annotations

import json
import sys

from kseg.bench.latency import _max_rss_mb, measure
from kseg.errors import KsegError


def main(argv: list[str]) -> int:
    args = json.loads(argv[0])
    path = args.pop("path")
    try:
        result = measure(path, **args)
    except KsegError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    result["peak_rss_mb"] = max(result["peak_rss_mb"], _max_rss_mb())
    result["model_rss_mb"] = result["peak_rss_mb"] - result["baseline_rss_mb"]
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
