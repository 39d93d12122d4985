"""The long fuzz run: the properties of ``tests/test_fuzz.py`` with random seeds and many examples.

Not part of CI. From the repository root::

    python scripts/fuzz_long.py                 # 20,000 examples per property, 6 properties
    python scripts/fuzz_long.py --examples 500  # a quick look

Each property sends its input through the core (sync and async) and through both middlewares,
so an "input" here is one request judged four times. It prints the number of inputs, their
outcomes and the time taken; any counterexample stops the run with hypothesis' report and a
non-zero exit status.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=20_000, help="examples per property")
    args = parser.parse_args()
    # test_fuzz reads these when it is imported: random seeds, no example database.
    os.environ["JWT_GUARD_FUZZ_EXAMPLES"] = str(args.examples)
    os.environ["JWT_GUARD_FUZZ_RANDOM"] = "1"
    sys.path.insert(0, str(TESTS))
    import test_fuzz

    started = time.monotonic()
    with test_fuzz.make_rig() as rig:
        for prop in test_fuzz.PROPERTIES:
            before = test_fuzz.TALLY.total
            t0 = time.monotonic()
            prop(rig=rig)
            runs = test_fuzz.TALLY.total - before
            print(f"{prop.__name__:<55} {runs:>8} inputs {time.monotonic() - t0:8.1f}s", flush=True)
    elapsed = time.monotonic() - started
    tally = test_fuzz.TALLY
    print(f"total: {tally.total} inputs in {elapsed:.1f}s ({tally.total / elapsed:.0f}/s)")
    for outcome, count in sorted(tally.counts.items()):
        print(f"  {outcome:<14} {count:>8}")
    print("no exception escaped, no 5xx, no accepted mutation, no echo")
    return 0


if __name__ == "__main__":
    sys.exit(main())
