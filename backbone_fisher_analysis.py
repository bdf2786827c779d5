"""Fisher curvature along the backbone: Rayleigh quotients and anisotropy (paper section 4.5, 9.4, Tables 6-7, Figure 3).

    python backbone_fisher_analysis.py --run runs/seed42 [--anchor 0] [--steps 200,1800,4800,9600 | --every 1] [--batches 32] [--K 10] [--group trunk|block0|all] [--device auto]

At each chosen snapshot theta(t) (default: every snapshot from the anchor on), M = 32 mini-batch
gradients of the combined training loss L_LM + lambda(t) L_probe (model.losses) are stacked into
G (M x D, float32, canonical trunk order): the batches the run trained on right after t, rebuilt
from (seed, step, micro-step) exactly as in backbone_gradient_analysis.py (`replay_batches`: the
stream (t, 0), (t, 1), (t + 1, 0), ... in mini-batches of --batch-size sequences, by default the
run's micro-batch size, so that with the paper's batch_size 64 and grad_accum 2 these are the
micro-batches of steps t .. t + 15). With F = G^T G / M:
    q(v) = ||G v||^2 / M       for v_b, v_PC2, v_sw and K = 10 random unit directions orthonormalized
                               against v_b and each other (geometry.random_directions, seed --seed)
    alpha = q(v_b) / mean_k q(w_k)
    u_1, lambda_1, trace(F)    top eigenvector of F through the M x M Gram G G^T (geometry.fisher_top)
                               and |<u_1, v>| for each named direction.
v_b and v_PC2 are the first two right singular vectors of the uncentered drift from the anchor
(recomputed here from one Gram pass, sign a(T) > 0). v_sw = theta(peak) - theta(trough),
normalized, for the largest p_ood peak and its adjacent trough in metrics.jsonl: the extrema
(prominence >= 0.03 within +-3 evals) and peak/trough pairs of trajectory_pca_uncentered.py, of
which the pair with the highest p_ood at the peak. Without such a pair v_sw is left out and the
JSON says why. Groups: the trunk (default; the paper's Fisher),
one block (--group blockN), or the trunk and every block (--group all); every direction is taken
within its group and normalized there.

Memory: G is M x D float32: 32 x 25,165,824 x 4 B = 3.2 GB for the paper trunk (plus as much again
while it is stacked), fine on a GPU; on a CPU use the tiny preset or fewer --batches. The K random
directions (float64 while built) are made once per group and reused at every step.
Forward/backward in the run's bf16 autocast on CUDA (float32 gradients), --fp32 for full fp32;
Rayleigh quotients and the Gram matrix in float64, TF32 off.

Writes <run>/analysis/backbone_fisher_analysis.json and <run>/analysis/backbone_fisher_analysis.png
(left: q(v) against step, v_b red, v_sw blue, v_PC2 purple, random directions as a grey band,
log scale, the lambda step dashed; right: alpha against step).
"""
from __future__ import annotations

import math
import os
import sys
import time

import numpy as np

from common import analysis_parser, cli, out_path, pyplot, save_figure, write_result
from config import UsageError
from geometry import backbone, batch_gradients, dot, fisher_summary, group_slices, random_directions
from runs import load_run, loss_fn, replay_record, replayed, snapshot_selection
from trajectory_pca_uncentered import PROMINENCE, RADIUS, pair_switches


# ----------------------------------------------------------------------------- inputs
def parse_steps(text: str) -> list[int]:
    try:
        steps = sorted({int(s) for s in text.split(",") if s.strip()})
    except ValueError:
        raise UsageError(f"--steps must be comma-separated snapshot steps, e.g. 200,1800,4800; got {text!r}")
    if not steps:
        raise UsageError("--steps is empty")
    return steps


def select_groups(spec: str, groups: dict) -> list[str]:
    if spec == "all":
        return ["trunk"] + [g for g in groups if g != "trunk"]
    if spec not in groups:
        raise UsageError(f"--group must be trunk, all or one of {', '.join(g for g in groups if g != 'trunk')}; got {spec!r}")
    return [spec]


def switching_pair(metrics: list[dict], snapshots, anchor: int):
    """(peak_step, trough_step, info) for the largest p_ood peak and its adjacent trough, or (None, None, reason).
    Extrema and pairs are those of trajectory_pca_uncentered.pair_switches (one definition in the repository);
    of its pairs, the one with the highest p_ood at the peak (then the largest drop)."""
    rows = {r["step"]: float(r["p_ood"]) for r in metrics if r.get("p_ood") is not None}  # last row per step wins
    steps = sorted(rows)
    if len(steps) < 3:
        return None, None, "fewer than 3 evals with p_ood in metrics.jsonl"
    sw = pair_switches(steps, [rows[s] for s in steps], set(snapshots), anchor)
    if not sw["pairs"]:
        return None, None, (f"no p_ood peak/trough pair with snapshots (prominence >= {PROMINENCE} within +-{RADIUS} evals; "
                            f"{len(sw['peaks'])} peaks, {len(sw['troughs'])} troughs)")
    best = max(sw["pairs"], key=lambda q: (q["p_ood_peak"], q["p_ood_peak"] - q["p_ood_trough"]))
    return best["peak"], best["trough"], dict(p_peak=best["p_ood_peak"], p_trough=best["p_ood_trough"],
                                              n_pairs=len(sw["pairs"]), peaks=sw["peaks"], troughs=sw["troughs"])


