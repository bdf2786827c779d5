"""Reheating: restart a finished run from its last weights with a fresh AdamW and the doubled probe
weight. Does p_ood come back, and does the model move along the original backbone or across it?

    python reheat.py --run runs/seed42  # paper: lr in {1e-3, 6e-4, 3e-4}, 2,000 steps each (GPU)
    python reheat.py --run runs/seed42 --lrs 6e-4     # one learning rate; finished runs are reused
    python reheat.py --preset tiny  # CPU: from runs/tiny_seed42 (python train.py --preset tiny)

Each learning rate is an ordinary train.py run, `<out_dir>/<source name>_reheat_lr<lr>` (out_dir
defaults to the source's parent folder): the source run's config with init_from = its snapshot at
its last step (`--step` picks another), fresh optimizer state, the doubled probe weight throughout
(the source's late
lambda: 4 in the paper, 1 in the tiny preset, whose weights are 4x smaller), 2,000 steps, linear
        warmup 200,
cosine to a 10% floor, eval and snapshot every 100 (the tiny preset scales the steps with
`experiments.exp_steps`; the plan is experiments.REHEAT). Batches depend on (seed, step
+ data_offset): a reheat run continues the source's data stream where the source stopped
  (data_offset = the source's
step), so it sees fresh batches rather than a replay; the seed cannot change, because it also fixes
the codewords and eval sets.

Per run: the p_ood curve, peak p_ood and its step, the first step with p_ood >= 0.60
(`--threshold`), the final p_ood; and the backbone decomposition of every reheat snapshot against
the ORIGINAL run's backbone, per block and trunk: v_b from the original run's Gram (anchor its step
0, all its snapshots), a(t) = <theta(t) - theta_orig(0), v_b>, ||r(t)|| = sqrt(||theta(t)
- theta_orig(0)||^2 - a(t)^2). It is computed tensor by tensor from the cross-Gram <theta(t)
  - theta_orig(0), x_orig(s)> (v_b = X^T c), so
no T x D matrix and no D-vector of v_b is formed.
Writes `<out>/reheat.json`, `.csv`, `.png` (`--out`, default `<out_dir>/<source name>_reheat`) and
copies them into `results/reheat/seed<seed>/` for the paper preset (or into `--results DIR`).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

import torch

import experiments as ex
import geometry as geo
import train
from common import (
    cli,
    copy_results,
    fmt,
    format_table,
    parse_floats,
    pyplot,
    save_figure,
    write_csv,
    write_result,
)
from config import Parser, UsageError, add_config_args, given_overrides, make_config
from runs import (
    Trajectory,
    check_run_dir,
    last_finite_step,
    list_snapshots,
    read_metrics,
    read_record,
    same_finished_run,
    snapshot_path,
)

# find the source run; never applied to the reheat runs
LOCATING = ("preset", "seed", "name", "out_dir")


def lr_tag(lr: float) -> str:
    """6e-4 -> '6e-4', 1e-3 -> '1e-3', 2.5e-4 -> '2.5e-4'."""
    m, e = f"{lr:e}".split("e")
    return f"{m.rstrip('0').rstrip('.')}e{int(e)}"


PAPER_LRS = ",".join(map(lr_tag, ex.REHEAT_LRS))


# ----------------------------------------------------------------------------- source and configs
def load_source(run: str, step: int | None, given: dict, hint: str) -> tuple[dict, int, str]:
    """(source config dict, source step, snapshot path); UsageError for a missing run or
    snapshot."""
    rec = read_record(run)
    if rec is None:
        raise UsageError(f"source run {run} not found (no readable config.json); {hint}")
    src = rec["config"]
    for k in ("preset", "seed"):
        if k in given and given[k] != src.get(k):
            raise UsageError(f"--{k} {given[k]} differs from the source run's {src.get(k)!r}")
    step = src["steps"] if step is None else step
    snap = snapshot_path(run, step)
    if not os.path.isfile(snap):
        have = sorted(list_snapshots(run))
        last = have[-1] if have else None
        why = ("finish the run first" if last is None or step > last else
               "have " + ", ".join(map(str, have[:5])) + (f", ... {last}" if len(have) > 5 else ""))
        raise UsageError(f"source run {run} has no snapshot at step {step} "
                         f"(last snapshot: {last if last is not None else 'none'}; {why})")
    return src, step, snap


def reheat_config(src: dict, given: dict, run: str, step: int, snap: str, lr: float,
                  default_step: bool):
    """The source run's config, the reheating protocol in the source preset's steps, the command
    line, then the fields the experiment fixes (lr from --lrs, init_from and name from
    --run/--step)."""
    # the doubled probe weight: 4 in the paper (the tiny preset scales it down)
    lam = src["lambda_probe_late"]
    protocol = ex.reheat_protocol(src["preset"], lam, src.get("data_offset", 0) + step)
    base = {k: v for k, v in src.items() if k not in ("name", "out_dir", "init_from")}
    src_name = os.path.basename(os.path.normpath(run))
    fixed = dict(
        lr=lr,
        init_from=snap,
        name=f"{src_name}_reheat{'' if default_step else f'_from{step}'}_lr{lr_tag(lr)}",
    )
    extra = {k: v for k, v in given.items() if k not in LOCATING}
    out_dir = given.get("out_dir") or os.path.dirname(os.path.normpath(run)) or "."
    return ex.experiment_config(extra, fixed, {**base, **protocol, "out_dir": out_dir},
                                why="set by --lrs, --run, --step")


# ----------------------------------------------------------------------------- analysis
def reheat_summary(steps, p_ood, threshold: float = 0.60) -> dict:
    """Start, peak (first of equal maxima) and its step, first step with p_ood >= threshold (None if
    never), final."""
    if not steps:
        return dict(start=None, peak=None, peak_step=None, first_at_threshold=None, final=None,
                    final_step=None)
    i = max(range(len(p_ood)), key=lambda j: (p_ood[j], -j))
    first = next((s for s, p in zip(steps, p_ood) if p >= threshold), None)
    return dict(start=p_ood[0], peak=p_ood[i], peak_step=steps[i], first_at_threshold=first,
                final=p_ood[-1], final_step=steps[-1])


def backbone_projection(source_run: str, runs: dict[str, str], device="auto") -> dict:
    """Original run's backbone per block and trunk; a(t), ||r(t)|| of its own snapshots and of every
    finite snapshot of `runs` ({name: run_dir}), all measured from the original step 0.

    One pass, tensor by tensor: G = X X^T of the original drift rows and H = Y X^T, |y|^2 of
    the other snapshots' drift y(t) = theta(t) - theta_orig(0); with v_b = X^T c, a = H c and ||r||
    = sqrt(|y|^2 - a^2)."""
    src = Trajectory(source_run, anchor=0, device=device)
    end = last_finite_step(src.paths, src.groups["trunk"])
    if not end:
        raise UsageError(f"{source_run} has no finite snapshot after step 0")
    src = Trajectory(source_run, anchor=0, end=end, device=device)
    keys = src.groups["trunk"]
    others = {}
    for name, rd in runs.items():
        t = Trajectory(rd, anchor=0, device=device)
        if any(t.shapes.get(k) != src.shapes[k] for k in keys):
            raise UsageError(f"{rd}: trunk tensors do not match the source run {source_run}")
        last = last_finite_step(t.paths, t.groups["trunk"])
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
            H[n][k] = torch.stack(Hk).cpu() if Hk else torch.zeros(0, X.shape[0],
                                                                   dtype=torch.float64)
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
            res[g] = dict(a=a.tolist(), r=(Ng[g] - a ** 2).clamp(min=0).sqrt().tolist(),
                          norm=Ng[g].sqrt().tolist())
        out["runs"][n] = dict(run=t.run_dir, steps=steps, groups=res)
    return out


# ----------------------------------------------------------------------------- figure
def plot(record: dict, path: str, group: str = "trunk"):
    """p_ood of the original run (grey) then of each reheat run; a(t) and ||r(t)|| of `group`
    below."""
    plt = pyplot()
    s0 = record["source"]["step"]
    proj = record["projection"]
    fig, ax = plt.subplots(3, 1, figsize=(9, 8.5), sharex=True,
                           gridspec_kw=dict(height_ratios=[1.3, 1, 1]))
    sm = record["source"]["metrics"]
    ax[0].plot([m["step"] for m in sm], [m["p_ood"] for m in sm], color="grey",
               label="original run")
    src_g = proj["source"]["groups"][group]
    rs = [0] + proj["source"]["row_steps"]
    ax[1].plot(rs, [0.0] + src_g["a"], color="grey")
    ax[2].plot(rs, [0.0] + src_g["r"], color="grey")
    for r, c in zip(record["runs"],
                    ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]):
        lab = f"lr {lr_tag(r['lr'])}" + ("" if r["status"] == "complete" else f" ({r['status']})")
        ax[0].plot([s0 + m["step"] for m in r["metrics"]], [m["p_ood"] for m in r["metrics"]],
                   color=c, label=lab)
        pr = proj["runs"].get(r["name"])
        if pr:
            ax[1].plot([s0 + s for s in pr["steps"]], pr["groups"][group]["a"], color=c)
            ax[2].plot([s0 + s for s in pr["steps"]], pr["groups"][group]["r"], color=c)
    for a in ax:
        a.axvspan(0, s0, color="0.93", zorder=0)
        a.axvline(s0, color="0.5", lw=0.8, ls="--")
    ax[0].axhline(record["threshold"], color="0.6", lw=0.8, ls=":")
    ax[0].set(
        ylabel="p_ood",
        ylim=(-0.02, 1.02),
        title=(
            f"reheating from step {s0} of"
            f" {os.path.basename(os.path.normpath(record['source']['run']))} (grey: original"
            " training)"
        ),
    )
    ax[0].legend(fontsize=8, loc="upper left")
    ax[1].set(ylabel=f"a(t) ({group})")
    ax[2].set(ylabel=f"||r(t)|| ({group})", xlabel="step (reheat steps after the source step)")
    save_figure(fig, path)


# ----------------------------------------------------------------------------- main
DEFINITIONS = dict(
    steps="reheat steps (0 = the source snapshot); add source.step for the original run's clock",
    peak="largest p_ood over the reheat evals (step 0 included; first of equal maxima)",
    first_step_at_threshold="first reheat eval step with p_ood >= threshold, None if never",
    v_b=(
        "first right singular vector of the original run's drift rows theta(t) - theta(0) over all"
        " its snapshots (uncentered), sign a(end) > 0; per block and trunk"
    ),
    a="<theta(t) - theta_orig(0), v_b>",
    r="sqrt(||theta(t) - theta_orig(0)||^2 - a^2)",
    table="trunk a and ||r|| over the reheat snapshots; per block in projection",
)


def reheat_configs(ns) -> tuple[str, dict, int, str, bool, dict]:
    """(source run, its config, step, snapshot, default_step, {lr: Config}): the asked-for learning
    rates, then the other finished runs of this experiment; every error before anything is
    trained."""
    given = given_overrides(ns)
    lrs = parse_floats(ns.lrs, "--lrs", 0.0, math.inf, hi_open=True)
    if 0.0 in lrs:
        raise UsageError("--lrs: learning rates must be > 0")
    if not 0.0 <= ns.threshold <= 1.0:
        raise UsageError(f"--threshold must be in [0, 1], got {ns.threshold:g}")
    located = make_config(**{k: given[k] for k in LOCATING if k in given})
    run = os.path.normpath(ns.run or located.run_dir)
    hint = "train it first: python train.py" + "".join(f" --{k} {given[k]}"
                                                       for k in LOCATING if k in given)
    src, step, snap = load_source(run, ns.step, given,
                                  hint if ns.run is None else "train it first with train.py")
    default_step = ns.step is None or ns.step == src["steps"]
    make = lambda lr: reheat_config(src, given, run, step, snap, lr, default_step)  # noqa: E731
    cfgs = {lr: make(lr) for lr in lrs}
    for cfg in cfgs.values():  # a folder made with another config stops before anything is trained
        check_run_dir(cfg)
    others = {lr: make(lr) for lr in ex.REHEAT_LRS if lr not in cfgs}
    return run, src, step, snap, default_step, {
        **cfgs, **{lr: c
                   for lr, c in others.items() if same_finished_run(c)}
    }


def table_row(lr: float, st: dict, metrics: list[dict], summ: dict, trunk: dict) -> dict:
    first, last = (lambda xs: xs[0] if xs else None), (lambda xs: xs[-1] if xs else None)
    return dict(
        lr=lr,
        status=st["status"],
        start_p_ood=summ["start"],
        peak_p_ood=summ["peak"],
        peak_step=summ["peak_step"],
        first_step_at_threshold=summ["first_at_threshold"],
        final_p_ood=summ["final"],
        final_step=summ["final_step"],
        final_val=metrics[-1]["val_loss"] if metrics else None,
        a_start=first(trunk["a"]),
        a_end=last(trunk["a"]),
        r_start=first(trunk["r"]),
        r_max=max(trunk["r"], default=None),
        r_end=last(trunk["r"]),
    )


def run(ns, argv) -> tuple[dict, list[str]]:
    t0 = time.perf_counter()
    run_dir, src, step, snap, default_step, cfgs = reheat_configs(ns)
    base = next(iter(cfgs.values()))
    src_name = os.path.basename(run_dir)
    out = ns.out or os.path.join(base.out_dir, f"{src_name}_reheat" +
                                 ("" if default_step else f"_from{step}"))
    out, results = ex.output_dirs("reheat", base, out, ns.results, sub=f"seed{src['seed']}")
    statuses = {}
    for lr, cfg in cfgs.items():
        print(f"== reheat lr {lr_tag(lr)}: {cfg.run_dir} (from {snap})")
        statuses[lr] = train.train(cfg)
    proj = backbone_projection(run_dir, {cfg.name: cfg.run_dir
                                         for cfg in cfgs.values()}, base.device)
    runs, table = [], []
    for lr, cfg in sorted(cfgs.items(), key=lambda x: -x[0]):
        m = [{k: r.get(k)
              for k in ("step", "lr", "val_loss", "p_in", "p_ood")}
             for r in read_metrics(cfg.run_dir)]
        summ = reheat_summary([r["step"] for r in m], [r["p_ood"] for r in m], ns.threshold)
        st = statuses[lr]
        runs.append(
            dict(
                lr=lr,
                name=cfg.name,
                run=cfg.run_dir,
                status=st["status"],
                step=st["step"],
                reason=st.get("reason"),
                metrics=m,
                summary=summ,
            )
        )
        table.append(table_row(lr, st, m, summ, proj["runs"][cfg.name]["groups"]["trunk"]))
    sm = read_metrics(run_dir)
    protocol = {
        k: getattr(base, k)
        for k in (
            "steps",
            "warmup",
            "min_lr_frac",
            "lambda_probe",
            "lambda_probe_late",
            "lambda_step",
            "eval_every",
            "snapshot_every",
            "beta1",
            "beta2",
            "weight_decay",
        )
    }
    source = dict(
        run=run_dir,
        step=step,
        snapshot=snap,
        best_p_ood=max((r["p_ood"] for r in sm), default=None),
        metrics=[{k: r.get(k) for k in ("step", "val_loss", "p_in", "p_ood")} for r in sm],
    )
    stem = os.path.join(out, "reheat")
    record = write_result(
        stem + ".json",
        "reheat",
        dict(protocol, preset=src["preset"], seed=src["seed"]),
        DEFINITIONS,
        table,
        t0,
        argv,
        base.device,
        __file__,
        preset=src["preset"],
        seed=src["seed"],
        threshold=ns.threshold,
        source=source,
        protocol=protocol,
        table=table,
        runs=runs,
        projection=proj,
    )
    write_csv(stem + ".csv", table)
    plot(record, stem + ".png")
    files = [stem + x for x in (".json", ".csv", ".png")]
    return record, files + copy_results(files, results)


def print_table(record: dict):
    table, threshold = record["table"], record["threshold"]
    print(
        f"source {record['source']['run']} step {record['source']['step']}: p_ood"
        f" {fmt(table[0]['start_p_ood'])} (best during training"
        f" {fmt(record['source']['best_p_ood'])})"
    )
    head = [
        "lr",
        "peak p_ood",
        "at step",
        f"first >= {threshold:.2f}",
        "final",
        "status",
        "| trunk: a start",
        "a end",
        "|r| start",
        "|r| max",
        "|r| end",
    ]
    g = lambda v: "-" if v is None else f"{v:.4g}"  # noqa: E731
    body = [
        [
            lr_tag(r["lr"]),
            fmt(r["peak_p_ood"]),
            fmt(r["peak_step"]),
            fmt(r["first_step_at_threshold"]),
            fmt(r["final_p_ood"]),
            r["status"],
            g(r["a_start"]),
            g(r["a_end"]),
            g(r["r_start"]),
            g(r["r_max"]),
            g(r["r_end"]),
        ]
        for r in table
    ]
    print(format_table(head, body))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    p = add_config_args(
        Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    p.add_argument(
        "--run",
        default=None,
        help="source run folder (default: the run train.py makes with --preset/--seed/--out_dir)",
    )
    p.add_argument(
        "--step",
        type=int,
        default=None,
        help="source snapshot to start from (default: the run's last step)",
    )
    p.add_argument("--lrs", default=PAPER_LRS,
                   help=f"comma-separated peak learning rates (default {PAPER_LRS})")
    p.add_argument(
        "--threshold",
        type=float,
        default=ex.REHEAT_THRESHOLD,
        help=f"p_ood level whose first crossing is reported (default {ex.REHEAT_THRESHOLD})",
    )
    p.add_argument("--out", default=None,
                   help="experiment folder (default <out_dir>/<source name>_reheat)")
    p.add_argument(
        "--results",
        default=None,
        help=(
            "copy JSON/CSV/figure here (default: results/reheat/seed<seed> for the paper preset,"
            " nowhere for tiny)"
        ),
    )
    record, files = cli(run, p.parse_args(argv), argv)
    print_table(record)
    print("wrote " + ", ".join(files))


if __name__ == "__main__":
    main()
