"""Uncentered trajectory PCA of the trunk: the backbone, null models, stability, decomposition,
switching.

    python trajectory_pca_uncentered.py --run runs/seed42  # paper Table 2, Figure 1, section 7
    python trajectory_pca_uncentered.py --run runs/tiny_seed42 --null-draws 200
    python trajectory_pca_uncentered.py --record \
        results/v2/seed42/analysis/trajectory_record.safetensors \
        --out /tmp/pca/trajectory_pca_uncentered.json  # from a record alone, on a CPU

Drift rows x(t) = theta(t) - theta(anchor), per block and for the whole trunk, analysed through
their T x T Gram matrix (float64, TF32 off), taken from the run's trajectory record
(runs.run_record: one streamed pass over the snapshots, kept in <run>/analysis/ and reused while
the snapshots are the same). Every number is a function of the record; a second pass over
the snapshots rebuilds only the directions that are saved (v_b, PC2, switch directions), which
--record cannot give. Writes, next to --out (default <run>/analysis/trajectory_pca_uncentered.json):
  trajectory_pca_uncentered.json     definitions, results, provenance
  backbone_directions.safetensors    v_b.<group>, pc2.<group>, v_sw.<group> (first switch pair)
  switch_directions.safetensors      v_sw<i>.<group> for every switch pair (when they fit in 1 GiB)
  trajectory_pca_pc1.png, trajectory_pca_decomposition_block0.png, trajectory_pca_spectrum.png,
  trajectory_pca_decay_share.png
Per group, beside PC1: the matched null (the reference: a walk with the observed step sizes), the
coherence ratio, and the weight-decay decomposition (the drift along theta(anchor), what decoupled
decay alone would give, and the PCA of the drift with that component removed).
"""
from __future__ import annotations

import math
import os
import sys
import time

import numpy as np
import torch

import geometry as geo
from common import analysis_parser, cli, out_path, pyplot, save_figure, write_result
from runs import lambda_step, open_analysis, record_info

# switching extrema (SPEC 6), defined in geometry.py
PROMINENCE, RADIUS = geo.PROMINENCE, geo.RADIUS
N_SWITCH_PCS = 6                  # E_2:6 uses PCs 2..6
SWITCH_FILE_LIMIT = 1 << 30       # save every switch pair when they take at most 1 GiB

