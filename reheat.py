"""Reheating: restart a finished run from its last weights with a fresh AdamW and the doubled probe weight.
Does p_ood come back, and does the model move along the original backbone or across it?

    python reheat.py --run runs/seed42                # paper: lr in {1e-3, 6e-4, 3e-4}, 2,000 steps each (GPU)
    python reheat.py --run runs/seed42 --lrs 6e-4     # one learning rate; finished runs are reused
    python reheat.py --preset tiny                    # CPU: from runs/tiny_seed42 (python train.py --preset tiny)

Each learning rate is an ordinary train.py run, `<out_dir>/<source name>_reheat_lr<lr>` (out_dir defaults
to the source's parent folder): the source run's config with init_from = its snapshot at its last step
(`--step` picks another), fresh optimizer state, the doubled probe weight throughout (the source's late
lambda: 4 in the paper, 1 in the tiny preset, whose weights are 4x smaller), 2,000 steps, linear warmup 200,
cosine to a 10% floor, eval and snapshot every 100 (the tiny preset scales the steps with
`config.exp_steps`). Batches depend on (seed, step), so a reheat run replays the batches of the
source's first steps; the seed cannot change, because it also fixes the codewords and eval sets.

Per run: the p_ood curve, peak p_ood and its step, the first step with p_ood >= 0.60 (`--threshold`),
the final p_ood; and the backbone decomposition of every reheat snapshot against the ORIGINAL run's
backbone, per block and trunk: v_b from the original run's Gram (anchor its step 0, all its snapshots),
a(t) = <theta(t) - theta_orig(0), v_b>, ||r(t)|| = sqrt(||theta(t) - theta_orig(0)||^2 - a(t)^2). It is
computed tensor by tensor from the cross-Gram <theta(t) - theta_orig(0), x_orig(s)> (v_b = X^T c), so
no T x D matrix and no D-vector of v_b is formed.
Writes `<out>/reheat.json`, `.csv`, `.png` (`--out`, default `<out_dir>/<source name>_reheat`) and copies them
into `results/reheat/seed<seed>/` for the paper preset (or into `--results DIR`).
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
from experiments import exp_steps
import geometry as geo
from runs import check_run_dir, read_status, snapshot_path
import train
from beta2_analysis import finite_or_none, last_finite_step, parse_floats, read_metrics

ROOT = os.path.dirname(os.path.abspath(__file__))
PAPER_LRS = "1e-3,6e-4,3e-4"
FORCED = ("lr", "init_from", "name")  # set by this script, not on the command line
LOCATING = ("preset", "seed", "name", "out_dir")  # find the source run; never applied to the reheat runs


def lr_tag(lr: float) -> str:
    """6e-4 -> '6e-4', 1e-3 -> '1e-3', 2.5e-4 -> '2.5e-4'."""
    m, e = f"{lr:e}".split("e")
    return f"{m.rstrip('0').rstrip('.')}e{int(e)}"


# ----------------------------------------------------------------------------- source and configs
def load_source(run: str, step: int | None, given: dict, hint: str) -> tuple[dict, int, str]:
    """(source config dict, source step, snapshot path); UsageError for a missing run or snapshot."""
    cfg_path = os.path.join(run, "config.json")
    if not os.path.isfile(cfg_path):
        raise UsageError(f"source run {run} not found (no config.json); {hint}")
    try:
        known = {f.name for f in dataclasses.fields(Config)}
        src = {k: v for k, v in json.load(open(cfg_path))["config"].items() if k in known}
    except Exception:
        raise UsageError(f"{cfg_path} is unreadable")
    for k in ("preset", "seed"):
        if k in given and given[k] != src.get(k):
            raise UsageError(f"--{k} {given[k]} differs from the source run's {src.get(k)!r}")
    step = src["steps"] if step is None else step
    snap = snapshot_path(run, step)
    if not os.path.isfile(snap):
        sd = os.path.join(run, "snapshots")
        have = sorted(int(f[5:11]) for f in os.listdir(sd) if f.startswith("step_") and f.endswith(".safetensors")) if os.path.isdir(sd) else []
        last = have[-1] if have else None
        why = "finish the run first" if last is None or step > last else "have " + ", ".join(map(str, have[:5])) + (f", ... {last}" if len(have) > 5 else "")
        raise UsageError(f"source run {run} has no snapshot at step {step} (last snapshot: {last if last is not None else 'none'}; {why})")
    return src, step, snap


def reheat_config(src: dict, given: dict, run: str, step: int, snap: str, lr: float, default_step: bool):
    """The source run's config, the reheating protocol in the source preset's steps, then the command line."""
    bad = sorted(set(given) & set(FORCED))
    if bad:
        raise UsageError(f"--{bad[0]} is set by this script (use --lrs, --run, --step)")
    e = lambda n: exp_steps(src["preset"], n)  # noqa: E731
    lam = src["lambda_probe_late"]  # the doubled probe weight: 4 in the paper (the tiny preset scales it down)
    protocol = dict(steps=e(2000), warmup=e(200), eval_every=e(100), snapshot_every=e(100), snapshot_extra="",
                    lambda_probe=lam, lambda_probe_late=lam, lambda_step=0, min_lr_frac=0.1, stop_rule="",
                    data_offset=src.get("data_offset", 0) + step)  # fresh data: the stream after the source's steps
    base = {k: v for k, v in src.items() if k not in ("name", "out_dir", "init_from")}
    extra = {k: v for k, v in given.items() if k not in LOCATING}
    src_name = os.path.basename(os.path.normpath(run))
    name = f"{src_name}_reheat{'' if default_step else f'_from{step}'}_lr{lr_tag(lr)}"
    return make_config(**{**base, **protocol, **extra, "lr": lr, "init_from": snap, "name": name,
                          "out_dir": given.get("out_dir") or os.path.dirname(os.path.normpath(run)) or "."})


# ----------------------------------------------------------------------------- analysis
def reheat_summary(steps, p_ood, threshold: float = 0.60) -> dict:
    """Start, peak (first of equal maxima) and its step, first step with p_ood >= threshold (None if never), final."""
    if not steps:
        return dict(start=None, peak=None, peak_step=None, first_at_threshold=None, final=None, final_step=None)
    i = max(range(len(p_ood)), key=lambda j: (p_ood[j], -j))
    first = next((s for s, p in zip(steps, p_ood) if p >= threshold), None)
    return dict(start=p_ood[0], peak=p_ood[i], peak_step=steps[i], first_at_threshold=first, final=p_ood[-1], final_step=steps[-1])


def backbone_projection(source_run: str, runs: dict[str, str], device="auto") -> dict:
    """Original run's backbone per block and trunk; a(t), ||r(t)|| of its own snapshots and of every
    finite snapshot of `runs` ({name: run_dir}), all measured from the original step 0.

    One pass, tensor by tensor: G = X X^T of the original drift rows and H = Y X^T, |y|^2 of the other
    snapshots' drift y(t) = theta(t) - theta_orig(0); with v_b = X^T c, a = H c and ||r|| = sqrt(|y|^2 - a^2)."""
    src = geo.Trajectory(source_run, anchor=0, device=device)
    end = last_finite_step(src)
    if not end:
        raise UsageError(f"{source_run} has no finite snapshot after step 0")
    src = geo.Trajectory(source_run, anchor=0, end=end, device=device)
    keys = src.groups["trunk"]
    others = {}
    for name, rd in runs.items():
        t = geo.Trajectory(rd, anchor=0, device=device)
        if any(t.shapes.get(k) != src.shapes[k] for k in keys):
            raise UsageError(f"{rd}: trunk tensors do not match the source run {source_run}")
        last = last_finite_step(t)
        others[name] = (t, [s for s in t.steps if last is not None and s <= last])
    G, H, N = {}, {n: {} for n in others}, {n: {} for n in others}
    for k in keys:
        x0 = src.load(0, [k])[k].reshape(-1).double()
        X = src.drift(k)  # (T x n_k) rows of the original run
        G[k] = (X @ X.T).cpu()
        for n, (t, steps) in others.items():
            Hk, Nk = [], []
            for s in steps:
                y = t.load(s, [k])[k].reshape(-1).double() - x0
                Hk.append(X @ y)
                Nk.append(y @ y)
            H[n][k] = torch.stack(Hk).cpu() if Hk else torch.zeros(0, X.shape[0], dtype=torch.float64)
            N[n][k] = torch.stack(Nk).cpu() if Nk else torch.zeros(0, dtype=torch.float64)
    groups = src.groups
    Gg = geo.group_grams(G, groups)
    out = dict(source=dict(run=source_run, anchor=0, row_steps=src.row_steps, groups={}), runs={})
    coef = {}
    for g, Gm in Gg.items():
        p = geo.pca(Gm)
        coef[g] = p.coef(1)[:, 0]
        d = geo.decompose(Gm, coef[g])
        out["source"]["groups"][g] = dict(pc1=p.pc1, k95=p.k95, a=d["a"], r=d["r"], norm=d["norm"])
    for n, (t, steps) in others.items():
        Hg, Ng = geo.group_grams(H[n], groups), geo.group_grams(N[n], groups)
        res = {}
        for g in groups:
            a = geo.project(Hg[g], coef[g])
            res[g] = dict(a=a.tolist(), r=(Ng[g] - a**2).clamp(min=0).sqrt().tolist(), norm=Ng[g].sqrt().tolist())
        out["runs"][n] = dict(run=t.run_dir, steps=steps, groups=res)
    return out


