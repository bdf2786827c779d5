"""Copy the small outputs of finished runs into results/<version>/, one folder per experiment, with
provenance.

    python collect_results.py --runs runs --version v1 --date 2026-12-01 --bench bench.txt \
        --stages stages.json

Layout written (only what exists is copied; snapshots and optimizer states never are):

    results/<version>/seed<N>/            config.json metrics.jsonl status.json log.txt analysis/*.json *.png
    results/<version>/sgd_control/        sgd_control.*, sgd_nesterov.json, sgd_matched_valloss.*
      runs/sgd_<X>_seed<N>/               config.json metrics.jsonl status.json log.txt analysis/*.json
    results/<version>/beta2/              beta2_seed<N>.*   runs/beta2_<b>_seed<N>/ (as above)
    results/<version>/reheat/seed<N>/     reheat.*          runs/seed<N>_reheat_lr<x>/ (as above)
    results/<version>/bench/              bench.json bench.md (parsed from the stdout of bench.py, --bench)

Each experiment folder gets provenance.json: git commit and dirty flag, torch, CUDA and device of the runs
(from their config.json), the date, the corpus, and the commands with their wall times (--stages: a JSON
object {folder: [{"command": ..., "wall_s": ...}, ...]}, folder as in the layout, e.g. "seed42").
A seed's existing folder is replaced, so a re-collect after new runs gives the same layout; in a folder
of several runs (sgd_control, beta2, reheat) only the runs and files collected again are replaced, and
the runs of another part of the plan collected there earlier stay, their provenance under "earlier".
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import re
import shutil
from common import write_json
from config import Parser, fail

RUN_FILES = ("config.json", "metrics.jsonl", "status.json", "log.txt")
SMALL = (".json", ".csv", ".png", ".jsonl", ".txt", ".md")
# trajectory records (runs.RECORD_FILE and the optimizer nulls' records): small safetensors that travel, so that
# every trajectory number can be recomputed from results/ (snapshots and direction files never do)
RECORDS = re.compile(r"^(trajectory_record|optimizer_null_s\d+)\.safetensors$")
MAX_BYTES = 2_000_000  # a results file larger than this is not a small file: refuse it


def copy_small(src: str, dst_dir: str) -> str | None:
    if not os.path.isfile(src) or not (src.endswith(SMALL) or RECORDS.match(os.path.basename(src))):
        return None
    if os.path.getsize(src) > MAX_BYTES:
        fail(f"{src} is {os.path.getsize(src):,} bytes: not a small result file")
    os.makedirs(dst_dir, exist_ok=True)
    return shutil.copy2(src, os.path.join(dst_dir, os.path.basename(src)))


def copy_run(run: str, dst: str) -> list[str]:
    """A run folder's records (never snapshots or states): config, metrics, status, log, analysis files."""
    out = [copy_small(os.path.join(run, f), dst) for f in RUN_FILES]
    out += [
        copy_small(f, os.path.join(dst, "analysis"))
        for f in sorted(glob.glob(os.path.join(run, "analysis", "*")))
    ]
    return [p for p in out if p]


def env_of(runs: list[str]) -> dict:
    """Commit, versions and device of the runs (the first config.json that has them); all runs must agree."""
    envs = []
    for r in runs:
        p = os.path.join(r, "config.json")
        if os.path.exists(p):
            d = json.load(open(p))
            envs.append({**d.get("env", {}), "corpus": d.get("corpus")})
    commits = {e.get("git_commit") for e in envs}
    if len(commits) > 1:
        fail(f"runs {runs} come from different commits {sorted(map(str, commits))}: collect them separately")
    return envs[0] if envs else {}


def provenance(folder: str, runs: list[str], files: list[str], stages: dict, date: str, dest: str) -> dict:
    env = env_of(runs)
    return {
        "git_commit": env.get("git_commit"),
        "git_dirty": env.get("git_dirty"),
        "device_name": env.get("device_name"),
        "torch": env.get("torch"),
        "cuda": env.get("cuda"),
        "python": env.get("python"),
        "date": date,
        "corpus": env.get("corpus"),
        "stages": stages.get(folder, []),
        "source_runs": [os.path.basename(r.rstrip("/")) for r in runs],
        "files": sorted(os.path.relpath(f, dest) for f in files),
    }