def switching_directions(traj, groups: list[str], peak: int, trough: int) -> dict:
    """{group: unit theta(peak) - theta(trough) over the group's keys}."""
    keys = traj.groups["trunk"]
    a, b = traj.load(peak, keys), traj.load(trough, keys)
    out = {}
    for g in groups:
        d = {k: a[k] - b[k] for k in traj.groups[g]}
        n = math.sqrt(dot(d, d))
        if n > 0:
            out[g] = {k: v / n for k, v in d.items()}
    return out


# ----------------------------------------------------------------------------- figure
def plot(out_dir: str, out: dict) -> str:
    plt = pyplot()
    g0 = out["groups"][0]
    steps = np.array(out["steps"])
    rows = [r["groups"][g0] for r in out["table"]]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10.5, 3.9))
    qr = np.array([r["q_random"] for r in rows])
    ax.fill_between(steps, qr.min(1), qr.max(1), color="grey", alpha=0.3, lw=0, label=f"random (K={qr.shape[1]}, min-max)")
    ax.plot(steps, qr.mean(1), color="grey", lw=1)
    styles = {"v_b": ("tab:red", r"$v_b$ (backbone)"), "v_sw": ("tab:blue", r"$v_{sw}$ (switching)"),
              "v_PC2": ("tab:purple", r"$v_{PC2}$")}
    for name, (color, label) in styles.items():
        if name in rows[0]["q"]:
            ax.plot(steps, [r["q"][name] for r in rows], "o-", ms=3, color=color, lw=1.5 if name != "v_PC2" else 1,
                    label=label)
    bx.axhline(1, color="grey", ls=":", lw=0.8)
    for g in out["groups"]:
        bx.plot(steps, [r["groups"][g]["alpha"] for r in out["table"]], "o-" if g == g0 else "-",
                ms=3, lw=1.8 if g == g0 else 0.8, color="k" if g == g0 else None, label=g)
    lam_step = out["config"]["lambda_step"]
    for a in (ax, bx):
        a.set_yscale("log"), a.set_xlabel("step")
        if steps.min() < lam_step <= steps.max():
            a.axvline(lam_step, color="k", ls="--", lw=0.8)
    ax.set_ylabel(r"$q(v) = \|Gv\|^2 / M$"), ax.set_title(f"Fisher Rayleigh quotients ({g0})", fontsize=9)
    bx.set_ylabel(r"anisotropy $\alpha = q(v_b)$ / mean $q(w)$"), bx.set_title("anisotropy", fontsize=9)
    ax.legend(fontsize=7), bx.legend(fontsize=7, ncol=2)
    fig.suptitle(f"{out['run']}: M = {out['batches']['n']} mini-batches of {out['batches']['batch_size']}", fontsize=9)
    return save_figure(fig, os.path.join(out_dir, "backbone_fisher_analysis.png"), dpi=130)