DEFINITIONS = {
    "anchor": (
        "theta(anchor) is the snapshot at step `anchor` (default 0: the true initialization)."
    ),
    "rows": (
        "x(t) = theta(t) - theta(anchor) for every snapshot step t > anchor (snapshot_steps),"
        " restricted to a group: block<l> = the q/k/v, attention output, MLP up and MLP down weight"
        " matrices of block l; trunk = all blocks; flattened in the canonical order of"
        " model.trunk_keys. LayerNorm and embeddings excluded."
    ),
    "gram": (
        "G = X X^T (T x T), accumulated tensor by tensor in float64 from the float32 snapshots,"
        " TF32 off; every quantity below comes from G; directions v = X^T c are rebuilt by a second"
        " streamed pass."
    ),
    "uncentered": (
        "raw rows (primary): SVD X = U S V^T of the rows as they are, no mean subtracted; rho_k ="
        " sigma_k^2 / sum_j sigma_j^2; pc1 = rho_1; k95 / k99 = smallest k with sum_{j<=k} rho_j >="
        " 0.95 / 0.99."
    ),
    "normalized": "the same on the unit rows x(t) / ||x(t)|| (every snapshot weighs the same).",
    "centered": "standard PCA: rows x(t) - mean_t x(t).",
    "backbone": (
        "v_b = first right singular vector of the raw rows (unit norm), sign fixed so that a(T) ="
        " <x(T), v_b> > 0; pc2 = second right singular vector, sign fixed so that <x(T), pc2> >= 0."
    ),
    "theory": (
        "a random walk from its start: uncentered PC_k = 8 / ((2k-1)^2 pi^2) (PC1 = 81.1%),"
        " centered 6 / (k^2 pi^2) (PC1 = 60.8%); *_T: the exact values for T orthogonal equal-norm"
        " increments (iid isotropic, D -> inf)."
    ),
    "null_shuffle": (
        "increments d(t) = x(t) - x(t_prev) (x(anchor) = 0) put in a uniformly random order, path"
        " rebuilt by cumulative sums, its uncentered PC1; from the Gram of the increments."
    ),
    "null_random_directions": (
        "each increment keeps its norm ||d(t)|| but points in an independent uniformly random "
        "direction of R^D (D = numbers in the group); uncentered PC1 of the rebuilt path."
    ),
    "null_summary": (
        "mean and sd of the null PC1 over n draws (seeded); percentile = 100 * (fraction of draws"
        " below the observed PC1 + half the ties)."
    ),
    "windows": (
        "window of W consecutive snapshots, stride 1; its rows are the drift from the GLOBAL anchor"
        " x(t) (not re-anchored); window PC1 = first right singular vector of those W rows"
        " (uncentered). cos_global = |cos(window PC1, v_b)|; cos_prev = |cos(window PC1, PC1 of the"
        " window one snapshot earlier)|."
    ),
    "decomposition": (
        "a(t) = <x(t), v_b>; ||r(t)|| = sqrt(||x(t)||^2 - a(t)^2); f_b(t) = a(t)^2 / ||x(t)||^2; "
        "norm = ||x(t)||."
    ),
    "corr_r_p_ood": (
        "Pearson correlation of ||r(t)|| and p_ood(t) over the snapshot steps (rows) that have "
        "an eval in metrics.jsonl (levels; corr_r_p_ood_diff: on first differences)."
    ),
    "extrema": (
        "p_ood from metrics.jsonl, in step order. Peaks: local maxima (a flat top counts once, at"
        f" its middle; not the first or last eval) whose prominence, measured within +-{RADIUS}"
        f" evals, is >= {PROMINENCE}: scipy.signal.find_peaks(p_ood, prominence={PROMINENCE},"
        f" wlen={2 * RADIUS + 1}). Troughs: the same for -p_ood."
    ),
    "pairs": (
        "each peak is paired with its adjacent trough: the next extremum when it is a trough, else"
        " the previous extremum when it is a trough not paired yet. Both steps need a snapshot at"
        " or after the anchor. prominence: the peak's (scipy, within +-3 evals); drop: p_ood(peak)"
        " - p_ood(trough)."
    ),
    "v_sw": (
        "v_sw = (theta_peak - theta_trough) / ||theta_peak - theta_trough|| per group; theta_peak -"
        " theta_trough = x(peak) - x(trough), a combination of drift rows (x(anchor) = 0). Per pair"
        " here; THE v_sw of the other analyses is the pair v_sw_pair."
    ),
    "backbone_overlap": (
        "|<v_sw, v_b>| (signed value in vsw_dot_vb; its square is the backbone share of v_sw)."
    ),
    "E_2_6": (
        "E_2:6 = sum_{k=2..6} <v_sw_perp, v_k>^2 with v_sw_perp = v_sw - <v_sw, v_b> v_b"
        " renormalized, v_k the raw PCs (fewer when the rows have lower rank)."
    ),
    "pairwise_cos": "|cos| between the switch directions of different pairs, per group.",
    "null_matched": (
        "the reference null: increments d(t) with their observed norms and independent "
        "directions; as D -> inf its uncentered PC1 is the number null_matched_pc1 = top "
        "eigenvalue / trace of L diag(||d||^2) L^T, L the T x T lower-triangular matrix of ones "
        "(geometry.matched_null). Step sizes that rise with warmup and fall with the cosine make "
        "it higher than the equal-norm 8/pi^2. excess = observed PC1 - null_matched_pc1. "
        "null_random_directions draws the same walk at the group's D: at D of millions it is "
        "this number with sd ~1e-4, so its percentile only tells the side."
    ),
    "coherence": (
        "||x(T)||^2 / sum_t ||d(t)||^2: 1 for orthogonal increments, > 1 persistent, < 1 "
        "mean-reverting; coherence_running: ||x(t)||^2 / sum_{s<=t} ||d(s)||^2 per row."
    ),
    "weight_decay": (
        "e0 = theta(anchor) / ||theta(anchor)|| per group. along(t) = <x(t), -e0>; share_e0(t) = "
        "along^2 / ||x(t)||^2; cos_vb_theta0 = <v_b, -e0> (vb_share_e0 = its square: the part of "
        "the backbone that points back to the origin); decay_displacement(t) = (1 - "
        "s(t)/s(anchor)) ||theta(anchor)||, s the scalar factor of weight decay alone under the "
        "run's optimizer and schedule (geometry.decay_factors; decoupled: prod_s (1 - lr_s wd)), "
        "decay_share = its square over ||x(t)||^2; *_decay_removed: PC1, k95, k99 and the "
        "matched null of the rows x(t) - <x(t), e0> e0."
    ),
    "corr_r_p_ood_diff": (
        "Pearson correlation of the first differences of ||r(t)|| and p_ood(t) over the "
        "same rows (a shared trend correlates levels; only a shared oscillation survives "
        "differencing)."
    ),
    "decay_split": (
        "per interval (t_prev, t] of consecutive rows: delta_a = a(t) - a(t_prev) split into "
        "delta_a_decay = (s(t)/s(t_prev) - 1) (a(t_prev) + <theta(anchor), v_b>), what decoupled "
        "weight decay alone does to theta(t_prev), and delta_a_rest (the loss gradient's part, "
        "plus the discretisation error of decay acting inside the interval); C = C_decay + "
        "C_rest the same split of <u(t), v_b> / ||u(t)|| (geometry.decay_split)."
    ),
    "cos_shape": (
        "Antognini & Sohl-Dickstein (2018): |Pearson r| of the projection of the centered rows on "
        "their PC k (k = 1, 2, 3) against cos(k pi (t - anchor) / (T - anchor)); a random walk "
        "gives |r| -> 1 for every k, a straight line only for k = 1 (geometry.cosine_shape); "
        "matched_walk_cos_shape: the same for the matched walk."
    ),
    "v_sw_pair": (
        "index into switching.pairs of THE switching pair (geometry.switching_pair: the most "
        "prominent p_ood peak, then the largest drop); its direction is v_sw.<group> in "
        "backbone_directions.safetensors."
    ),
}


