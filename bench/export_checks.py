"""What the publish/export safety checks cost (issue 15).

Prints, in one run on one synthetic dataset:
- reading a version's rows back from its export with the sha256 check of each file
  (``ExportedVersions.load_rows``) against the same read without it (the baseline);
- ``complete_exports`` at the start of a build when every published version is already
  exported (the usual case: a few stats and one JSON read) against publishing one version.

    python bench/export_checks.py --rows 10000 --versions 10
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.warehouse_support import listwise_row, publish  # noqa: E402
from warehouse.db import Warehouse  # noqa: E402
from warehouse.exported import ExportedVersions  # noqa: E402
from warehouse.exports import complete_exports, publish_exports  # noqa: E402


def timed(function, repeats: int) -> float:
    """Median seconds of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10000)
    parser.add_argument("--versions", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        words = random.Random(0).choices([f"w{n}" for n in range(5000)], k=400)
        rows = [{**listwise_row(i), "reasoning": " ".join(words[i % 97:] + words[:i % 97])}
                for i in range(args.rows)]
        with Warehouse.open(root / "wh.duckdb") as wh:
            for _ in range(args.versions):
                version = publish(wh, "ds", rows)
                started = time.perf_counter()
                publish_exports(wh, "ds", version, ["listwise"], root / "out" / "ds")
                publish_seconds = time.perf_counter() - started
            complete = timed(lambda: complete_exports(wh, "ds", root / "out" / "ds"), args.repeats)
        size_mb = (root / "out" / "ds" / f"v{version}" / "listwise.parquet").stat().st_size / 1e6
        checking, unchecked = ExportedVersions(root / "out"), ExportedVersions(root / "out")
        unchecked._verify = lambda *_: None  # the baseline: the same read, no sha256 check
        plain = timed(lambda: unchecked.load_rows("ds", version, "listwise"), args.repeats)
        checked = timed(lambda: checking.load_rows("ds", version, "listwise"), args.repeats)
    print(f"rows {args.rows}, parquet {size_mb:.1f} MB, versions {args.versions}, median of {args.repeats}")
    print(f"read rows from the export: unchecked {plain * 1000:.0f} ms, with sha256 check {checked * 1000:.0f} ms "
          f"({(checked - plain) / plain:+.0%})")
    print(f"complete_exports with {args.versions} versions exported: {complete * 1000:.1f} ms "
          f"(publishing one version's export: {publish_seconds * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