# ----------------------------------------------------------------------------- main
def analyse(args) -> dict:
    if args.batches < 1 or args.K < 1 or (args.batch_size is not None and args.batch_size < 1):
        raise UsageError("--batches, --batch-size and --K must be >= 1")
    if args.every is not None and args.every < 1:
        raise UsageError(f"--every must be >= 1, got {args.every}")
    steps = parse_steps(args.steps) if args.steps is not None else None
    # load
    traj, cfg, corpus, state = load_run(args.run, args.anchor, args.cache_dir, args.device, args.partial)
    args.batch_size = args.batch_size or cfg.batch_size
    if steps is None:
        steps = snapshot_selection(traj, 1 if args.every is None else args.every)
    traj.check_steps(steps, "--steps step")
    groups = select_groups(args.group, traj.groups)
    D = {g: traj.numel(traj.groups[g]) for g in groups}
    # gradient columns: the trunk, or one block alone; a group's columns are a contiguous slice (canonical order)
    keys = traj.groups[groups[0]] if len(groups) == 1 else traj.groups["trunk"]
    cols = {groups[0]: slice(0, D[groups[0]])} if len(groups) == 1 else group_slices(traj)

    # directions: v_b, v_PC2 (one Gram pass), v_sw (two snapshots), K random ones per group
    k = 2 if len(traj.row_steps) >= 2 else 1  # one drift row has no second component
    pcas, pcs = backbone(traj, groups, k=k, progress=sys.stderr.isatty())
    dirs = {g: {"v_b": pcs[g][0], **({"v_PC2": pcs[g][1]} if k == 2 else {})} for g in groups}
    peak, trough, sw_info = switching_pair(traj.metrics(), traj.steps, traj.anchor)
    if peak is not None:
        for g, v in switching_directions(traj, groups, peak, trough).items():
            dirs[g]["v_sw"] = v
        switching = dict(peak_step=peak, trough_step=trough, **sw_info,
                         cos_vb={g: dot(dirs[g]["v_sw"], dirs[g]["v_b"]) for g in groups if "v_sw" in dirs[g]})
    else:
        switching = dict(omitted=sw_info)
    rand = {g: random_directions(dirs[g]["v_b"], args.K, [dirs[g]["v_b"]], args.seed) for g in groups}

    # gradients and Fisher quantities at each step
    table, batches_used = [], {}
    for t, lam, model, batches in replayed(traj, cfg, corpus, steps, args.batches, args.batch_size, batches_used, "fisher"):
        G = batch_gradients(model, batches, loss_fn(0, lam, traj.device, args.fp32), keys)  # (M, D)
        row = dict(step=t, **{"lambda": lam}, groups={})
        for g in groups:
            s = fisher_summary(G[:, cols[g]], traj.groups[g], dirs[g], rand=rand[g])
            s["q_random_mean"] = float(np.mean(s["q_random"]))
            row["groups"][g] = s
        table.append(row)
        del G

    gb = args.batches * traj.numel(keys) * 4 / 1e9
    out = dict(
        analysis="backbone_fisher_analysis",
        run=os.path.basename(os.path.normpath(args.run)),
        anchor=traj.anchor,
        groups=groups,
        definitions=dict(
            G="M x D matrix of mini-batch gradients of L_LM + lambda(t) L_probe at theta(t), float32, canonical trunk order "
              "(model.trunk_keys), restricted to the group's columns",
            F="empirical Fisher F = G^T G / M (never formed)",
            q="q(v) = v^T F v = ||G v||^2 / M for unit v",
            v_b="first right singular vector of the uncentered drift rows theta(t) - theta(anchor), sign a(T) > 0",
            v_PC2="second right singular vector of the same rows (sign: last row's coordinate >= 0)",
            v_sw="(theta(peak) - theta(trough)) / norm, largest p_ood peak and adjacent trough (see 'switching')",
            random=f"K = {args.K} Gaussian directions Gram-Schmidt orthonormalized against v_b and each other "
                   f"(geometry.random_directions, seed {args.seed}), the same at every step",
            alpha="q(v_b) / mean_k q(w_k)",
            lambda1="top eigenvalue of F (from the M x M Gram G G^T); trace = trace(F) = sum_i ||g_i||^2 / M",
            u1_overlap="|<u_1, v>| for the top eigenvector u_1 of F",
            precision="fp32 forward/backward" if (args.fp32 or traj.device.type != "cuda") else
                      "bf16 autocast forward/backward as in training (float32 gradients); float64 products, TF32 off",
            memory=f"G takes M x D x 4 B = {gb:.3g} GB here (paper trunk, M = 32: 3.2 GB)",
        ),
        **replay_record(cfg, args.batches, args.batch_size, batches_used),
        D=D,
        backbone={g: dict(pc1=pcas[g].pc1, pc2=float(pcas[g].rho[1]) if k == 2 else None, k95=pcas[g].k95,
                          rows=len(traj.row_steps)) for g in groups},
        switching=switching,
        steps=steps,
        table=table,
        run_state=state,
    )
    return out, traj.device


def run(args, argv) -> tuple[str, dict, str]:
    t0 = time.perf_counter()
    path = out_path(args, "backbone_fisher_analysis")
    out, device = analyse(args)
    out = write_result(path, out.pop("analysis"), out.pop("config"), out.pop("definitions"), out["table"], t0,
                       argv, device, __file__, analysis="backbone_fisher_analysis", **out)  # results = table (kept)
    return path, out, plot(os.path.dirname(os.path.abspath(path)), out)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    ap = analysis_parser(__doc__, "backbone_fisher_analysis", replay_batches=32)
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--steps", default=None, help="comma-separated snapshot steps, e.g. 200,1800,4800,9600 (the paper's Table 6)")
    which.add_argument("--every", type=int, default=None, help="every k-th snapshot from the anchor on (default: 1, all)")
    ap.add_argument("--K", type=int, default=10, help="random directions for the anisotropy (default 10)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random directions (default 0)")
    ap.add_argument("--group", default="trunk", help="trunk (default) | blockN | all (trunk and every block)")
    args = ap.parse_args(argv)
    path, out, fig = cli(run, args, argv)
    g0 = out["groups"][0]
    last = out["table"][-1]["groups"][g0]
    print(f"{path}: {len(out['steps'])} steps, {out['provenance']['wall_s']} s; {g0} at step {out['steps'][-1]}: "
          f"q(v_b) {last['q']['v_b']:.3g}, alpha {last['alpha']:.3g}, |<u1, v_b>| {last['u1_overlap']['v_b']:.3g}"
          f"{'' if 'v_sw' in last['q'] else '; v_sw omitted (' + out['switching']['omitted'] + ')'}; figure: {os.path.basename(fig)}")


if __name__ == "__main__":
    main()
