"""Second-moment memory ablation: AdamW runs that differ only in beta2, and their trajectory geometry.

    python beta2_analysis.py                          # paper: beta2 in {0.99, 0.95, 0.90, 0.80, 0.0}, 4,000 steps each (GPU)
    python beta2_analysis.py --betas 0.99,0.0         # a subset; finished runs are reused
    python beta2_analysis.py --preset tiny            # CPU, a few minutes

Each run is an ordinary train.py run, `<out_dir>/<prefix>beta2_<beta2>_seed<seed>`: the paper schedule
(lr, warmup 1,500, cosine to a 10% floor, wd 0.5, lambda 2 -> 4 at step 4,000, so 2 throughout a
4,000-step run) with only beta2 changed; snapshots every 200 steps plus every 50 in [600, 2000] and
every 100 after, like the SGD controls. The tiny preset shrinks every step count with
`config.exp_steps`. A run that diverges (train.py status "diverged") keeps its snapshots, its
geometry is computed on the ones with finite trunk weights, and the sweep goes on.

Geometry (trunk and per block, uncentered PCA through geometry.py):
  primary  anchor = step 0, the whole run: rows theta(t) - theta(0) for the snapshots on the regular
           200-step grid (and the last usable snapshot), so time is sampled evenly as in the main
           analysis. PC1, k95, k99, drift ||theta(end) - theta(0)||, update alignment
           C(t) = <u, v_b>/||u|| of the 200-step updates u(t) = theta(t) - theta(t - 200), null models.
           (The beta2 table of the original reports PC1/k95/drift most likely this way: from the
           initialization over the whole run.)
  window   [600, 2000] anchored at 600 with every snapshot in it (every 50 steps), as the SGD
           controls (`geometry.window_summary`); `--window START:END` changes it (preset steps).
The table lists the asked-for runs and any other finished run of the same sweep.
Writes `<out>/beta2_seed<seed>.json`, `.csv`, `.png` (`--out`, default `<out_dir>/<prefix>beta2`), and
copies them into `results/beta2/` for the paper preset (or into `--results DIR`).
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os

import torch

from config import Config, Parser, UsageError, add_config_args, fail, make_config
import experiments as ex
from experiments import exp_steps, run_prefix
import geometry as geo
from runs import check_run_dir, read_status
import train

ROOT = os.path.dirname(os.path.abspath(__file__))
PAPER_BETAS = "0.99,0.95,0.90,0.80,0.0"
FORCED = ("beta2", "name", "optimizer")  # set by this script, not on the command line


# ----------------------------------------------------------------------------- config
def parse_floats(text: str, what: str, lo: float, hi: float, hi_open: bool) -> list[float]:
    """Comma-separated numbers in [lo, hi) or [lo, hi], distinct; UsageError otherwise."""
    try:
        vals = [float(x) for x in text.split(",")]
    except ValueError:
        raise UsageError(f"{what} must be comma-separated numbers, got {text!r}")
    for v in vals:
        if not (math.isfinite(v) and lo <= v and (v < hi if hi_open else v <= hi)):
            raise UsageError(f"{what}: {v:g} is outside [{lo:g}, {hi:g}{')' if hi_open else ']'}")
    if len(set(vals)) != len(vals):
        raise UsageError(f"{what} has duplicates: {text!r}")
    return vals


def sweep_config(given: dict, beta2: float) -> Config:
    """The run of one beta2: paper schedule in the preset's steps, then the command line's overrides."""
    bad = sorted(set(given) & set(FORCED))
    if bad:
        raise UsageError(f"--{bad[0]} is set by this script (use --betas)")
    cfg = make_config(**{**ex.control_schedule(given.get("preset", "paper")), **given})
    name = f"{run_prefix(cfg.preset)}beta2_{beta2:g}_seed{cfg.seed}"
    return dataclasses.replace(cfg, beta2=beta2, optimizer="adamw", name=name).validate()


# ----------------------------------------------------------------------------- geometry
def last_finite_step(traj: geo.Trajectory, end: int | None = None) -> int | None:
    """Latest snapshot step (<= end) whose trunk weights are all finite (a diverged run may end in NaN)."""
    from safetensors import safe_open
    for s in reversed([s for s in traj.steps if end is None or s <= end]):
        with safe_open(traj.paths[s], framework="pt") as f:
            if all(torch.isfinite(f.get_tensor(k)).all() for k in traj.groups["trunk"]):
                return s
    return None


def rows_summary(G: torch.Tensor, D: int, null_draws: int) -> dict:
    """PC1, k95, k99, drift of the last row, update alignment and nulls of the rows whose Gram is G
    (the same quantities as geometry.window_summary)."""
    p = geo.pca(G)
    A = geo.rows(G, "increments")
    C = (A @ G @ p.coef(1)[:, 0]) / (A @ G @ A.T).diagonal().clamp(min=1e-300).sqrt()
    out = dict(pc1=p.pc1, k95=p.k95, k99=p.k99, rho=p.rho[:10].tolist(), drift=float(G[-1, -1].sqrt()),
               update_C=C.tolist(), update_abs_C_mean=float(C.abs().mean()), update_C_mean=float(C.mean()),
               null_theory_pc1=None, null_shuffle=None, null_direction=None)
    if G.shape[0] >= 2:  # one row has PC1 = 1 and no null to speak of
        out.update(null_theory_pc1=geo.random_walk_theory(G.shape[0], k=1)["uncentered_T"][0],
                   null_shuffle=geo.shuffle_null(G, null_draws), null_direction=geo.direction_null(G, D, null_draws))
    return out


def run_geometry(run_dir: str, grid: int, window: tuple[int, int], device: str, null_draws: int) -> dict:
    """Primary view (anchor 0, grid rows) and window view of one run, on its finite snapshots."""
    traj = geo.Trajectory(run_dir, anchor=0, device=device)
    last = last_finite_step(traj)
    if not last:
        return dict(last_step=last, primary=None, window=None, note="no finite snapshot after step 0")
    traj = geo.Trajectory(run_dir, anchor=0, end=last, device=device)
    G = geo.group_grams(traj.grams(), traj.groups)
    idx = [i for i, s in enumerate(traj.row_steps) if s % grid == 0 or s == last]
    R = torch.eye(len(traj.row_steps), dtype=torch.float64)[idx]  # selects the grid rows
    primary = dict(anchor=0, end=last, row_steps=[traj.row_steps[i] for i in idx],
                   groups={g: rows_summary(R @ Gg @ R.T, traj.numel(traj.groups[g]), null_draws) for g, Gg in G.items()})
    w0, w1 = window
    w_end = max([s for s in traj.steps if s <= min(w1, last)], default=-1)
    if w0 in traj.paths and len([s for s in traj.steps if w0 < s <= w_end]) >= 2:
        win = geo.window_summary(run_dir, w0, w_end, groups=tuple(traj.groups), device=device, null_draws=null_draws)
        win.pop("definitions")
    else:
        win = dict(note=f"fewer than 2 snapshots in the window [{w0}, {w1}] (last usable step {last})")
    return dict(last_step=last, primary=primary, window=win)


# ----------------------------------------------------------------------------- table and figure
def read_metrics(run_dir: str) -> list[dict]:
    path = os.path.join(run_dir, "metrics.jsonl")
    return [json.loads(l) for l in open(path) if l.strip()] if os.path.exists(path) else []


def finite_or_none(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: finite_or_none(v) for k, v in x.items()}
    if isinstance(x, list):
        return [finite_or_none(v) for v in x]
    return x


def table_row(entry: dict) -> dict:
    """One line of the table from a run's record (trunk values)."""
    m, geo_ = entry["metrics"], entry["geometry"]
    best = max(m, key=lambda r: r["p_ood"] if r["p_ood"] is not None else -1) if m else None
    prim = ((geo_.get("primary") or {}).get("groups") or {}).get("trunk") or {}
    win = (geo_.get("window") or {}).get("groups", {}).get("trunk") or {}
    n_rows = len((geo_.get("primary") or {}).get("row_steps", []))
    return dict(beta2=entry["beta2"], status=entry["status"], last_step=entry["step"],
                final_val=m[-1]["val_loss"] if m and entry["status"] == "complete" else None,
                last_val=m[-1]["val_loss"] if m else None,
                best_p_ood=best["p_ood"] if best else None, best_p_ood_step=best["step"] if best else None,
                n_rows=n_rows, pc1=prim.get("pc1"), k95=prim.get("k95"), k99=prim.get("k99"), drift=prim.get("drift"),
                abs_C=prim.get("update_abs_C_mean"), pc1_null_theory=prim.get("null_theory_pc1"),
                window_pc1=win.get("pc1"), window_k95=win.get("k95"), window_drift=win.get("drift"),
                window_abs_C=win.get("update_abs_C_mean"))


