"""How long `lull demo` takes, and where: generation, then the import, in one run.

    .venv/bin/python bench/demo.py [--users 2000] [--rounds 2]

Each round runs the real command (`lull demo --until 2026-11-26`) into a fresh store in
a child process, for its wall time, CPU time and peak RSS, then times `demo.generate`
alone in this process; the import's share is the rest.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lull.demo import end_of, generate

LULL = str(Path(sys.executable).with_name("lull"))
UNTIL = "2026-11-26"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--users", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=2)
    a = p.parse_args(argv)
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    for n in range(1, a.rounds + 1):
        with tempfile.TemporaryDirectory() as tmp:
            db = str(Path(tmp) / "demo.duckdb")
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            done = subprocess.run(
                [LULL, "--db", db, "demo", "--users", str(a.users), "--until", UNTIL],
                capture_output=True,
                text=True,
                check=True,
            )
            wall = time.perf_counter() - started
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        cpu0 = time.process_time()
        made = generate(users=a.users, days=30, seed=1, until=end_of(UNTIL))
        gen = time.process_time() - cpu0
        print(f"round {n}: {done.stdout.splitlines()[0]}")
        print(
            f"  lull demo: wall {wall:.1f} s, CPU {cpu:.1f} s, peak RSS "
            f"{after.ru_maxrss / 1024:.0f} MB; of the CPU, generating {len(made.records):,} "
            f"events {gen:.1f} s, the rest (write, import, traits, start-up) {cpu - gen:.1f} s"
        )
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