# ----------------------------------------------------------------------------- switching
def switch_coefs(pairs, row_steps) -> torch.Tensor:
    """(T x n_pairs) coefficients of theta_peak - theta_trough = x(peak) - x(trough) (x(anchor)
    = 0)."""
    C = torch.zeros(len(row_steps), len(pairs), dtype=torch.float64)
    idx = {s: i for i, s in enumerate(row_steps)}
    # a step missing from the rows is the anchor, whose drift row x(anchor) is zero
    for j, pr in enumerate(pairs):
        if pr["peak"] in idx:
            C[idx[pr["peak"]], j] += 1
        if pr["trough"] in idx:
            C[idx[pr["trough"]], j] -= 1
    return C


def unit(G, c):
    n = float(c @ G @ c)  # ||X^T c||^2
    return c / math.sqrt(n) if n > 0 else None


def switching(G, P: geo.PCA, c_sw: torch.Tensor) -> dict:
    """|<v_sw, v_b>|, E_2:6 and pairwise |cos| of the switch directions X^T c_sw[:, j] of one
    group."""
    G = G.double()
    # E_2:6 uses PCs 2..6, or fewer when the rows have lower rank (a zero PC has no direction)
    n_pc = min(N_SWITCH_PCS, int((P.sigma > 1e-12 * P.sigma[0]).sum()))
    Ck = P.coef(n_pc)
    cb = Ck[:, 0]
    out, units = [], []
    for j in range(c_sw.shape[1]):
        c = unit(G, c_sw[:, j])
        units.append(c)
        if c is None:
            out.append(
                dict(vsw_dot_vb=None, backbone_overlap=None, E_2_6=None,
                     note="theta_peak == theta_trough"))
            continue
        d = float(c @ G @ cb)
        # E_2:6 measures the part of v_sw that the backbone does not explain: remove v_b first
        perp = unit(G, c - d * cb)
        E = None if perp is None else float(
            sum(float(perp @ G @ Ck[:, k]) ** 2 for k in range(1, n_pc)))
        out.append(
            dict(vsw_dot_vb=d, backbone_overlap=abs(d), backbone_share=d * d, E_2_6=E,
                 pcs_used=list(range(2, n_pc + 1))))
    n = len(units)
    pw = [[
        None if units[i] is None or units[j] is None else abs(float(units[i] @ G @ units[j]))
        for j in range(n)
    ] for i in range(n)]
    off = [pw[i][j] for i in range(n) for j in range(i + 1, n) if pw[i][j] is not None]
    return dict(pairs=out, pairwise_cos=pw, pairwise_cos_max=max(off) if off else None,
                pairwise_cos_mean=sum(off) / len(off) if off else None, coefs=units)


