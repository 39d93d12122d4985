"""``python -m benchmarks [--quick] [--json PATH] [--only SECTION ...]``: run, print, write JSON."""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._fixtures import Bench, Mode
from ._report import Row, render

DEFAULT_JSON = Path(__file__).with_name("results.json")
SECTIONS = (
    "verify",
    "default",
    "cache",
    "asgi",
    "wsgi",
    "jwks",
    "dpop",
    "dpop_request",
    "fleet",
    "stampede",
)


def _sections() -> dict[str, Callable[[Bench, dict[str, Any]], list[Row]]]:
    from . import app_bench, dpop_bench, fleet_bench, jwks_bench, stampede_bench, verify_bench

    return {
        "verify": verify_bench.run_algorithms,
        "default": verify_bench.run_default_configuration,
        "cache": verify_bench.run_cache_and_keys,
        "asgi": app_bench.run_asgi,
        "wsgi": app_bench.run_wsgi,
        "jwks": jwks_bench.run_jwks,
        "dpop": dpop_bench.run_dpop,
        "dpop_request": dpop_bench.run_dpop_requests,
        "fleet": fleet_bench.run_fleet,
        "stampede": stampede_bench.run_stampede,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a seconds-long smoke run")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write results")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    parser.add_argument(
        "--algs", nargs="+", metavar="ALG", help="verify section: only these algorithms"
    )
    args = parser.parse_args(argv)
    # Refusals and fetches are logged at INFO/WARNING by design; keep them out of the table.
    logging.getLogger("jwt_guard").setLevel(logging.ERROR)

    mode = Mode.make(args.quick, args.algs)
    started = time.perf_counter()
    bench = Bench(mode)
    rows: list[Row] = []
    results: dict[str, Any] = {}
    try:
        for name, run in _sections().items():
            if args.only and name not in args.only:
                continue
            section_start = time.perf_counter()
            rows.extend(run(bench, results))
            print(f"# {name}: {time.perf_counter() - section_start:.1f}s", file=sys.stderr)
    finally:
        bench.close()
    elapsed = time.perf_counter() - started

    print(render(rows))
    print(f"({'quick' if mode.quick else 'full'} run, {elapsed:.0f}s)")
    document = {
        "meta": {
            "mode": "quick" if mode.quick else "full",
            "seconds": elapsed,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "rows": {row.key: row.as_json() for row in rows},
        "sections": results,
        "summary": {
            status: sum(row.status == status for row in rows)
            for status in ("PASS", "FAIL", "SKIP", "info")
        },
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
