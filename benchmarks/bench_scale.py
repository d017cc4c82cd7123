"""The mission's command at growing |C|, each size in a fresh process, side by side (issue 24).

    python benchmarks/bench_scale.py                                   # DCGAN + dlib (--align fixed): 1e4, 1e5, 1e6 (~100 min on 2 cores)
    python benchmarks/bench_scale.py --sizes 1e4,1e5                   # what fits in a quarter of an hour
    python benchmarks/bench_scale.py --generator gancheck/data/demo_generator.onnx --embedder pixel --align '' --sizes 1e3,1e4

Needs examples/dcgan_digiface/dcgan_digiface.onnx (examples/dcgan_digiface/export_onnx.py) for the default.

Per size: peak RSS of the audit process, wall time, images/s (collection and anchors over the wall
time), the run directory's size, and the time after the collection (analysis, tables, report.json,
report.html: from the log line that ends the collection to the process's exit). Ratios are printed
against the smallest size. The largest size is then audited a second time, stopped with SIGTERM
once about half of its shards are done, and resumed; its figures are the two processes' (peak RSS
the larger, wall time the sum). With --also-uninterrupted the largest size is audited a second time
without a stop, and the resumed report.json must equal it (every key but the command line's). The
prefix rule: the collection is the samples 0..n-1 of one seeded stream, so the larger run's
convergence row at the smaller n (its first n samples) has the smaller run's mean and standard
deviation of MCCS, to the bit; it ties the resumed largest run to each smaller, uninterrupted one.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DCGAN = ROOT / "examples" / "dcgan_digiface" / "dcgan_digiface.onnx"


def audit_command(args, n: int, out: Path, resume: bool = False) -> list[str]:
    cmd = [sys.executable, "-m", "gancheck", "audit", str(args.generator), "--n", str(n), "--anchors", str(args.anchors),
           "--embedder", args.embedder, "--out", str(out), "--resume" if resume else "--overwrite"]
    return cmd + (["--align", args.align] if args.align else [])


def run(cmd: list[str], stop_after_shards: int | None = None, out: Path | None = None) -> dict:
    """Run ``cmd`` in a fresh process: wall time, its peak RSS, when the collection finished, its
    exit status; with ``stop_after_shards``, SIGTERM once that many shards are checkpointed."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    collected, lines, trace = None, [], []
    threading.Thread(target=sample_rss, args=(proc, t0, trace), daemon=True).start()
    if stop_after_shards is not None:
        state = out.parent / f".{out.name}.partial" / "state.json"
        while proc.poll() is None:
            try:
                if len(json.loads(state.read_text()).get("shards", {})) > stop_after_shards:
                    proc.send_signal(signal.SIGTERM)
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.5)
    for line in proc.stderr:
        lines.append(line.rstrip())
        if re.search(r"collection samples: finished", line):
            collected = time.perf_counter()
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS (ru_maxrss, KiB)
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    return {"code": code, "wall_s": wall, "after_collection_s": (t0 + wall - collected) if collected else None,
            "peak_rss_mib": usage.ru_maxrss / 1024, "log": lines[-3:], "rss_trace": trace}


def sample_rss(proc, t0: float, trace: list, every: float = 30.0) -> None:
    """Append ``(seconds, RSS MiB)`` of ``proc`` to ``trace`` every ``every`` seconds while it runs."""
    while proc.poll() is None:
        try:
            kib = next(int(line.split()[1]) for line in open(f"/proc/{proc.pid}/status") if line.startswith("VmRSS:"))
            trace.append((round(time.perf_counter() - t0), kib / 1024))
        except (OSError, StopIteration, ValueError):
            pass
        time.sleep(every)


def rss_over_time(trace: list) -> str:
    """The RSS at a tenth, half and nine tenths of a run's samples (the steady level, not the peak)."""
    if len(trace) < 3:
        return "too short to trace"
    return " -> ".join(f"{trace[int(q * (len(trace) - 1))][1]:.0f}" for q in (0.1, 0.5, 0.9)) + " MiB at 10%, 50%, 90% of its time"