def switch_analysis(evals: list[dict], steps, anchor: int, row_steps, grams: dict,
                    pcas: dict) -> tuple[dict, dict]:
    """Extrema and pairs of p_ood, and per group the results of `switching`; {group: unit v_sw
    coefficients}. `steps`: every snapshot step; `row_steps`: the drift rows' steps."""
    if len(evals) < 3:
        return dict(peaks=[], troughs=[], pairs=[], skipped=[],
                    reason="metrics.jsonl missing or with fewer than 3 p_ood evals"), {}
    sw = geo.pair_switches([r["step"] for r in evals], [float(r["p_ood"]) for r in evals],
                           set(steps), anchor)
    if not sw["pairs"]:
        sw["reason"] = (
            f"no peaks/troughs of p_ood with prominence >= {PROMINENCE} over +-{RADIUS} evals"
            if not (sw["peaks"] and sw["troughs"])
            else "no peak/trough pair with snapshots at both steps"
        )
        return sw, {}
    peak, trough, _ = geo.switching_pair(evals, steps, anchor)
    sw["v_sw_pair"] = next(i for i, q in enumerate(sw["pairs"])
                           if (q["peak"], q["trough"]) == (peak, trough))
    c_sw, coefs, sw["groups"] = switch_coefs(sw["pairs"], row_steps), {}, {}
    for g in grams:
        sw["groups"][g] = switching(grams[g], pcas[g], c_sw)
        coefs[g] = sw["groups"][g].pop("coefs")
    return sw, coefs


def rebuild_directions(traj, pcas: dict, sw_coefs: dict, save: list[int]):
    """({"<name>.<group>": {key: tensor (CPU)}}, names) for v_b, pc2 and the switch directions of
    the pairs `save`, in one more pass over the snapshots: per block, the block's and the trunk's
    coefficients together (each key read once)."""
    T = len(traj.row_steps)
    n_pc = 2 if T >= 2 and all(p.sigma[1] > 1e-12 * p.sigma[0] for p in pcas.values()) else 1
    names = ["v_b"] + (["pc2"] if n_pc == 2 else []) + [f"v_sw{j}" for j in save]

    def columns(g):  # zero columns for degenerate switch pairs (theta_peak == theta_trough)
        cs = sw_coefs.get(g, [])
        zero = torch.zeros(T, 1, dtype=torch.float64)
        sw = [zero if cs[j] is None else cs[j][:, None] for j in (save if cs else [])]
        return torch.cat([pcas[g].coef(n_pc)] + sw, 1)
    dirs = {f"{n}.{g}": {} for g in traj.groups for n in names}
    for l in range(traj.n_layer):
        g = f"block{l}"
        vs = traj.directions(traj.groups[g], torch.cat([columns(g), columns("trunk")], 1))
        for j, n in enumerate(names):
            dirs[f"{n}.{g}"] = {k: t.cpu() for k, t in vs[j].items()}
            dirs[f"{n}.trunk"].update({k: t.cpu() for k, t in vs[len(names) + j].items()})
    return dirs, names


# ---------------------------------------------------------------------------- analysis of one group
def summarize_windows(ws: list[dict]) -> dict:
    g = [w["cos_global"] for w in ws]
    p = [w["cos_prev"] for w in ws if w["cos_prev"] is not None]
    return dict(cos_global_mean=float(np.mean(g)), cos_global_min=float(np.min(g)),
                cos_prev_mean=float(np.mean(p)) if p else None,
                cos_prev_min=float(np.min(p)) if p else None, windows=ws)