def clear_for(out: str, spec: dict) -> list[dict]:
    """Make room in the results folder `out` for a collect of `spec`; returns the provenance of the
    earlier collects whose runs stay there.

    A seed's folder holds one run: it is replaced whole. A folder of several runs (sgd_control,
    beta2, reheat/seed<N>) is filled by several parts of the results plan (the controls and Table 9
    both write sgd_control), which may run on different machines: only the run folders and the
    experiment files that this collect copies again are replaced, and the other parts' runs and files
    stay, their provenance kept under "earlier"."""
    if not os.path.isdir(out):
        return []
    if spec.get("main"):
        shutil.rmtree(out)
        return []
    new_runs = {os.path.basename(r.rstrip("/")) for r in spec["runs"]}
    for name in new_runs:
        if os.path.isdir(os.path.join(out, "runs", name)):
            shutil.rmtree(os.path.join(out, "runs", name))
    for f in spec["records"]:
        if os.path.isfile(os.path.join(out, os.path.basename(f))):
            os.remove(os.path.join(out, os.path.basename(f)))
    try:
        old = json.load(open(os.path.join(out, "provenance.json")))
    except (OSError, ValueError):
        return []
    latest = {k: v for k, v in old.items() if k != "earlier"}
    earlier = []
    for e in [latest, *old.get("earlier", [])]:
        kept = [r for r in e.get("source_runs", []) if r not in new_runs]
        if kept:
            earlier.append(dict(e, source_runs=kept))
    return earlier


def strip_preset(name: str) -> str:
    """Run folder name without the preset prefix (`tiny_seed42` -> `seed42`): results go by experiment."""
    return name[len("tiny_") :] if name.startswith("tiny_") else name


def experiment_folders(runs_dir: str) -> dict[str, dict]:
    """{results folder: {"records": [files/dirs copied flat], "runs": [run folders copied under runs/]}}."""
    out: dict[str, dict] = {}
    names = sorted(os.listdir(runs_dir)) if os.path.isdir(runs_dir) else []
    for full in names:
        path, name = os.path.join(runs_dir, full), strip_preset(full)
        if re.fullmatch(r"seed\d+(_wd0)?", name):  # a seed's run and its twin without weight decay
            out.setdefault(name, {"records": [], "runs": [], "main": path})
        elif re.fullmatch(r"sgd_[\w.]+_seed\d+", name):
            out.setdefault("sgd_control", {"records": [], "runs": []})["runs"].append(path)
        elif re.fullmatch(r"beta2_[\d.]+_seed\d+", name):
            out.setdefault("beta2", {"records": [], "runs": []})["runs"].append(path)
        elif m := re.fullmatch(r"(seed\d+)_reheat_lr[\w.-]+", name):
            out.setdefault(f"reheat/{m.group(1)}", {"records": [], "runs": []})["runs"].append(path)
    for full in names:
        path, name = os.path.join(runs_dir, full), strip_preset(full)
        if name in ("sgd_control", "beta2") and os.path.isdir(path):
            out.setdefault(name, {"records": [], "runs": []})["records"] = sorted(
                glob.glob(os.path.join(path, "*"))
            )
    for d in sorted(glob.glob(os.path.join(runs_dir, "*seed*_reheat"))):
        seed = strip_preset(os.path.basename(d))[: -len("_reheat")]
        out.setdefault(f"reheat/{seed}", {"records": [], "runs": []})["records"] = sorted(
            glob.glob(os.path.join(d, "*"))
        )
    return out


def parse_bench(text: str) -> dict:
    """The table that bench.py prints: header line 'preset ...: ..., device NAME', then vocab rows."""
    head = re.search(r"preset (\w+): batch (\d+) x (\d+) x (\d+) tokens, compile=(\w+), device (.+)", text)
    if not head:
        fail("bench output: no 'preset ...: batch ... device ...' line (is it the stdout of bench.py?)")
    rows = []
    for line in text.splitlines():
        m = re.fullmatch(
            r"\s*(\d+)\s+([\d,]+)\s+([\d.]+)\s+([\d,]+)\s+([\d.]+|-)\s+([\d.]+%|-)\s+([\d.]+|-)\s*", line
        )
        if m:
            num = lambda s: None if s == "-" else float(s.rstrip("%").replace(",", ""))  # noqa: E731
            rows.append(
                {
                    "vocab": int(m.group(1)),
                    "params": int(m.group(2).replace(",", "")),
                    "ms_per_step": num(m.group(3)),
                    "tok_per_s": num(m.group(4)),
                    "tflops": num(m.group(5)),
                    "mfu_pct": num(m.group(6)),
                    "mem_gib": num(m.group(7)),
                }
            )
    if not rows:
        fail("bench output: no table rows")
    return {
        "preset": head.group(1),
        "batch_size": int(head.group(2)),
        "grad_accum": int(head.group(3)),
        "ctx": int(head.group(4)),
        "compile": head.group(5) == "True",
        "device_name": head.group(6).strip(),
        "rows": rows,
    }


