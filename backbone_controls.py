"""The controls that the paper lacks (SPEC 7): is the backbone made by the optimizer, or by weight
decay?

    python backbone_controls.py  # paper preset (GPU): D's sweep, D, A0, D0 (and A), the table
    python backbone_controls.py --runs A0        # only these runs (finished runs are reused)
    # CPU, a few minutes (steps scaled by experiments.exp_steps)
    python backbone_controls.py --preset tiny

Runs B and C of Table 8 never learn (validation 7.27 and 5.26 on seed 42, unigram baseline 5.60) and
their window drift is the shrinkage that weight decay alone gives the initialization, so their PC1
of 100% says nothing about the optimizer. The controls (experiments.NEW_CONTROLS):
    D   SGD + momentum 0.9 at the peak learning rate of a sweep over 0.03, 0.1, 0.3, 1, 3: each
        sweep run is D's first 1,000 steps (its 4,000-step schedule, a stop rule that ends it
        there: "sweep run: stopped at step 1,000 as planned"); the lowest validation loss at
        step 1,000 wins. Decoupled weight decay lr * wd = 1e-3 * 0.5, run A's per-step strength,
        so that weight decay alone moves A and D alike. D is trained at the seed given and the
        next two (rows D, D@43, D@44 for seed 42: its spread over seeds), at the sweep's lr.
    A0  AdamW as run A, weight decay 0.
    D0  run D (the same learning rate) with weight decay 0.
    A   run A of Table 8 (the same folder as sgd_control.py's), the reference.
Same model, data, seed, 4,000-step schedule, snapshots and evals as Table 8. Any Config field can be
given except those the experiment fixes (optimizer, lr, momentum, nesterov, weight_decay, wd_mode,
name, stop_rule).

Geometry (runs.window_summary) of the window [600, 2000], anchor 600, trunk and every block: PC1,
k95, drift, PC1 against the matched null (the reference: the observed increment norms in independent
directions), the shuffle and random-direction nulls and the theory; the coherence ratio; the
weight-decay decomposition along e0 = theta(600) / ||theta(600)|| (cos(v_b, -e0), the share of
||x(T)||^2 along e0 and the share decay alone would give, PC1 of the drift with e0 removed and its
matched null); 200-step update alignment beside the matched walk's. Each run's final validation
loss is compared with the unigram baseline of its corpus (dataset.ngram_baseline, order 1).

Writes <out_dir>/[tiny_]sgd_control/backbone_controls.{json,csv,png} (or --out DIR) and
<run>/analysis/sgd_window.json per run; for the paper preset, or with --results DIR, copies the
three table files into results/sgd_control/.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import experiments as ex
import train as tr
from common import cli, copy_results, fmt, pyplot, save_figure, write_csv, write_result
from config import Parser, UsageError, add_config_args, given_overrides
from dataset import load_corpus, ngram_baseline
from runs import curves, existing_run

RUNS = ("A", "D", "A0", "D0")


def parse_runs(text: str) -> list[str]:
    runs = [r.strip().upper() for r in text.split(",") if r.strip()]
    bad = [r for r in runs if r not in RUNS]
    if bad or not runs:
        raise UsageError(
            f"unknown run {bad[0] if bad else text!r} in --runs (choose from {', '.join(RUNS)})"
        )
    return [r for r in RUNS if r in runs]


def finished(info: dict | None) -> bool:
    return bool(info and info["status"] and info["status"]["status"] != "running")


# ----------------------------------------------------------------------------- runs
def sweep(given: dict, train: bool) -> tuple[dict, dict]:
    """D's learning-rate sweep: ({lr: Config}, experiments.d_sweep outcome); trains its runs if
    `train`."""
    cfgs = {lr: ex.new_control_config("D", given, lr, sweep=True) for lr in ex.D_LRS}
    for cfg in cfgs.values() if train else ():
        st = tr.train(cfg)
        print(f"{cfg.run_dir}: {st.get('reason') or st['status']} (lr {cfg.lr:g})")
    out = ex.d_sweep_outcome(given)
    out["run_dirs"] = {str(lr): c.run_dir for lr, c in cfgs.items()}
    return cfgs, out


def configs(given: dict, lr: float | None) -> dict:
    """{table name: Config} of A, A0 and (with the sweep's learning rate) D at each of its seeds
    (D, D@43, ... for seed 42: experiments.seed_run) and D0, in table order."""
    out = {"A": ex.control_config("A", given), "A0": ex.new_control_config("A0", given)}
    if lr is not None:
        seed = out["A"].seed
        out.update({ex.seed_run("D", s, seed): ex.new_control_config("D", {**given, "seed": s}, lr)
                    for s in ex.d_seeds(seed)}, D0=ex.new_control_config("D0", given, lr))
    return {name: c for r in RUNS for name, c in out.items() if ex.control_of(name) == r}


def unigram_baseline(cfg) -> dict:
    """Validation nats/token of the unigram model of the training tokens (a run above it learned
    nothing)."""
    corpus = load_corpus(cfg)
    return dict(
        val_nats=ngram_baseline(corpus.train, corpus.val, corpus.vocab_size, max_n=1)[1],
        definition=(
            "interpolated Witten-Bell unigram of the training tokens (dataset.ngram_baseline, "
            "order 1), cross-entropy on the validation split"
        ),
        corpus=corpus.description,
    )


# ----------------------------------------------------------------------------- table and figure
def build_table(cfgs: dict, unigram: float | None) -> tuple[list[dict], dict]:
    """One row per finished run (window geometry when it reached the window end) and
    {run: (cfg, window summary, curves)}."""
    w0, w1 = ex.window(cfgs["A"].preset)
    rows, summaries = [], {}
    for run, cfg in cfgs.items():
        info = existing_run(cfg)
        if not finished(info):
            if info is not None:
                print(f"{cfg.run_dir}: not finished; left out of the table")
            continue
        ws = ex.control_window(cfg, w0, w1) if ex.reached(info["status"], w1) else None
        rows.append(
            ex.control_row(run, info["config"].to_dict(), info["metrics"], info["status"], ws,
                           unigram))
        summaries[run] = (cfg, ws, curves(info["metrics"]))
    return rows, summaries


def plot(record: dict, path: str):
    """Trunk PC1 per run against the matched null (raw and with the decay component removed);
    the weight-decay shares; validation loss (unigram baseline dashed) and p_ood against step."""
    plt = pyplot()
    rows, (w0, w1) = [r for r in record["rows"] if r["pc1_pct"] is not None], record["window"]
    colors = dict(A="tab:blue", D="tab:red", A0="tab:cyan", D0="tab:orange")
    fig, ax = plt.subplots(2, 2, figsize=(11, 7.5))
    a, x = ax[0, 0], range(len(rows))
    col = [colors[ex.control_of(r["run"])] for r in rows]
    val = lambda key: [float("nan") if r[key] is None else r[key] for r in rows]  # noqa: E731
    left, right = [i - 0.2 for i in x], [i + 0.2 for i in x]
    a.bar(left, val("pc1_pct"), width=0.4, color=col, label="PC1 (raw rows)")
    a.bar(right, val("pc1_decay_removed_pct"), width=0.4, alpha=0.45, color=col,
          label="PC1, e0 component removed")
    a.scatter(left, val("null_matched_pc1_pct"), marker="_", s=300, lw=2.5, color="k", zorder=3,
              label="matched null")
    a.scatter(
        right,
        val("null_matched_decay_removed_pct"),
        marker="_",
        s=300,
        lw=2.5,
        color="grey",
        zorder=3,
        label="matched null, e0 removed",
    )
    a.set_xticks(list(x), [r["run"] for r in rows]), a.set_ylim(0, 105)
    a.set_ylabel(f"trunk PC1 (%), window [{w0}, {w1}]"), a.legend(fontsize=7, loc="lower left")
    b = ax[0, 1]
    for dx, key, label in ((-0.25, "cos_vb_theta0", "cos(v_b, -e0)"),
                           (0.0, "share_e0_final", "share of ||x(T)||^2 along e0"),
                           (0.25, "decay_share_final", "share weight decay alone gives")):
        b.bar([i + dx for i in x], val(key), width=0.25, label=label)
    b.axhline(0, color="k", lw=0.5)
    b.set_xticks(list(x), [r["run"] for r in rows]), b.legend(fontsize=7)
    b.set_title(f"weight-decay decomposition, e0 = theta({w0}) / ||theta({w0})||", fontsize=9)
    for r in record["rows"]:
        c = record["curves"][r["run"]]
        lab = f"{r['run']} {r['optimizer']}"
        style = dict(color=colors[ex.control_of(r["run"])], ls="-" if "@" not in r["run"] else ":")
        ax[1, 0].plot(c["step"], c["val_loss"], label=lab, **style)
        ax[1, 1].plot(c["step"], c["p_ood"], label=lab, **style)
    for s in record["sweep"]["rows"]:
        if s["val_loss"] is not None:
            ax[1, 0].scatter([s["step"]], [s["val_loss"]], marker="x", color="tab:red", s=20)
    if record["unigram"]:
        ax[1, 0].axhline(record["unigram"]["val_nats"], color="grey", ls="--", lw=1,
                         label="unigram baseline")
    for a, yl in ((ax[1, 0], "validation loss"), (ax[1, 1], "p_ood")):
        a.axvspan(w0, w1, color="grey", alpha=0.12)
        a.set_xlabel("step"), a.set_ylabel(yl), a.legend(fontsize=7)
    ax[1, 0].set_title("x: D's sweep runs at the sweep step", fontsize=8)
    fig.suptitle(
        f"Controls for the backbone ({record['preset']} preset, seed {record['seed']})", fontsize=10
    )
    save_figure(fig, path)


# ----------------------------------------------------------------------------- main
def run(ns, argv) -> tuple[dict, list[str]]:
    t0 = time.perf_counter()
    given = given_overrides(ns)
    runs = parse_runs(ns.runs)
    sweep_cfgs, sw = sweep(given, train=False)  # every config error before any training
    for c in sweep_cfgs.values():
        existing_run(c)
    # D's folder is checked once its lr is known
    for r, c in configs(given, sw["lr"] or ex.D_LRS[0]).items():
        if r in ("A", "A0") or sw["lr"] is not None:
            existing_run(c)
    base = configs(given, None)["A"]
    dirs = ex.output_dirs("sgd_control", base, ns.out, ns.results)
    if "D" in runs or "D0" in runs:
        _, sw = sweep(given, train=True)
        if sw["lr"] is None:
            raise UsageError(f"D's learning-rate sweep found no learning rate: {sw['reason']}")
    cfgs = configs(given, sw["lr"])
    for name, cfg in cfgs.items():
        if ex.control_of(name) in runs:
            existing_run(cfg)
            st = tr.train(cfg)
            print(f"{cfg.run_dir}: {st['status']} at step {st['step']}")
    unigram = unigram_baseline(base)
    rows, summaries = build_table(cfgs, unigram["val_nats"])
    if not rows:
        raise UsageError("no finished run to tabulate")
    for cfg, ws, _ in summaries.values():
        if ws is not None:
            ex.write_window(cfg, ws, t0, argv, __file__)
    w0, w1 = ex.window(base.preset)
    paths = [os.path.join(dirs[0], f"backbone_controls.{ext}") for ext in ("json", "csv", "png")]
    config = dict(preset=base.preset, seed=base.seed, controls={r: ex.CONTROLS[r]
                                                                for r in RUNS},
                  d_lrs=list(ex.D_LRS), d_seeds=ex.d_seeds(base.seed),
                  d_sweep_step=ex.exp_steps(base.preset, ex.D_SWEEP_STEP), d_shrink=ex.D_SHRINK,
                  schedule=ex.control_schedule(base.preset), window=[w0,
                                                                     w1], null_draws=ex.NULL_DRAWS)
    definitions = dict(
        D=(
            "SGD + momentum 0.9, peak lr from the sweep, decoupled weight decay, lr * wd = d_shrink"
            " (run A's)"
        ),
        A0="AdamW as run A with weight decay 0",
        D0="run D with weight decay 0",
        D_at_seed="D@s: run D at seed s (the sweep's learning rate; sweep runs at the base seed)",
        sweep=(
            "each sweep run is D's config at one lr with a stop rule that ends it at the sweep"
            " step; the lowest validation loss there wins (diverged runs lose)"
        ),
        window="runs.window_summary on [start, end], anchor = start (see its definitions)",
        columns=(
            "*_pct: percent of the trunk's raw drift energy; null_matched_*: the matched null;"
            " *_decay_removed / '-e0': the drift with its component along e0 ="
            " theta(anchor)/||theta(anchor)|| removed; decay_share_final: (pure-decay"
            " displacement)^2 / ||x(T)||^2; below_unigram: final val < unigram_val"
        ),
    )
    record = write_result(paths[0], "backbone_controls", config, definitions, rows, t0, argv, "cpu",
                          __file__, preset=base.preset, seed=base.seed, window=[w0, w1], sweep=sw,
                          unigram=unigram, rows=rows,
                          run_dirs={r: c.run_dir
                                    for r, (c, _, _) in summaries.items()
                                    }, curves={r: c
                                               for r, (_, _, c) in summaries.items()},
                          window_summaries={r: ws
                                            for r, (_, ws, _) in summaries.items()})
    write_csv(paths[1], rows, ex.CONTROL_COLUMNS)
    plot(record, paths[2])
    return record, paths + copy_results(paths, dirs[1])


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    p = add_config_args(
        Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
               allow_abbrev=False))
    p.add_argument(
        "--runs",
        default=",".join(RUNS),
        help=(
            f"runs to train (comma-separated from {', '.join(RUNS)}; default all; D and D0 "
            "train D's sweep first)"
        ),
    )
    p.add_argument("--out", default=None,
                   help="table folder (default <out_dir>/[tiny_]sgd_control)")
    p.add_argument(
        "--results",
        default=None,
        help="copy the table files here (default results/sgd_control for the paper preset)",
    )
    record, paths = cli(run, p.parse_args(argv), argv)
    s = record["sweep"]
    vals = ", ".join(f"lr {r['lr']:g}: {fmt(r['val_loss'])}" for r in s["rows"])
    print(f"D's sweep (val at step {record['config']['d_sweep_step']}): {vals} -> lr {s['lr']}; "
          f"unigram baseline {record['unigram']['val_nats']:.3f}")
    print(ex.format_controls(record["rows"]))
    print("wrote " + ", ".join(paths))


if __name__ == "__main__":
    main()