def analyse_group(Ga, D: int, steps, W: int, n_draws: int, p_ood: dict,
                  factors, anchor: int = 0) -> tuple[dict, geo.PCA]:
    """Everything of one group from its Gram with the anchor row (geometry.split_anchor)."""
    G = geo.split_anchor(Ga)[0]
    P = geo.pca(G)
    cb = P.coef(1)[:, 0]
    out = dict(D=D, raw=P.summary(), normalized=geo.pca(G, geo.rows(G, "normalized")).summary(),
               centered=geo.pca(G, geo.rows(G, "centered")).summary() if len(steps) > 1 else None)
    # fixed seeds: the nulls of a run are the same numbers every time the analysis is re-run
    out["null_shuffle"] = geo.shuffle_null(G, n_draws, seed=0)
    out["null_random_directions"] = geo.direction_null(G, D, n_draws, seed=0)
    out["null_matched"] = geo.matched_null(G)
    out["null_matched_pc1"] = out["null_matched"]["pc1"]
    coh = geo.coherence(G)
    out.update(coherence=coh["coherence"], coherence_running=coh["running"])
    wd = geo.weight_decay_split(Ga, cb, factors)
    out.update({k: wd[k] for k in ("cos_vb_theta0", "pc1_decay_removed", "k95_decay_removed",
                                   "null_matched_pc1_decay_removed")})
    out["weight_decay"] = wd
    # what decoupled decay alone contributes to each interval's change of a(t) (and to C(t))
    out["decay_split"] = None if factors is None else geo.decay_split(Ga, cb, factors)
    # the random-walk shape test: a walk's projection on centered PC k follows cos(k pi t / T)
    out["cos_shape"] = geo.cosine_shape(G, steps, anchor)
    out["matched_walk_cos_shape"] = geo.cosine_shape(
        geo.matched_walk(geo.increment_norms_sq(G)), steps, anchor)
    # windows keep the global anchor: re-anchoring each window would measure the local walk,
    # not whether the global direction persists
    if len(steps) >= W:
        out["stability"] = dict(
            rows=(
                "x(t) = theta(t) - theta(anchor): drift from the global anchor, not re-anchored per"
                " window"
            ),
            W=W,
            **summarize_windows(geo.windows(G, W, steps, cb)),
        )
    else:
        out["stability"] = dict(
            skipped=f"{len(steps)} drift rows, fewer than the window of {W} snapshots"
        )
    dec = geo.decompose(G, cb)
    have = [i for i, s in enumerate(steps) if s in p_ood]
    corr = geo.corr_levels_and_differences([dec["r"][i] for i in have],
                                           [p_ood[steps[i]] for i in have])
    why = "fewer than 3 evals at snapshot steps, or a constant series"
    note = {} if corr["levels"] is not None else {"corr_note": why}
    dec.update(f_b_final=dec["f_b"][-1], corr_r_p_ood=corr["levels"],
               corr_r_p_ood_diff=corr["differences"], corr_n=len(have), **note)
    out["decomposition"] = dec
    return out, P


# ----------------------------------------------------------------------------- main
def parse_args(argv):
    p = analysis_parser(__doc__, "trajectory_pca_uncentered", record=True)
    p.add_argument(
        "--window",
        type=int,
        default=10,
        help="window width W in snapshots for the stability analysis (default 10)",
    )
    p.add_argument("--null-draws", type=int, default=1000,
                   help="draws per null model (default 1000)")
    args = p.parse_args(argv)
    if args.window < 2 or args.null_draws < 2:
        p.error("--window and --null-draws must be >= 2")
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    cli(run, parse_args(argv), argv)


def analyse(grams_a: dict, numel: dict, steps, anchor: int, config: dict, metrics: list[dict],
            window: int, null_draws: int) -> dict:
    """Every number of the analysis from the Grams with the anchor row ({group: Ga},
    geometry.split_anchor), the groups' sizes, every snapshot step, the run's config and eval rows:
    a function of a trajectory record (Record.group_grams) or of the snapshots
    (Trajectory.grams(anchor_row=True)) alike."""
    # the anchor's own row is x(anchor) = 0: it is the origin, not a row
    rows = [s for s in steps if s > anchor]
    grams = {g: geo.split_anchor(Ga)[0] for g, Ga in grams_a.items()}
    evals = [
        r for r in metrics if isinstance(r.get("p_ood"), (int, float)) and math.isfinite(r["p_ood"])
    ]
    p_ood = {r["step"]: float(r["p_ood"]) for r in evals}
    factors = geo.run_decay_factors(config, anchor, rows)  # weight decay alone, from the anchor
    groups, pcas = {}, {}
    for g in grams_a:
        groups[g], pcas[g] = analyse_group(grams_a[g], numel[g], rows, window, null_draws, p_ood,
                                           factors, anchor)
    sw, sw_coefs = switch_analysis(evals, steps, anchor, rows, grams, pcas)
    return dict(groups=groups, pcas=pcas, switching=sw, sw_coefs=sw_coefs, p_ood=p_ood, rows=rows)