def directory_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def comparable(report: dict) -> dict:
    return {k: v for k, v in report.items() if k not in ("config", "generator")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--generator", default=str(DCGAN))
    p.add_argument("--embedder", default="dlib")
    p.add_argument("--align", default="fixed", help="--align for face embedders ('' for none)")
    p.add_argument("--sizes", default="1e4,1e5,1e6")
    p.add_argument("--anchors", type=int, default=1000)
    p.add_argument("--no-resume", action="store_true", help="audit the largest size without the SIGTERM and the resume")
    p.add_argument("--also-uninterrupted", action="store_true", help="audit the largest size a second time, without a stop, and compare")
    p.add_argument("--against", default="", help="finished run directories of smaller n (comma-separated) that the largest run's "
                   "prefix rule is checked against, for a run of one size")
    p.add_argument("--keep", default=None, help="folder for the run directories (default: a temporary one)")
    args = p.parse_args()
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    base = Path(args.keep or tempfile.mkdtemp(prefix="bench_scale_"))
    rows = []
    for n in sizes:
        out = base / f"run-{n}"
        r = stopped_and_resumed(args, n, out) if n == sizes[-1] and not args.no_resume else run(audit_command(args, n, out))
        r.setdefault("rss_traces", [("the audit", r.get("rss_trace", []))])
        if r["code"] != 0:
            sys.exit(f"audit at n = {n:,} failed ({r['code']}): {' | '.join(r['log'])}")
        r.update(n=n, run_dir=out, images_per_s=(n + args.anchors) / r["wall_s"], run_dir_mib=directory_mib(out),
                 report=json.loads((out / "report.json").read_text()))
        rows.append(r)
        print(f"n = {n:>9,}: wall {r['wall_s']:8.1f} s  {r['images_per_s']:7.1f} images/s  peak RSS {r['peak_rss_mib']:7.0f} MiB  "
              f"run dir {r['run_dir_mib']:8.1f} MiB  after the collection {r['after_collection_s'] or float('nan'):5.1f} s", flush=True)
        for name, trace in r["rss_traces"]:
            print(f"    RSS of {name}: {rss_over_time(trace)}", flush=True)
        (base / f"rss-{n}.json").write_text(json.dumps(dict(r["rss_traces"])))
    first = rows[0]
    for r in rows[1:]:
        share = r["after_collection_s"] / (r["wall_s"] - r["after_collection_s"]) if r["after_collection_s"] else float("nan")
        print(f"n = {r['n']:,} vs {first['n']:,}: peak RSS x{r['peak_rss_mib'] / first['peak_rss_mib']:.3f}, "
              f"images/s x{r['images_per_s'] / first['images_per_s']:.3f}, after the collection {share:.1%} of the collection's time")
    for small, big in zip(rows, rows[1:]):
        row = next((c for c in convergence(big["run_dir"]) if c["n"] == small["n"]), None)
        same = row is not None and (row["mccs_mean"], row["mccs_std"]) == (small["report"]["mccs"]["mean"], small["report"]["mccs"]["std"])
        print(f"prefix rule: n = {big['n']:,}'s convergence row at {small['n']:,} equals the {small['n']:,} run's (mu, sigma): {same}")
    for small in filter(None, args.against.split(",")):
        report = json.loads((Path(small) / "report.json").read_text())
        n_small = report["config"]["n"]
        row = next((c for c in convergence(rows[-1]["run_dir"]) if c["n"] == n_small), None)
        same = row is not None and (row["mccs_mean"], row["mccs_std"]) == (report["mccs"]["mean"], report["mccs"]["std"])
        print(f"prefix rule: n = {rows[-1]['n']:,}'s convergence row at {n_small:,} equals {small}'s (mu, sigma): {same}")
    if args.also_uninterrupted and not args.no_resume:
        resume_check(args, rows[-1], base)


def convergence(run_dir: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(run_dir / "convergence.parquet").to_pylist()


def stopped_and_resumed(args, n: int, out: Path) -> dict:
    """Audit ``n`` stopped with SIGTERM after about half of its shards, then resumed: one row."""
    shards = -(-n // 16_384)
    stopped = run(audit_command(args, n, out), stop_after_shards=max(shards // 2, 1), out=out)
    resumed = run(audit_command(args, n, out, resume=True))
    print(f"n = {n:,}: SIGTERM after half of {shards} shards: exit {stopped['code']} after {stopped['wall_s']:.0f} s "
          f"(peak RSS {stopped['peak_rss_mib']:.0f} MiB); resumed: exit {resumed['code']} after {resumed['wall_s']:.0f} s "
          f"(peak RSS {resumed['peak_rss_mib']:.0f} MiB)", flush=True)
    return {"code": resumed["code"], "wall_s": stopped["wall_s"] + resumed["wall_s"], "log": resumed["log"],
            "rss_traces": [("the stopped audit", stopped["rss_trace"]), ("the resumed audit", resumed["rss_trace"])],
            "after_collection_s": resumed["after_collection_s"], "peak_rss_mib": max(stopped["peak_rss_mib"], resumed["peak_rss_mib"])}


def resume_check(args, resumed: dict, base: Path) -> None:
    n = resumed["n"]
    out = base / f"uninterrupted-{n}"
    r = run(audit_command(args, n, out))
    same = r["code"] == 0 and comparable(json.loads((out / "report.json").read_text())) == comparable(resumed["report"])
    print(f"n = {n:,} uninterrupted: exit {r['code']}, {r['wall_s']:.0f} s, peak RSS {r['peak_rss_mib']:.0f} MiB; "
          f"the resumed run's report equals it: {same}")


if __name__ == "__main__":
    main()
