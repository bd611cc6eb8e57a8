"""Differential loop: scan against the real loaders, on random loader-valid files.

Generates seeded files (trojanscope.attacks.differential: raw pickle, torch zip, legacy torch,
.npy object arrays, joblib and compressed or archived pickles, built opcode by opcode around
real callables), loads each with its real loader in a child process under an audit hook
(trojanscope.attacks.differential_oracle), and compares with scan_bytes:
- MISS: the load ran code (a dangerous audit event, or a file left in its working directory)
  while scan rated the file below HIGH. Goal 0. Saved under OUT/misses (and, with
  --regressions DIR, copied there as regression fixtures).
- FALSE ALARM: scan rated the file HIGH or more and its load did nothing dangerous. Counted
  as "unknown global that did nothing" when pickle.unknown-global is the only finding at HIGH
  or above (scan is deny-by-default on unlisted globals), else by rule.
Run: python benchmarks/bench_scan_differential.py --seed 0 --files 2000 --budget-seconds 300
     --out DIR [--regressions tests/data/differential]
"""

from __future__ import annotations

import argparse
import io
import json
import pickletools
import shutil
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from trojanscope.artifacts import scan_bytes
from trojanscope.attacks.differential import Sample, generate
from trojanscope.attacks.differential_oracle import Verdict, run_oracle
from trojanscope.findings import Severity

UNKNOWN = "pickle.unknown-global"
DYNAMIC = "pickle.dynamic-global"


def disassembly(payload: bytes) -> str:
    out = io.StringIO()
    try:
        pickletools.dis(payload, out)
    except Exception as exc:  # noqa: BLE001 - a stream that ends early, or lies about frames
        out.write(f"(dis stopped: {exc})\n")
    return out.getvalue()


def miss_class(sample: Sample, verdict: Verdict) -> str:
    """What ran: the name that reached the payload's callable, and the kinds of event."""
    at = next((i for i, u in enumerate(sample.uses) if u.startswith("payload ")), None)
    reached = sample.uses[at + 1] if at is not None and at + 1 < len(sample.uses) else "?"
    kind = "import only" if verdict.import_only else ", ".join(
        sorted({e for e, _ in verdict.events}) or ["canary"])
    return f"{reached} [{kind}]"


def describe(sample: Sample, verdict: Verdict, report) -> dict:
    return {"name": sample.name, "container": sample.container, "loader": sample.loader,
            "protocol": sample.protocol, "uses": sample.uses, "status": verdict.status,
            "error": verdict.error, "events": verdict.events[:10], "canary": verdict.canary,
            "globals": verdict.globals, "notes": verdict.notes,
            "scan": [(f.rule, str(f.severity), f.message) for f in report.findings]}


def save(folder: Path, sample: Sample, verdict: Verdict, report) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{sample.name}.bin").write_bytes(sample.data)
    (folder / f"{sample.name}.json").write_text(json.dumps(describe(sample, verdict, report),
                                                           indent=1))
    (folder / f"{sample.name}.dis.txt").write_text(disassembly(sample.payload))


def compare(samples, reports, verdicts, out: Path):
    misses, alarms = [], []
    for sample in samples:
        verdict, report = verdicts[sample.index], reports[sample.index]
        if verdict.status in ("not-run", "timeout", "crash") and not verdict.ran_code:
            continue
        flagged = report.max_severity is not None and report.max_severity >= Severity.HIGH
        if verdict.ran_code and not flagged:
            misses.append(sample)
            save(out / "misses", sample, verdict, report)
        elif flagged and not verdict.ran_code:
            alarms.append(sample)
    return misses, alarms


def reason(finding) -> str:
    if finding.rule == DYNAMIC and "bytes" in finding.message:
        return f"{DYNAMIC} (STACK_GLOBAL operand written as STRING or BINSTRING, a str to the " \
            "loaders, read by scan as bytes)"
    return finding.rule


def alarm_reasons(alarms, reports) -> tuple[int, Counter]:
    only_unknown, by_rule = 0, Counter()
    for sample in alarms:
        high = [f for f in reports[sample.index].findings if f.severity >= Severity.HIGH]
        if {f.rule for f in high} == {UNKNOWN}:
            only_unknown += 1
        else:
            by_rule.update({reason(f) for f in high if f.rule != UNKNOWN})
    return only_unknown, by_rule


def run(args, out: Path):
    """Generates, then loads in a child while this process scans; returns the three."""
    started = time.monotonic()
    samples = generate(args.seed, args.files)
    generated = time.monotonic()
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(run_oracle, samples, out / "oracle", timeout=args.timeout,
                             budget_seconds=args.budget_seconds - (generated - started))
        reports = {s.index: scan_bytes(s.data, s.name) for s in samples}
        scanned = time.monotonic()
        verdicts = future.result()
    times = {"generate": generated - started, "scan": scanned - generated,
             "all": time.monotonic() - started}
    return samples, reports, verdicts, times


def summarise(args, samples, reports, verdicts, times, misses, alarms) -> None:
    status = Counter(v.status for v in verdicts.values())
    ran = [s for s in samples if verdicts[s.index].ran_code]
    only_unknown, by_rule = alarm_reasons(alarms, reports)
    loaded = len(samples) - status["not-run"]
    print(f"seed {args.seed}: {len(samples)} files generated in {times['generate']:.1f} s, "
          f"{loaded} loaded ({dict(status)})")
    print(f"ran code: {len(ran)} ({sum(verdicts[s.index].import_only for s in ran)} only by "
          f"importing a module outside the loaders' packages)")
    print(f"missed (ran code, scan < high): {len(misses)} (goal 0)")
    for name, count in Counter(miss_class(s, verdicts[s.index]) for s in misses).most_common():
        print(f"  {count:4d}  {name}")
    meant = sum(s.harmful for s in alarms)
    print(f"false alarms (scan >= high, load harmless): {len(alarms)} ({meant} of them meant "
          f"harm but did none)\n  unknown global that did nothing: {only_unknown}\n  other "
          f"rules (a file counts under each):")
    for rule, count in by_rule.most_common():
        print(f"  {count:4d}  {rule}")
    print(f"timeouts: {status['timeout']}, crashes: {status['crash']}, "
          f"not run (budget): {status['not-run']}")
    print(f"scan: {len(samples) / max(times['scan'], 1e-9):.0f} files/s; whole loop: "
          f"{loaded / times['all']:.1f} files/s ({times['all']:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--budget-seconds", type=float, default=300)
    parser.add_argument("--timeout", type=float, default=10, help="seconds per file")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--regressions", type=Path, default=None,
                        help="copy every missed file here (tests/data/differential)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="differential-"))
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    samples, reports, verdicts, times = run(args, out)
    misses, alarms = compare(samples, reports, verdicts, out)
    for sample in alarms[:25]:
        save(out / "false-alarms", sample, verdicts[sample.index], reports[sample.index])
    for sample in misses:
        verdict = verdicts[sample.index]
        print(f"MISS {sample.name}: {miss_class(sample, verdict)}; scan says "
              f"{reports[sample.index].max_severity}; events {verdict.events[:3]}")
        if args.regressions:  # named after the callable that reached the payload
            args.regressions.mkdir(parents=True, exist_ok=True)
            reached = miss_class(sample, verdict).split(" ")[0]
            shutil.copy(out / "misses" / f"{sample.name}.bin",
                        args.regressions / f"seed{args.seed}-{sample.name}-{reached}.bin")
    summarise(args, samples, reports, verdicts, times, misses, alarms)
    print(f"output: {out}")


if __name__ == "__main__":
    main()