def run(args, argv):
    t0 = time.perf_counter()
    out_json = out_path(args, "trajectory_pca_uncentered")
    # --- load: the run's trajectory record (made in one streamed pass if missing or stale), or
    # a record alone
    rec, traj, state, device = open_analysis(args, argv)
    grams_a = rec.group_grams(args.anchor)
    res = analyse(grams_a, {g: rec.numel(k) for g, k in rec.groups.items()}, rec.steps, args.anchor,
                  rec.config, rec.metrics, args.window, args.null_draws)
    groups, sw, p_ood, rows = res["groups"], res["switching"], res["p_ood"], res["rows"]
    T = len(rows)

    # --- directions (a second pass over the snapshots): only with the run folder
    out_dir = os.path.dirname(os.path.abspath(out_json))
    os.makedirs(out_dir, exist_ok=True)
    n_sw = len(sw["pairs"])
    saved = []
    if traj is not None:
        # every pair's direction for the block groups and the trunk (2 x float32 per number) only
        # while the file stays small; the v_sw pair is saved in any case
        fits = n_sw * 2 * 4 * rec.numel(rec.groups["trunk"]) <= SWITCH_FILE_LIMIT
        # the v_sw pair always
        save = list(range(n_sw)) if fits else [sw["v_sw_pair"]] if n_sw else []
        dirs, names = rebuild_directions(traj, res["pcas"], res["sw_coefs"], save)
        meta = dict(
            anchor=args.anchor,
            steps=rows,
            keys=traj.groups,
            groups=list(traj.groups),
            names=(
                "<direction>.<group>: v_b (backbone, a(T) > 0), pc2, v_sw (unit theta_peak -"
                " theta_trough of the switching pair: the pair whose p_ood peak is the most"
                " prominent, geometry.switching_pair)"
            ),
            switch_pairs=[sw["pairs"][j] for j in save],
            v_sw_pair=sw["pairs"][sw["v_sw_pair"]] if n_sw else None,
        )
        short = {"v_b": "v_b", "pc2": "pc2", **({f"v_sw{sw['v_sw_pair']}": "v_sw"} if n_sw else {})}
        backbone = {
            f"{short[n]}.{g}": dirs[f"{n}.{g}"]
            for n in names if n in short for g in traj.groups
        }
        geo.save_directions(os.path.join(out_dir, "backbone_directions.safetensors"), backbone,
                            meta)
        saved = ["backbone_directions.safetensors"]
        if save:
            geo.save_directions(
                os.path.join(out_dir, "switch_directions.safetensors"),
                {f"v_sw{j}.{g}": dirs[f"v_sw{j}.{g}"] for j in save for g in traj.groups},
                dict(
                    meta, names="v_sw<i>.<group>: unit theta_peak - theta_trough of switch pair i"
                ),
            )
            saved.append("switch_directions.safetensors")
        sw["saved_pairs"] = len(save)
    else:
        # a record holds inner products only: the directions need the snapshots
        sw["saved_pairs"] = 0

    # --- save
    figs = [
        plot_pc1(groups, T, out_dir),
        plot_spectrum(groups, out_dir),
        plot_decomposition(groups["block0"], rows, p_ood, lambda_step(rec.config, rows), out_dir),
        plot_decay_share(groups, rows, out_dir)
    ]
    result = write_result(
        out_json, "trajectory_pca_uncentered", rec.config,
        dict(DEFINITIONS, window=args.window, null_draws=args.null_draws,
             null_seed=0), groups, t0, argv, device, __file__, anchor=args.anchor,
        snapshot_steps=rows, eval_steps=sorted(p_ood), groups=dict(rec.groups),
        theory=geo.random_walk_theory(T), summary=summary_table(groups, sw), switching=sw,
        files=saved + [os.path.basename(f) for f in figs], run_state=state, record=record_info(rec))
    pv = result["provenance"]
    print(
        f"{out_json}: {T} rows, trunk PC1 {groups['trunk']['raw']['pc1']:.3f}, {len(sw['pairs'])}"
        f" switch pairs; wall {pv['wall_s']} s, peak host memory {pv['peak_host_memory_mib']} MiB"
    )