def format_table(rows: list[dict], window) -> str:
    def f(v, fmt):
        return "-" if v is None else format(v, fmt)
    head = (f"{'beta2':>6} {'final val':>13} {'best p_ood':>10} {'rows':>4} {'PC1 %':>6} {'k95':>4} {'drift':>10} {'|C|':>6}"
            f" | window [{window[0]}, {window[1]}]: {'PC1 %':>6} {'k95':>4} {'drift':>9} {'|C|':>6}")
    lines = [head]
    for r in rows:
        val = f(r["final_val"], ".3f") if r["status"] == "complete" else f"{r['status']}@{r['last_step']}"
        lines.append(f"{r['beta2']:>6g} {val:>13} {f(r['best_p_ood'], '.3f'):>10} {r['n_rows']:>4} {f(r['pc1'] and 100 * r['pc1'], '.1f'):>6}"
                     f" {f(r['k95'], 'd'):>4} {f(r['drift'], '.4g'):>10} {f(r['abs_C'], '.3f'):>6}"
                     f" | {'':>{len(f'window [{window[0]}, {window[1]}]:')}} {f(r['window_pc1'] and 100 * r['window_pc1'], '.1f'):>6}"
                     f" {f(r['window_k95'], 'd'):>4} {f(r['window_drift'], '.4g'):>9} {f(r['window_abs_C'], '.3f'):>6}")
    return "\n".join(lines)