def bench_markdown(b: dict) -> str:
    lines = [
        f"bench.py, preset {b['preset']}: batch {b['batch_size']} x {b['grad_accum']} x {b['ctx']} tokens, "
        f"compile={b['compile']}, {b['device_name']}",
        "",
        "| vocab | params | ms/step | tok/s | TFLOP/s | MFU % | mem GiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in b["rows"]:
        lines.append(
            f"| {r['vocab']} | {r['params']:,} | {r['ms_per_step']} | {r['tok_per_s']:,.0f} | "
            f"{r['tflops']} | "
            f"{r['mfu_pct']} | {r['mem_gib']} |"
        )
    return "\n".join(lines) + "\n"


def collect(
    runs_dir: str, dest: str, stages: dict | None = None, date: str = "", bench_text: str | None = None
) -> list[str]:
    """Copy every recognised experiment of `runs_dir` into `dest` (results/<version>); returns the folders."""
    stages, done = stages or {}, []
    for folder, spec in experiment_folders(runs_dir).items():
        out = os.path.join(dest, folder)
        earlier = clear_for(out, spec)
        files = copy_run(spec["main"], out) if spec.get("main") else []
        files += [p for p in (copy_small(f, out) for f in spec["records"]) if p]
        for r in spec["runs"]:
            files += copy_run(r, os.path.join(out, "runs", os.path.basename(r)))
        runs = ([spec["main"]] if spec.get("main") else []) + spec["runs"]
        prov = provenance(folder, runs, files, stages, date, out)
        if earlier:
            prov["earlier"] = earlier
        write_json(os.path.join(out, "provenance.json"), prov)
        done.append(folder)
    if bench_text is not None:
        out = os.path.join(dest, "bench")
        os.makedirs(out, exist_ok=True)
        b = parse_bench(bench_text)
        write_json(os.path.join(out, "bench.json"), b)
        open(os.path.join(out, "bench.md"), "w").write(bench_markdown(b))
        env = next(
            (
                env_of([os.path.join(runs_dir, f)])
                for f in ("seed42",)
                if os.path.isdir(os.path.join(runs_dir, f))
            ),
            {},
        )
        prov = {
            "git_commit": env.get("git_commit"),
            "git_dirty": env.get("git_dirty"),
            "device_name": b["device_name"],
            "torch": env.get("torch"),
            "cuda": env.get("cuda"),
            "date": date,
            "stages": stages.get("bench", []),
            "files": ["bench.json", "bench.md"],
        }
        write_json(os.path.join(out, "provenance.json"), prov)
        done.append("bench")
    return done


def main(argv=None):
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", default="runs", help="folder holding the run folders (runs/<name>/)")
    p.add_argument("--results", default="results", help="results root")
    p.add_argument("--version", required=True, help="corpus version folder, e.g. v1")
    p.add_argument("--date", default="", help="date of the runs (YYYY-MM-DD), recorded in provenance.json")
    p.add_argument("--bench", default=None, help="a file with the stdout of bench.py")
    p.add_argument(
        "--stages", default=None, help="JSON {folder: [{command, wall_s}, ...]} for provenance.json"
    )
    ns = p.parse_args(argv)
    if not re.fullmatch(r"v\d+", ns.version):
        fail(f"--version {ns.version!r}: expected v<N> (the corpus version)")
    if ns.date:
        try:
            datetime.date.fromisoformat(ns.date)
        except ValueError:
            fail(f"--date {ns.date!r}: expected a date YYYY-MM-DD")
    if not os.path.isdir(ns.runs):
        fail(f"--runs {ns.runs}: not a folder")
    if not experiment_folders(ns.runs) and ns.bench is None:
        fail(
            f"--runs {ns.runs}: no run folders of a known experiment "
            "(seed<N>, sgd_*, beta2_*, seed<N>_reheat*)"
        )
    for f in (ns.bench, ns.stages):
        if f and not os.path.isfile(f):
            fail(f"{f}: no such file")
    try:
        stages = json.load(open(ns.stages)) if ns.stages else {}
    except json.JSONDecodeError as e:
        fail(f"--stages {ns.stages}: not JSON ({e})")
    bench_text = open(ns.bench).read() if ns.bench else None
    if bench_text is not None:
        parse_bench(bench_text)  # bad bench output fails before anything is written
    dest = os.path.join(ns.results, ns.version)
    for folder in collect(ns.runs, dest, stages, ns.date, bench_text):
        print(f"{os.path.join(dest, folder)}")


if __name__ == "__main__":
    main()