def summary_table(groups: dict, sw: dict) -> dict:
    """One row per group: the numbers of the paper's tables."""
    out = {}
    for g, r in groups.items():
        row = dict(
            pc1=r["raw"]["pc1"],
            k95=r["raw"]["k95"],
            k99=r["raw"]["k99"],
            pc1_normalized=r["normalized"]["pc1"],
            pc1_centered=r["centered"] and r["centered"]["pc1"],
            null_shuffle_mean=r["null_shuffle"]["mean"],
            null_shuffle_percentile=r["null_shuffle"]["percentile"],
            null_directions_mean=r["null_random_directions"]["mean"],
            null_directions_percentile=r["null_random_directions"]["percentile"],
            window_cos_global_mean=r["stability"].get("cos_global_mean"),
            window_cos_prev_mean=r["stability"].get("cos_prev_mean"),
            f_b_final=r["decomposition"]["f_b_final"],
            corr_r_p_ood=r["decomposition"]["corr_r_p_ood"],
            corr_r_p_ood_diff=r["decomposition"]["corr_r_p_ood_diff"],
            null_matched_pc1=r["null_matched_pc1"],
            pc1_minus_matched=r["raw"]["pc1"] - r["null_matched_pc1"],
            coherence=r["coherence"],
            cos_vb_theta0=r["cos_vb_theta0"],
            share_e0_final=r["weight_decay"]["share_e0_final"],
            decay_share_final=r["weight_decay"].get("decay_share_final"),
            pc1_decay_removed=r["pc1_decay_removed"],
            k95_decay_removed=r["k95_decay_removed"],
            null_matched_pc1_decay_removed=r["null_matched_pc1_decay_removed"],
        )
        if sw.get("groups"):
            ov = [
                p["backbone_overlap"] for p in sw["groups"][g]["pairs"]
                if p["backbone_overlap"] is not None
            ]
            E = [p["E_2_6"] for p in sw["groups"][g]["pairs"] if p["E_2_6"] is not None]
            vsw = sw["groups"][g]["pairs"][sw["v_sw_pair"]]
            row.update(
                switch_overlap_mean=float(np.mean(ov)) if ov else None,
                E_2_6_mean=float(np.mean(E)) if E else None,
                switch_pairwise_cos_max=sw["groups"][g]["pairwise_cos_max"],
                v_sw_backbone_overlap=vsw["backbone_overlap"],
                v_sw_E_2_6=vsw["E_2_6"],
            )
        out[g] = row
    return out