def plot(record: dict, path: str):
    """Validation loss and p_ood against step per beta2; PC1, k95, drift, mean |C| against beta2."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    runs, rows = record["runs"], record["table"]
    fig, ax = plt.subplots(2, 3, figsize=(13, 6.5))
    colors = plt.cm.viridis([i / max(1, len(runs) - 1) for i in range(len(runs))])
    first = [r["metrics"][0]["val_loss"] for r in runs if r["metrics"]]
    for r, c in zip(runs, colors):
        st, m = r["status"], [x for x in r["metrics"] if x["val_loss"] is not None]
        lab = f"beta2={r['beta2']:g}" + ("" if st == "complete" else f" ({st})")
        ax[0, 0].plot([x["step"] for x in m], [x["val_loss"] for x in m], color=c, label=lab)
        ax[0, 1].plot([x["step"] for x in r["metrics"]], [x["p_ood"] for x in r["metrics"]], color=c, label=lab)
    vals = [x["val_loss"] for r in runs for x in r["metrics"] if x["val_loss"] is not None]
    if first:  # diverged runs leave the plot at the top
        ax[0, 0].set_ylim(0.95 * min(vals), 1.6 * max(first))
    ax[0, 0].set(xlabel="step", ylabel="validation loss", title="validation loss")
    ax[0, 1].set(xlabel="step", ylabel="p_ood", title="OOD probe accuracy", ylim=(-0.02, 1.02))
    ax[0, 0].legend(fontsize=7)
    xs = list(range(len(rows)))
    ok = [r["status"] == "complete" for r in rows]
    panels = [(ax[0, 2], "pc1", "window_pc1", 100, "PC1 (%)"), (ax[1, 0], "k95", "window_k95", 1, "k95"),
              (ax[1, 1], "drift", "window_drift", 1, "drift"), (ax[1, 2], "abs_C", "window_abs_C", 1, "mean |C| of updates")]
    for a, key, wkey, scale, label in panels:
        for k, style, lab in ((key, "-o", "anchor 0, whole run"), (wkey, "--s", f"window {record['window']}")):
            y = [None if r[k] is None else scale * r[k] for r in rows]
            a.plot(xs, [math.nan if v is None else v for v in y], style, color="k" if k == key else "tab:blue", label=lab, mfc="none")
            bad = [(x, v) for x, v, o in zip(xs, y, ok) if not o and v is not None]
            if bad:
                a.plot(*zip(*bad), "x", color="tab:red", ms=9, label="diverged" if k == key else None)
        a.set_xticks(xs, [f"{r['beta2']:g}" for r in rows])
        a.set(xlabel="beta2", ylabel=label, title=label)
        if key == "drift":
            a.set_yscale("log")
    ax[0, 2].legend(fontsize=7)
    fig.suptitle(f"beta2 ablation ({record['preset']} preset, seed {record['seed']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------- main
def main(argv=None):
    p = add_config_args(Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    p.add_argument("--betas", default=PAPER_BETAS, help=f"comma-separated beta2 values in [0, 1) (default {PAPER_BETAS})")
    p.add_argument("--window", default=None, metavar="START:END",
                   help="second-view window in this preset's steps (default: paper 600:2000, scaled by the preset)")
    p.add_argument("--null_draws", "--null-draws", type=int, default=1000, help="draws per null model (default 1000)")
    p.add_argument("--out", default=None, help="experiment folder (default <out_dir>/<prefix>beta2)")
    p.add_argument("--results", default=None, help="copy JSON/CSV/figure here (default: results/beta2 for the paper preset, nowhere for tiny)")
    ns = p.parse_args(argv)
    given = {k[4:]: v for k, v in vars(ns).items() if k.startswith("cfg_") and v is not None}
    try:
        betas = parse_floats(ns.betas, "--betas", 0.0, 1.0, hi_open=True)
        cfgs = {b: sweep_config(given, b) for b in betas}
        base = next(iter(cfgs.values()))
        e = lambda n: exp_steps(base.preset, n)  # noqa: E731
        try:
            window = tuple(int(x) for x in (ns.window or f"{e(600)}:{e(2000)}").split(":"))
            assert len(window) == 2 and 0 <= window[0] < window[1]
        except (ValueError, AssertionError):
            raise UsageError(f"--window must be START:END with 0 <= START < END, got {ns.window!r}")
        if ns.null_draws < 1:
            raise UsageError("--null_draws must be >= 1")
        # other finished runs of this sweep (the paper's betas) join the table
        for b in parse_floats(PAPER_BETAS, "", 0, 1, True):
            if b not in cfgs:
                cfg = sweep_config(given, b)
                st = read_status(cfg.run_dir) if os.path.exists(os.path.join(cfg.run_dir, "config.json")) else None
                if st and st["status"] != "running":
                    try:
                        check_run_dir(cfg)
                        cfgs[b] = cfg
                    except UsageError:
                        pass  # a folder of another config: not part of this sweep
        for b in betas:  # a folder made with another config stops the sweep before anything is trained
            check_run_dir(cfgs[b])
    except UsageError as err:
        fail(str(err))
    out = ns.out or os.path.join(base.out_dir, f"{run_prefix(base.preset)}beta2")
    results = ns.results or (os.path.join(ROOT, "results", "beta2") if base.preset == "paper" else None)
    device = base.device

    runs = []
    for b in cfgs:  # the order asked for, then the other finished runs
        cfg = cfgs[b]
        print(f"== beta2 = {b:g}: {cfg.run_dir}")
        try:
            st = train.train(cfg)
        except UsageError as err:
            fail(str(err))
        if st["status"] == "diverged":
            print(f"   diverged at step {st['step']} ({st.get('reason', '')}); geometry on its snapshots, sweep goes on")
        try:
            geom = run_geometry(cfg.run_dir, cfg.snapshot_every, window, device, ns.null_draws)
        except UsageError as err:  # e.g. an unreadable snapshot: recorded, and the sweep goes on
            print(f"   no geometry: {err}")
            geom = dict(primary=None, window=None, note=str(err))
        runs.append(dict(beta2=b, run=cfg.run_dir, status=st["status"], step=st["step"], reason=st.get("reason"),
                         config={k: getattr(cfg, k) for k in ("steps", "lr", "beta1", "beta2", "eps", "weight_decay", "warmup",
                                                              "min_lr_frac", "lambda_probe", "lambda_step", "snapshot_every", "snapshot_extra")},
                         metrics=[{k: r.get(k) for k in ("step", "val_loss", "p_in", "p_ood", "lm_loss")} for r in read_metrics(cfg.run_dir)],
                         geometry=geom))
    runs.sort(key=lambda r: -r["beta2"])
    table = [table_row(r) for r in runs]
    record = finite_or_none(dict(
        experiment="beta2", preset=base.preset, seed=base.seed, window=list(window), null_draws=ns.null_draws,
        definitions=dict(
            primary="anchor step 0, whole run: rows theta(t) - theta(0), t on the snapshot_every grid plus the last usable "
                    "snapshot; uncentered PCA; drift = ||theta(end) - theta(0)||; C = <u, v_b>/||u|| for u the "
                    "update between consecutive grid rows",
            window="geometry.window_summary(anchor = window start, every snapshot in (start, end])",
            usable="snapshots with finite trunk weights; a diverged run keeps those it has",
            final_val="validation loss at the last step of a complete run (None for a diverged run; see last_val)",
            table="trunk values; per block in runs[i].geometry"),
        table=table, runs=runs))
    os.makedirs(out, exist_ok=True)
    stem = os.path.join(out, f"beta2_seed{base.seed}")
    with open(stem + ".json", "w") as f:
        json.dump(record, f, indent=1)
    with open(stem + ".csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(table[0]))
        w.writeheader()
        w.writerows(record["table"])
    plot(record, stem + ".png")
    print(format_table(table, window))
    files = [stem + x for x in (".json", ".csv", ".png")]
    files += geo.copy_results(files, results)
    print("wrote " + ", ".join(files))


if __name__ == "__main__":
    main()
