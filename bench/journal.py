"""The loop's own cost and the journal's replay time, with a backend that answers instantly.

    python bench/journal.py --target 50000            # builds a 50K-task run, then resumes it
    python bench/journal.py --target 2000 --round-size 64

1. Build: the real loop (parse, heuristics, ROUGE-L, MinHash, journal, fsyncs, manifest per round) against the
   scripted model of tests/scripted.py, which answers at once with a reject-heavy mix like a small model's.
   Reported: accepted tasks per second and loop CPU microseconds per generated token (the backend's own time
   is measured and subtracted), with the reject mix.
2. Replay: `generate` on the finished run again: the store opens, the journal is folded, the novelty pool and
   MinHash index are rebuilt, and the loop stops at once, with no request sent. That is the cost of a resume.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from scripted import ScriptedBackend  # noqa: E402

from selfinstruct.collect import collect_less  # noqa: E402
from selfinstruct.config import load_recipe  # noqa: E402
from selfinstruct.generate import generate  # noqa: E402


class Timed(ScriptedBackend):
    """The scripted model, with its own CPU time kept apart from the loop's."""

    def __init__(self):
        super().__init__()
        self.cpu = 0.0

    def generate(self, requests):
        t0 = time.process_time()
        try:
            return super().generate(requests)
        finally:
            self.cpu += time.process_time() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", type=int, default=50_000)
    ap.add_argument("--round-size", type=int, default=256)
    ap.add_argument("--out", type=Path, default=None, help="Run directory (default: a temp dir, removed).")
    args = ap.parse_args()
    collect_less()  # as the CLI runs every command (selfinstruct/collect.py)

    out = args.out or Path(tempfile.mkdtemp(prefix="bench-journal-")) / "run"
    recipe = load_recipe(
        ROOT / "pipelines" / "quickstart.yaml",
        {
            "seeds": str(ROOT / "seeds"),
            "loop.target": args.target,
            "loop.max_rounds": None,
            "loop.patience": None,
            "loop.round_size": args.round_size,
            "loop.prompt_style": "chat",
            "backend": {"kind": "openai", "base_urls": ["http://127.0.0.1:9/v1"], "model": "scripted"},
        },
    )
    backend = Timed()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    m = generate(recipe, out, backend=backend)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    loop_cpu = cpu - backend.cpu
    tokens = m.counts["completion_tokens"]
    mix = {k.removeprefix("rejected_"): v for k, v in m.counts.items() if k.startswith("rejected_")}
    print(f"build: {m.counts['accepted']} accepted, {m.counts['rejected']} rejected in {m.rounds} rounds")
    print(f"  reject mix: {mix}")
    print(f"  requests {m.counts['requests']}, completion tokens {tokens}")
    print(f"  wall {wall:.1f} s, loop CPU {loop_cpu:.1f} s (scripted model {backend.cpu:.1f} s)")
    print(f"  accepted tasks/s (wall) {m.counts['accepted'] / wall:.1f}")
    print(f"  loop CPU per generated token {loop_cpu / tokens * 1e6:.1f} us")
    print(f"  journal {(out / 'journal.jsonl').stat().st_size / 2**20:.1f} MiB")

    again = Timed()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    m2 = generate(recipe, out, backend=again)
    replay_wall, replay_cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    assert again.calls.total() == 0 and m2.counts["accepted"] == m.counts["accepted"]
    print(
        f"replay (resume of the finished run): wall {replay_wall:.1f} s, CPU {replay_cpu:.1f} s, 0 requests"
    )
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB")
    if args.out is None:
        shutil.rmtree(out.parent, ignore_errors=True)


if __name__ == "__main__":
    from selfinstruct.signals import script_boundary

    with script_boundary():  # SIGINT/SIGTERM: clean stop, no engine left running
        main()