# ----------------------------------------------------------------------------- figures
def plot_pc1(groups: dict, T: int, out_dir: str) -> str:
    """Observed PC1 per group (bars) with the matched null (the reference), the other null models'
    mean +- 2 sd, the random-walk theory, and the PC1 of the drift with its weight-decay component
    removed."""
    plt = pyplot()
    names = list(groups)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(3.5 + 0.6 * len(names), 3.6))
    ax.bar(x, [groups[g]["raw"]["pc1"] for g in names], color="tab:red", alpha=0.75,
           label="observed PC1 (raw)")
    for dx, key, color, label in ((-0.15, "null_shuffle", "k", "shuffled increments"),
                                  (0.15, "null_random_directions", "tab:blue",
                                   "random directions")):
        m = [groups[g][key]["mean"] for g in names]
        s = [2 * groups[g][key]["sd"] for g in names]
        ax.errorbar(x + dx, m, yerr=s, fmt="o", ms=3, color=color, capsize=3,
                    label=f"{label} (mean +- 2 sd)")
    ax.scatter(x, [groups[g]["null_matched_pc1"] for g in names], marker="_", s=400, lw=2.5,
               color="tab:green", zorder=3, label="matched null (observed step sizes)")
    ax.scatter(x, [groups[g]["pc1_decay_removed"] or np.nan for g in names], marker="x", s=30,
               color="tab:purple", zorder=3, label="PC1, decay component removed")
    theory = geo.random_walk_theory(T)
    ax.axhline(8 / math.pi**2, color="grey", ls="--", lw=1, label="8/pi^2")
    ax.axhline(theory["uncentered_T"][0], color="grey", ls=":", lw=1, label=f"finite T = {T}")
    ax.set_xticks(x, names, fontsize=8)
    ax.set_ylim(0, 1.05), ax.set_ylabel("uncentered PC1 (rho_1)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return save_figure(fig, os.path.join(out_dir, "trajectory_pca_pc1.png"))


def plot_decomposition(res: dict, steps, p_ood: dict, lam_step, out_dir: str) -> str:
    """Paper Figure 1: left a(t) and ||r(t)||, right p_ood (grey) with ||r(t)||, block 0."""
    plt = pyplot()
    dec = res["decomposition"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax1.plot(steps, dec["a"], color="tab:red", label="a(t)")
    ax1.plot(steps, dec["r"], color="tab:blue", label="||r(t)||")
    ax1.set_xlabel("step"), ax1.set_title("block 0: backbone coordinate and residual", fontsize=9)
    ev = sorted(p_ood)
    ax2.plot(ev, [p_ood[s] for s in ev], color="grey", label="p_ood")
    ax2.set_ylim(0, 1), ax2.set_xlabel("step"), ax2.set_ylabel("p_ood")
    ax2.set_title("block 0: p_ood and residual norm", fontsize=9)
    ax3 = ax2.twinx()
    ax3.plot(steps, dec["r"], color="tab:blue", label="||r(t)||")
    ax3.set_ylabel("||r(t)||")
    for ax in (ax1, ax2):
        if lam_step is not None:
            ax.axvline(lam_step, color="k", ls="--", lw=0.8, label="lambda step")
    ax1.legend(fontsize=8)
    h2, l2 = ax2.get_legend_handles_labels()
    h3, l3 = ax3.get_legend_handles_labels()
    ax2.legend(h2 + h3, l2 + l3, fontsize=8, loc="upper right")
    return save_figure(fig, os.path.join(out_dir, "trajectory_pca_decomposition_block0.png"))


def plot_spectrum(groups: dict, out_dir: str) -> str:
    """rho_k against k for every group, with the random-walk theory 8/((2k-1)^2 pi^2) and
    the trunk's matched null."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    cmap = plt.get_cmap("viridis")
    blocks = [g for g in groups if g != "trunk"]
    for i, g in enumerate(blocks):
        rho = groups[g]["raw"]["rho"]
        ax.semilogy(range(1,
                          len(rho) + 1), rho, "o-", ms=3, lw=1,
                    color=cmap(i / max(1,
                                       len(blocks) - 1)), label=g)
    rho = groups["trunk"]["raw"]["rho"]
    ax.semilogy(range(1, len(rho) + 1), rho, "s-", ms=4, color="k", label="trunk")
    k = np.arange(1, len(rho) + 1)
    ax.semilogy(k, 8 / ((2 * k - 1) ** 2 * math.pi**2), "--", color="grey", label="random walk")
    m = groups["trunk"]["null_matched"]["rho"]
    ax.semilogy(range(1,
                      len(m) + 1), m, ":", color="tab:green", lw=1.5, label="trunk: matched null")
    ax.set_xlabel("k"), ax.set_ylabel("rho_k (uncentered)")
    ax.legend(fontsize=7, ncol=2)
    return save_figure(fig, os.path.join(out_dir, "trajectory_pca_spectrum.png"))


def plot_decay_share(groups: dict, steps, out_dir: str) -> str:
    """The drift's share along theta(anchor), <x(t), e0>^2 / ||x(t)||^2 (solid), and the share that
    weight decay alone would give, decay_displacement(t)^2 / ||x(t)||^2 (dashed), against t: block
    0, the last block and the trunk."""
    plt = pyplot()
    blocks = [g for g in groups if g != "trunk"]
    show = list(dict.fromkeys([blocks[0], blocks[-1], "trunk"]))
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for g, color in zip(show, ("tab:red", "tab:blue", "k")):
        wd = groups[g]["weight_decay"]
        ax.plot(steps, wd["share_e0"], color=color, lw=1.5, label=f"{g}: observed")
        if "decay_share" in wd:
            ax.plot(steps, wd["decay_share"], color=color, ls="--", lw=1,
                    label=f"{g}: weight decay alone")
    ax.set_ylim(bottom=0), ax.set_xlabel("step")
    ax.set_ylabel(r"share of $\|x(t)\|^2$ along $\theta(\mathrm{anchor})$")
    ax.set_title(
        "drift along the initialization direction (decoupled weight decay shrinks it)", fontsize=9
    )
    ax.legend(fontsize=7, ncol=2)
    return save_figure(fig, os.path.join(out_dir, "trajectory_pca_decay_share.png"))


if __name__ == "__main__":
    main()