# ----------------------------------------------------------------------------- figure
def plot(record: dict, path: str, group: str = "trunk"):
    """p_ood of the original run (grey) then of each reheat run; a(t) and ||r(t)|| of `group` below."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    s0 = record["source"]["step"]
    proj = record["projection"]
    fig, ax = plt.subplots(3, 1, figsize=(9, 8.5), sharex=True, gridspec_kw=dict(height_ratios=[1.3, 1, 1]))
    sm = record["source"]["metrics"]
    ax[0].plot([m["step"] for m in sm], [m["p_ood"] for m in sm], color="grey", label="original run")
    src_g = proj["source"]["groups"][group]
    rs = [0] + proj["source"]["row_steps"]
    ax[1].plot(rs, [0.0] + src_g["a"], color="grey")
    ax[2].plot(rs, [0.0] + src_g["r"], color="grey")
    for r, c in zip(record["runs"], ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]):
        lab = f"lr {lr_tag(r['lr'])}" + ("" if r["status"] == "complete" else f" ({r['status']})")
        ax[0].plot([s0 + m["step"] for m in r["metrics"]], [m["p_ood"] for m in r["metrics"]], color=c, label=lab)
        pr = proj["runs"].get(r["name"])
        if pr:
            ax[1].plot([s0 + s for s in pr["steps"]], pr["groups"][group]["a"], color=c)
            ax[2].plot([s0 + s for s in pr["steps"]], pr["groups"][group]["r"], color=c)
    for a in ax:
        a.axvspan(0, s0, color="0.93", zorder=0)
        a.axvline(s0, color="0.5", lw=0.8, ls="--")
    ax[0].axhline(record["threshold"], color="0.6", lw=0.8, ls=":")
    ax[0].set(ylabel="p_ood", ylim=(-0.02, 1.02),
              title=f"reheating from step {s0} of {os.path.basename(os.path.normpath(record['source']['run']))} (grey: original training)")
    ax[0].legend(fontsize=8, loc="upper left")
    ax[1].set(ylabel=f"a(t) ({group})")
    ax[2].set(ylabel=f"||r(t)|| ({group})", xlabel="step (reheat steps after the source step)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------- main
def main(argv=None):
    p = add_config_args(Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    p.add_argument("--run", default=None, help="source run folder (default: the run train.py makes with --preset/--seed/--out_dir)")
    p.add_argument("--step", type=int, default=None, help="source snapshot to start from (default: the run's last step)")
    p.add_argument("--lrs", default=PAPER_LRS, help=f"comma-separated peak learning rates (default {PAPER_LRS})")
    p.add_argument("--threshold", type=float, default=0.60, help="p_ood level whose first crossing is reported (default 0.60)")
    p.add_argument("--out", default=None, help="experiment folder (default <out_dir>/<source name>_reheat)")
    p.add_argument("--results", default=None, help="copy JSON/CSV/figure here (default: results/reheat/seed<seed> for the paper preset, nowhere for tiny)")
    ns = p.parse_args(argv)
    given = {k[4:]: v for k, v in vars(ns).items() if k.startswith("cfg_") and v is not None}
    try:
        lrs = parse_floats(ns.lrs, "--lrs", 0.0, math.inf, hi_open=True)
        if 0.0 in lrs:
            raise UsageError("--lrs: learning rates must be > 0")
        if not 0.0 <= ns.threshold <= 1.0:
            raise UsageError(f"--threshold must be in [0, 1], got {ns.threshold:g}")
        located = make_config(**{k: given[k] for k in LOCATING if k in given})
        run = os.path.normpath(ns.run or located.run_dir)
        hint = "train it first: python train.py" + "".join(f" --{k} {given[k]}" for k in LOCATING if k in given)
        src, step, snap = load_source(run, ns.step, given, hint if ns.run is None else "train it first with train.py")
        default_step = ns.step is None or ns.step == src["steps"]
        cfgs = {lr: reheat_config(src, given, run, step, snap, lr, default_step) for lr in lrs}
        for cfg in cfgs.values():  # a folder made with another config stops before anything is trained
            check_run_dir(cfg)
        for lr in parse_floats(PAPER_LRS, "", 0, math.inf, True):  # other finished runs of this experiment join the table
            cfg = reheat_config(src, given, run, step, snap, lr, default_step)
            if lr not in cfgs and os.path.exists(os.path.join(cfg.run_dir, "config.json")):
                st = read_status(cfg.run_dir)
                try:
                    if st and st["status"] != "running" and check_run_dir(cfg) is not None:
                        cfgs[lr] = cfg
                except UsageError:
                    pass  # a folder of another config: not part of this experiment
    except UsageError as err:
        fail(str(err))
    base = next(iter(cfgs.values()))
    src_name = os.path.basename(os.path.normpath(run))
    out = ns.out or os.path.join(base.out_dir, f"{src_name}_reheat" + ("" if default_step else f"_from{step}"))
    results = ns.results or (os.path.join(ROOT, "results", "reheat", f"seed{src['seed']}") if src["preset"] == "paper" else None)

    statuses = {}
    for lr, cfg in cfgs.items():
        print(f"== reheat lr {lr_tag(lr)}: {cfg.run_dir} (from {snap})")
        try:
            statuses[lr] = train.train(cfg)
        except UsageError as err:
            fail(str(err))
    try:
        proj = backbone_projection(run, {cfg.name: cfg.run_dir for cfg in cfgs.values()}, base.device)
    except UsageError as err:
        fail(str(err))

    runs, table = [], []
    for lr, cfg in sorted(cfgs.items(), key=lambda x: -x[0]):
        m = [{k: r.get(k) for k in ("step", "lr", "val_loss", "p_in", "p_ood")} for r in read_metrics(cfg.run_dir)]
        summ = reheat_summary([r["step"] for r in m], [r["p_ood"] for r in m], ns.threshold)
        tr = proj["runs"][cfg.name]["groups"]["trunk"]
        st = statuses[lr]
        runs.append(dict(lr=lr, name=cfg.name, run=cfg.run_dir, status=st["status"], step=st["step"], reason=st.get("reason"),
                         metrics=m, summary=summ))
        table.append(dict(lr=lr, status=st["status"], start_p_ood=summ["start"], peak_p_ood=summ["peak"], peak_step=summ["peak_step"],
                          first_step_at_threshold=summ["first_at_threshold"], final_p_ood=summ["final"], final_step=summ["final_step"],
                          final_val=m[-1]["val_loss"] if m else None,
                          a_start=tr["a"][0] if tr["a"] else None, a_end=tr["a"][-1] if tr["a"] else None,
                          r_start=tr["r"][0] if tr["r"] else None, r_max=max(tr["r"], default=None), r_end=tr["r"][-1] if tr["r"] else None))
    sm = read_metrics(run)
    record = finite_or_none(dict(
        experiment="reheat", preset=src["preset"], seed=src["seed"], threshold=ns.threshold,
        source=dict(run=run, step=step, snapshot=snap, metrics=[{k: r.get(k) for k in ("step", "val_loss", "p_in", "p_ood")} for r in sm],
                    best_p_ood=max((r["p_ood"] for r in sm), default=None)),
        protocol={k: getattr(base, k) for k in ("steps", "warmup", "min_lr_frac", "lambda_probe", "lambda_probe_late", "lambda_step",
                                                "eval_every", "snapshot_every", "beta1", "beta2", "weight_decay")},
        definitions=dict(
            steps="reheat steps (0 = the source snapshot); add source.step for the original run's clock",
            peak="largest p_ood over the reheat evals (step 0 included; first of equal maxima)",
            first_step_at_threshold="first reheat eval step with p_ood >= threshold, None if never",
            v_b="first right singular vector of the original run's drift rows theta(t) - theta(0) over all its snapshots (uncentered), sign a(end) > 0; per block and trunk",
            a="<theta(t) - theta_orig(0), v_b>", r="sqrt(||theta(t) - theta_orig(0)||^2 - a^2)",
            table="trunk a and ||r|| over the reheat snapshots; per block in projection"),
        table=table, runs=runs, projection=proj))
    os.makedirs(out, exist_ok=True)
    stem = os.path.join(out, "reheat")
    with open(stem + ".json", "w") as f:
        json.dump(record, f, indent=1)
    with open(stem + ".csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(table[0]))
        w.writeheader()
        w.writerows(record["table"])
    plot(record, stem + ".png")

    def f(v, fmt):
        return "-" if v is None else format(v, fmt)
    print(f"source {run} step {step}: p_ood {f(table[0]['start_p_ood'], '.3f')} (best during training {f(record['source']['best_p_ood'], '.3f')})")
    print(f"{'lr':>7} {'peak p_ood':>10} {'at step':>7} {'first >= ' + format(ns.threshold, '.2f'):>12} {'final':>6} {'status':>9}"
          f" | trunk: {'a start':>8} {'a end':>8} {'|r| start':>9} {'|r| max':>8} {'|r| end':>8}")
    for r in record["table"]:
        print(f"{lr_tag(r['lr']):>7} {f(r['peak_p_ood'], '.3f'):>10} {f(r['peak_step'], 'd'):>7} {f(r['first_step_at_threshold'], 'd'):>12}"
              f" {f(r['final_p_ood'], '.3f'):>6} {r['status']:>9} |        {f(r['a_start'], '.4g'):>8} {f(r['a_end'], '.4g'):>8}"
              f" {f(r['r_start'], '.4g'):>9} {f(r['r_max'], '.4g'):>8} {f(r['r_end'], '.4g'):>8}")
    files = [stem + x for x in (".json", ".csv", ".png")]
    files += geo.copy_results(files, results)
    print("wrote " + ", ".join(files))


if __name__ == "__main__":
    main()
