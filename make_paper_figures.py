"""Every figure, table and number of the reproduction report, from results/ only (never snapshots).

    python make_paper_figures.py           # results/ -> paper/figures, paper/generated, README block
    python make_paper_figures.py --results results --version v1 --out /tmp/v1report  # README untouched

Writes paper/figures/<name>.{pdf,png}; paper/generated/macros.tex (one \\newcommand per quoted number),
paper/generated/tab_*.tex (LaTeX tables), claims.md and numbers.json; and the README's generated block
(between the `<!-- generated:results:start -->` and `<!-- generated:results:end -->` lines) when --out
is the repository's paper/ or --readme names a README. Every file is written atomically. A figure
whose inputs are missing is skipped with one line naming what is missing; the rest are still made.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import re

import numpy as np

import claims as cl
import experiments as ex
from readers import (BLOCKS, MECHANICS_JSON, NULL_JSON, ROBUST_JSON, Results, Seed, beta2_curves,
                     fisher_rows, get, group_key, mechanics_rows, open_results, robust_rows,
                     sgd_rows, unigram, val_curve)
from common import fmt_g, write_text
from config import Parser, fail

FIG_W = 7.0  # inches: a full text width of the report
README_START, README_END = "<!-- generated:results:start -->", "<!-- generated:results:end -->"
ROOT = os.path.dirname(os.path.abspath(__file__))
DIGITS = ["Zero", "One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight", "Nine"]


class Missing(Exception):
    """A figure's input is not in results/ (the message names it)."""


def need(x, what: str):
    if x is None or (hasattr(x, "__len__") and len(x) == 0):
        raise Missing(what)
    return x


def plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as p

    p.rcParams.update(
        {
            "font.size": 8,
            "axes.titlesize": 8.5,
            "axes.labelsize": 8,
            "legend.fontsize": 6.5,
            "xtick.labelsize": 7,
            "ytick.labelsize": 7,
            "lines.linewidth": 1.1,
            "figure.dpi": 100,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "pdf.fonttype": 42,
        }
    )
    return p


def lambda_step(s: Seed) -> int | None:
    cfg = s.res.json(f"{s.dir}/config.json")
    return get(cfg, "config.lambda_step")


def mark_lambda(ax, s: Seed):
    t = lambda_step(s)
    if t:
        ax.axvline(t, color="0.5", ls="--", lw=0.7)


# ----------------------------------------------------------------------------- figures
def fig_decomposition(p, s: Seed):
    """Figure 1: a(t), ||r(t)|| and p_ood (block 0)."""
    dec, steps = (
        need(s.decomposition("block0"), "trajectory_pca_uncentered.json (block0 decomposition)"),
        s.steps(),
    )
    pood = s.p_ood_at(steps)
    need([x for x in pood if x is not None], "metrics.jsonl (p_ood)")
    fig, (a1, a2) = p.subplots(1, 2, figsize=(FIG_W, 2.5))
    a1.plot(steps, dec["a"], color="C3", label=r"$a(t)$, backbone coordinate")
    a1.plot(steps, dec["r"], color="C0", label=r"$\|r(t)\|$, residual")
    along = group_key(s.pca, "block0", "along")
    if along:
        a1.plot(steps, along, color="C2", ls=":", label=r"$\langle x(t), -e_0\rangle$ (weight-decay direction)")
    mark_lambda(a1, s)
    a1.set(xlabel="step", ylabel=r"drift from $\theta(0)$", title="block 0: backbone and residual")
    a1.set_ylim(top=1.6 * max(max(dec["a"]), max(dec["r"])))  # headroom: the legend sits above the curves
    a1.legend(frameon=False, loc="upper left", ncol=1)
    a2.plot(steps, dec["r"], color="C0", label=r"$\|r(t)\|$")
    c = dec.get("corr_r_p_ood")
    a2.set(
        xlabel="step",
        ylabel=r"$\|r(t)\|$",
        title=r"residual and $p_{ood}$" + (f" (corr. of levels {c:.2f})" if c is not None else ""),
    )
    b = a2.twinx()
    b.spines["right"].set_visible(True)
    (hp,) = b.plot(steps, pood, color="0.45", lw=0.9, label=r"$p_{ood}$")
    b.set_ylabel(r"$p_{ood}$")
    mark_lambda(a2, s)
    a2.legend(handles=[a2.get_lines()[0], hp], frameon=False, loc="upper right")
    return fig


def fig_alignment(p, s: Seed):
    """Figure 2: per-batch gradient |cos| with v_b against the noise floor; update C(t) and the walk's."""
    g, u = need(s.grad, "backbone_gradient_analysis.json"), need(s.update, "backbone_update_analysis.json")
    gs, cosm = get(g, "steps"), need(get(g, "results.combined.block0.cos_mean"), "gradient cos_mean (block0)")
    cossd, floor = get(g, "results.combined.block0.cos_sd"), get(g, "noise_floor.block0")
    C = np.asarray(get(u, "groups.block0.C"), float)
    mids = np.asarray(get(u, "u_steps"), float) - 100 * get(u, "phases.scale", 1.0)
    wc = group_key(u, "block0", "matched_walk_update_C")
    if wc is None and (n2 := s.increment_norms_sq("block0")) is not None:
        wc = cl.walk_update_C(n2)
    fig, (a1, a2) = p.subplots(1, 2, figsize=(FIG_W, 3.0))
    a1.errorbar(
        gs,
        cosm,
        yerr=cossd,
        fmt="o",
        ms=2.5,
        color="C0",
        elinewidth=0.6,
        label=r"per-batch gradient $|\cos(g, v_b)|$",
    )
    a1.plot(mids, np.abs(C), color="C3", label=r"200-step update $|C(t)|$")
    if wc is not None:
        a1.plot(mids, np.abs(wc), color="0.4", ls="--", label=r"matched random walk $|C(t)|$")
    a1.axhline(floor, color="k", ls=":", lw=0.8, label=r"noise floor $\sqrt{2/(\pi D)}$" + f" = {floor:.1e}")
    a1.set(
        yscale="log",
        xlabel="step (updates at their midpoint)",
        ylabel=r"$|\cos|$ with $v_b$",
        title="block 0: gradient vs update",
    )
    a2.plot(mids, C, color="C3", label=r"update $C(t)$ (signed)")
    if wc is not None:
        a2.plot(mids, wc, color="0.4", ls="--", label=r"matched walk $C(t)$")
    a2.axhline(0, color="k", lw=0.5)
    ts = get(u, "summary.block0.t_star")
    if ts:
        a2.axvline(ts, color="C3", ls=":", lw=0.8, label=f"$t^* = {ts}$")
    mark_lambda(a2, s)
    a2.set(xlabel="step", ylabel=r"$C(t)$", title="signed update alignment")
    a2.legend(frameon=False)
    fig.legend(handles=a1.get_legend_handles_labels()[0], frameon=False, loc="lower center", ncol=2)
    fig._rect = (0, 0.17, 1, 1)
    return fig


TEXV = {"v_b": "v_b", "v_sw": "v_{sw}", "v_PC2": "v_{PC2}"}  # direction key -> its mathtext


def fisher_series(s: Seed, key: str = "q") -> dict:
    rows = need(fisher_rows(s), "backbone_fisher_analysis.json (table)")
    out = {"steps": [st for st, _ in rows]}
    for name in ("v_b", "v_sw", "v_PC2"):
        out[name] = [get(x, f"{key}.{name}") for _, x in rows]
    part = {"q": None, "q_lm": "lm", "q_probe": "probe"}[key]  # the split's parts: lm.q_random, probe.q_random
    out["random"] = [(x.get(part) or {}).get("q_random") if part else x.get("q_random") for _, x in rows]
    out["alpha"] = [x.get("alpha") for _, x in rows]
    out["frac"] = [
        x.get("lambda1_frac", x["lambda1"] / x["trace"] if x.get("trace") else None) for _, x in rows
    ]
    return out


def mark_rank1(ax, f: dict):
    r1 = [st for st, fr in zip(f["steps"], f["frac"]) if fr is not None and fr > cl.RANK1]
    for st in r1:
        ax.axvspan(st - 100, st + 100, color="C1", alpha=0.12, lw=0)
    return len(r1)


def fig_fisher(p, s: Seed):
    """Figure 3: Rayleigh quotients q(v), anisotropy alpha, lambda_1 / trace (rank-1 snapshots shaded)."""
    f = fisher_series(s)
    fig, (a1, a2, a3) = p.subplots(1, 3, figsize=(FIG_W, 2.9))
    R = np.asarray([r if r else [np.nan] for r in f["random"]], float)
    a1.fill_between(
        f["steps"], np.nanmin(R, 1), np.nanmax(R, 1), color="0.8", label="K = 10 random directions"
    )
    for name, c in (("v_b", "C3"), ("v_sw", "C0"), ("v_PC2", "C2")):
        a1.plot(f["steps"], f[name], color=c, label=f"$q({TEXV[name]})$")
    n1 = mark_rank1(a1, f)
    a1.set(yscale="log", xlabel="step", ylabel=r"$q(v) = \|G v\|^2 / M$", title="Rayleigh quotients (trunk)")
    a1.legend(frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2)
    a2.plot(f["steps"], f["alpha"], color="C3")
    a2.axhline(1, color="k", ls=":", lw=0.8)
    mark_rank1(a2, f)
    mark_lambda(a2, s)
    a2.set(yscale="log", xlabel="step", ylabel=r"$\alpha = q(v_b) / \overline{q(w_k)}$", title="anisotropy")
    a3.plot(f["steps"], f["frac"], color="C1", marker="o", ms=2)
    a3.axhline(cl.RANK1, color="k", ls=":", lw=0.8)
    a3.set(
        xlabel="step",
        ylabel=r"$\lambda_1 / \mathrm{tr}$",
        ylim=(0, 1.05),
        title=f"rank-1 (> {cl.RANK1}): {n1} snapshots",
    )
    return fig


def fig_fisher_split(p, s: Seed):
    """The Fisher of the LM loss and of the probe loss, rank-1 snapshots of the combined one shaded."""
    rows = need(fisher_rows(s), "backbone_fisher_analysis.json (table)")
    if not any(isinstance(x.get("q_lm"), dict) for _, x in rows):
        raise Missing(
            "q_lm / q_probe in backbone_fisher_analysis.json (the Fisher split of the new analysis)"
        )
    f, lm, pr = fisher_series(s), fisher_series(s, "q_lm"), fisher_series(s, "q_probe")
    fig, axes = p.subplots(1, 2, figsize=(FIG_W, 2.4), sharey=True)
    for ax, ser, title in ((axes[0], lm, "LM loss"), (axes[1], pr, "probe loss")):
        for name, c in (("v_b", "C3"), ("v_sw", "C0"), ("v_PC2", "C2")):
            if any(v is not None for v in ser[name]):
                ax.plot(ser["steps"], ser[name], color=c, label=f"$q({TEXV[name]})$")
        R = need([np.nanmean(r) for r in ser["random"] if r], f"the random directions of the {title} Fisher")
        ax.plot([st for st, r in zip(ser["steps"], ser["random"]) if r], R, color="0.5", ls="--",
                label=r"mean $q(w_k)$, random")
        mark_rank1(ax, f)
        ax.set(yscale="log", xlabel="step", title=f"Fisher of the {title} (shaded: combined rank-1)")
    axes[0].set_ylabel(r"$q(v)$")
    fig.legend(*axes[0].get_legend_handles_labels(), frameon=False, ncol=4, loc="lower center")
    fig._rect = (0, 0.1, 1, 1)
    return fig


def fig_reheat(p, s: Seed):
    """Figure 4: reheating from the last snapshot at three learning rates: p_ood, a(t) and ||r(t)||."""
    d = need(s.res.json(f"reheat/seed{s.seed}/reheat.json"), f"reheat/seed{s.seed}/reheat.json")
    T0 = get(d, "source.step")
    src = get(d, "source.metrics", [])
    fig, (a1, a2) = p.subplots(1, 2, figsize=(FIG_W, 2.5))
    a1.plot([m["step"] for m in src], [m["p_ood"] for m in src], color="0.6", label="original training")
    for i, r in enumerate(get(d, "runs", [])):
        ms = r.get("metrics") or []
        a1.plot(
            [T0 + m["step"] for m in ms],
            [m["p_ood"] for m in ms],
            color=f"C{i}",
            label=f"reheat lr {r['lr']:.0e}".replace("e-0", "e-"),
        )
    a1.axhline(get(d, "threshold", 0.6), color="k", ls=":", lw=0.7)
    a1.set(
        xlabel="step (reheating after the original run's last step)", ylabel=r"$p_{ood}$", title="probe re-entry"
    )
    a1.legend(frameon=False, loc="upper right")
    srcg = get(d, "projection.source.groups.trunk")
    need(srcg, "reheat.json projection (trunk)")
    st = get(d, "projection.source.row_steps")
    a2.plot(st, srcg["a"], color="0.6", label=r"$a(t)$, original")
    a2.plot(st, srcg["r"], color="0.6", ls="--", label=r"$\|r(t)\|$, original")
    for i, (name, r) in enumerate(get(d, "projection.runs", {}).items()):
        lr = name.rsplit("lr", 1)[-1]
        a2.plot(
            [T0 + x for x in r["steps"]], r["groups"]["trunk"]["a"], color=f"C{i}", label=f"$a(t)$, lr {lr}"
        )
        a2.plot([T0 + x for x in r["steps"]], r["groups"]["trunk"]["r"], color=f"C{i}", ls="--")
    a2.set(
        xlabel="step",
        ylabel=r"trunk drift from $\theta(0)$",
        title=r"backbone coordinate and residual (original $v_b$)",
    )
    a2.legend(frameon=False, loc="center left")
    return fig


def fig_pc1_nulls(p, s: Seed):
    """Observed PC1 per block and trunk against its nulls: equal-norm walk, shuffle, directions, matched."""
    need(s.pca, "trajectory_pca_uncentered.json")
    groups = [g for g in BLOCKS + ["trunk"] if s.pc1(g) is not None]
    nl = [s.nulls(g) for g in groups]
    x = np.arange(len(groups))
    fig, ax = p.subplots(figsize=(FIG_W, 2.5))
    ax.axhline(
        100 * nl[0]["theory"],
        color="k",
        ls=":",
        lw=0.8,
        label=r"equal-norm walk $8/\pi^2$" + f" ($T$ = {len(s.steps())})",
    )
    sh = [n["shuffle"] for n in nl]
    ax.errorbar(
        x - 0.15,
        [100 * d.get("mean", np.nan) for d in sh],
        yerr=[100 * d.get("sd", 0) for d in sh],
        fmt="s",
        ms=3,
        color="C0",
        label=r"time-shuffle null (mean $\pm$ sd)",
    )
    ax.plot(
        x + 0.15,
        [100 * n["directions"].get("mean", np.nan) for n in nl],
        "x",
        color="C2",
        label="random-directions null",
    )
    ax.plot(
        x,
        [100 * n["matched"] if n["matched"] is not None else np.nan for n in nl],
        "_",
        ms=14,
        mew=2,
        color="C3",
        label=f"matched null (from {nl[0]['matched_source']})",
    )
    ax.plot(x, [100 * n["pc1"] for n in nl], "o", color="k", ms=4, label="observed PC1")
    ax.set_xticks(x, [g.replace("block", "block ") for g in groups])
    ax.set(ylabel="uncentered PC1 (%)", title=f"PC1 of the drift against its nulls (seed {s.seed})")
    fig.legend(*ax.get_legend_handles_labels(), frameon=False, ncol=3, loc="lower center")
    fig._rect = (0, 0.16, 1, 1)  # the legend below the axes, off the markers
    lo = min(100 * min(n["pc1"], n["shuffle"].get("mean", 1)) for n in nl)
    ax.set_ylim(lo - 4, 100)
    return fig


def window_rows(res: Results) -> list[dict]:
    """[600, 2000] window geometry of every optimizer run: SGD-family controls and the beta2 sweep."""
    rows = []
    for k, r in sgd_rows(res).items():
        if r.get("pc1_pct") is None:
            continue
        rows.append(
            {
                "label": f"{k}: {r.get('optimizer', '')}".strip(),
                "pc1": r["pc1_pct"],
                "k95": r["k95"],
                "drift": r["drift"],
                "shuffle": r.get("null_shuffle_pc1_pct"),
                "null": r.get("null_matched_pc1_pct", r.get("null_direction_pc1_pct")),
                "val": r.get("final_val"),
            }
        )
    b2 = res.json("beta2/beta2_seed42.json")
    for r in get(b2, "table", []) if b2 else []:
        run = next((x for x in get(b2, "runs", []) if x["beta2"] == r["beta2"]), {})
        w = get(run, "geometry.window.groups.trunk") or {}
        if r.get("window_pc1") is None:
            continue
        m = w.get("null_matched_pc1", get(w, "null_direction.mean"))
        rows.append(
            {
                "label": f"AdamW beta2 {r['beta2']:g}",
                "pc1": 100 * r["window_pc1"],
                "k95": r["window_k95"],
                "drift": r["window_drift"],
                "shuffle": 100 * get(w, "null_shuffle.mean", np.nan),
                "null": 100 * m if m is not None else None,
                "val": r.get("final_val"),
            }
        )
    return rows


def fig_windows(p, res: Results):
    """Window [600, 2000] geometry of AdamW, the SGD family and the beta2 runs, against their nulls."""
    rows = need(window_rows(res), "sgd_control/sgd_control.json or beta2/beta2_seed42.json")
    x = np.arange(len(rows))
    fig, (a1, a2, a3) = p.subplots(1, 3, figsize=(FIG_W, 2.7), gridspec_kw={"width_ratios": [1.4, 1, 1]})
    a1.bar(x, [r["pc1"] for r in rows], color="0.75", label="observed PC1")
    a1.plot(
        x,
        [r["shuffle"] if r["shuffle"] is not None else np.nan for r in rows],
        "s",
        ms=3,
        color="C0",
        label="shuffle null",
    )
    a1.plot(
        x,
        [r["null"] if r["null"] is not None else np.nan for r in rows],
        "_",
        ms=10,
        mew=2,
        color="C3",
        label="matched (random-directions) null",
    )
    a1.set(ylabel="PC1 (%)", ylim=(50, 101), title="window [600, 2000], anchor 600")
    fig.legend(handles=a1.get_legend_handles_labels()[0], frameon=False, loc="upper center", ncol=3)
    fig._rect = (0, 0, 1, 0.9)
    a2.bar(x, [r["drift"] for r in rows], color="C4")
    a2.set(ylabel=r"drift $\|\theta(2000) - \theta(600)\|$", title="drift")
    a3.bar(x, [r["val"] if r["val"] is not None else np.nan for r in rows], color="C5")
    uni = unigram(res)
    if uni is not None:
        a3.axhline(uni, color="k", ls=":", lw=0.8, label=f"unigram baseline {uni:.2f}")
        a3.legend(frameon=False, loc="lower center", bbox_to_anchor=(0.5, 1.08))
    a3.set(ylabel="final validation loss")
    for ax in (a1, a2, a3):
        ax.set_xticks(x, [r["label"].replace("beta2", r"$\beta_2$") for r in rows], rotation=60, ha="right",
                      fontsize=6)
    return fig


def fig_training(p, s: Seed):
    """Training curves: validation loss (n-gram baselines beside it), probe accuracies, the SGD runs."""
    m = need(s.metrics, f"{s.dir}/metrics.jsonl")
    fig, (a1, a2) = p.subplots(1, 2, figsize=(FIG_W, 2.5))
    st = [r["step"] for r in m]
    a1.plot(st, [r.get("val_loss") for r in m], color="k", label=f"AdamW seed {s.seed} (10k steps)")
    sgd = s.res.json("sgd_control/sgd_control.json")
    for i, (k, c) in enumerate((get(sgd, "curves", {}) or {}).items()):
        if k != "A":
            a1.plot(c["step"], c["val_loss"], color=f"C{i + 1}", lw=0.9, label=f"run {k} (SGD family)")
    stats = s.res.corpus_stats()
    for n, ls in (("1", ":"), ("4", "--")):
        v = get(stats, f"ngram_val_nats.{n}") if stats else None
        if v is not None:
            a1.axhline(v, color="0.5", ls=ls, lw=0.8, label=f"{n}-gram baseline {v:.2f}")
    a1.set(yscale="log", xlabel="step", ylabel="validation loss (nats/token)", title="language modelling")
    a1.legend(frameon=False)
    a2.plot(st, [r.get("p_in") for r in m], color="C2", label=r"$p_{in}$ (gaps 5-30)")
    a2.plot(st, [r.get("p_ood") for r in m], color="C3", label=r"$p_{ood}$ (gaps 80-200)")
    mark_lambda(a2, s)
    a2.set(xlabel="step", ylabel="probe accuracy", title="probe", ylim=(-0.02, 1.02))
    a2.legend(frameon=False)
    return fig


def fig_spectrum(p, s: Seed):
    """rho_k of the trunk drift (raw, row-normalized, centered) against the walk theory and matched null."""
    r = need(get(s.pca, "results.trunk"), "trajectory_pca_uncentered.json (trunk)")
    k = np.arange(1, 11)
    fig, ax = p.subplots(figsize=(FIG_W * 0.6, 2.5))
    for key, c in (("raw", "k"), ("normalized", "C0"), ("centered", "C2")):
        rho = get(r, f"{key}.rho")
        if rho:
            ax.plot(k[: len(rho)], rho[:10], "o-", ms=3, color=c, label=f"observed, {key} rows")
    th = get(s.pca, "theory.uncentered_T") or [8 / ((2 * i - 1) ** 2 * math.pi**2) for i in k[:5]]
    ax.plot(k[: len(th)], th, ":", color="k", label="equal-norm walk (uncentered)")
    thc = get(s.pca, "theory.centered_T")
    if thc:
        ax.plot(k[: len(thc)], thc, ":", color="C2", label="equal-norm walk (centered)")
    n2 = s.increment_norms_sq("trunk")
    if n2 is not None:
        w = np.sort(np.linalg.eigvalsh(cl.matched_walk(n2)))[::-1]
        ax.plot(k, (w / w.sum())[:10], "--", color="C3", label="matched walk (uncentered)")
    ax.set(yscale="log", xlabel="component $k$", ylabel=r"$\rho_k$", title="trunk drift spectrum")
    ax.legend(frameon=False)
    return fig


def fig_coherence(p, s: Seed):
    """The coherence ratio ||x(t)||^2 / sum_s<=t ||d(s)||^2 against t (1: orthogonal increments)."""
    need(s.pca, "trajectory_pca_uncentered.json")
    fig, ax = p.subplots(figsize=(FIG_W * 0.6, 2.4))
    n = 0
    for i, g in enumerate(BLOCKS + ["trunk"]):
        run = s.coherence_running(g)
        if run:
            ax.plot(
                s.steps()[: len(run)],
                run,
                color="k" if g == "trunk" else p.cm.viridis(i / 8),
                lw=1.6 if g == "trunk" else 0.8,
                label=g,
            )
            n += 1
    need(n or None, "coherence_running, or the update analysis' u_norm to compute it")
    ax.axhline(1, color="k", ls=":", lw=0.8)
    ax.set(
        xlabel="step",
        ylabel=r"$\|x(t)\|^2 / \sum_{s \leq t} \|d(s)\|^2$",
        title="coherence of the increments (< 1: mean-reverting)",
    )
    ax.legend(frameon=False, ncol=3)
    return fig


def fig_switching(p, s: Seed):
    """Switch directions: |<v_sw, v_b>| per pair and block, beside the |C| of ordinary 200-step updates."""
    sw = need(get(s.pca, "switching.groups"), "trajectory_pca_uncentered.json (switching)")
    pairs = get(s.pca, "switching.pairs", [])
    fig, (a1, a2) = p.subplots(1, 2, figsize=(FIG_W, 2.4))
    for i, g in enumerate([g for g in BLOCKS + ["trunk"] if g in sw]):
        ov = [q["backbone_overlap"] for q in sw[g]["pairs"]]
        a1.plot([i] * len(ov), ov, "o", ms=3, color="C0", alpha=0.7)
        a2.bar(i, np.mean([q["E_2_6"] for q in sw[g]["pairs"]]), color="C2")
    groups = [g for g in BLOCKS + ["trunk"] if g in sw]
    if s.update:
        C = np.abs(np.asarray(get(s.update, "groups.block0.C"), float))
        a1.axhline(
            float(np.mean(C)),
            color="C3",
            ls="--",
            lw=0.8,
            label=r"ordinary 200-step updates, mean $|C|$ (block 0)",
        )
        fig.legend(*a1.get_legend_handles_labels(), frameon=False, loc="lower center")
        fig._rect = (0, 0.08, 1, 1)
    for ax in (a1, a2):
        ax.set_xticks(range(len(groups)), [g.replace("block", "b") for g in groups])
    a1.set(ylabel=r"$|\langle v_{sw}, v_b\rangle|$")
    a1.set_title(f"switch directions ({len(pairs)} peak-trough pairs)")
    a2.set(ylabel=r"$E_{2:6}$ (mean over pairs)", title="transverse part captured by PCs 2-6")
    return fig


def fig_block_projection(p, s: Seed):
    """Signed gradient projection b_l(t) = <g_l, v_b^(l)> per block and its cumulative sum B_l."""
    g = need(s.grad, "backbone_gradient_analysis.json")
    st = get(g, "steps")
    fig, (a1, a2) = p.subplots(1, 2, figsize=(FIG_W, 2.4))
    for i, b in enumerate(BLOCKS):
        bl, B = get(g, f"results.combined.{b}.b"), get(g, f"results.combined.{b}.B")
        if bl:
            c = "C3" if b == "block0" else p.cm.Blues(0.35 + 0.08 * i)
            a1.plot(st, bl, color=c, lw=1.2 if b == "block0" else 0.7, label=b.replace("block", "block ") if i in (0, 1, 7) else None)
            a2.plot(st, B, color=c, lw=1.2 if b == "block0" else 0.7)
    for ax in (a1, a2):
        ax.axhline(0, color="k", lw=0.5)
        mark_lambda(ax, s)
    a1.set(xlabel="step", ylabel=r"$b_l(t)$", title="signed gradient projection per block", yscale="symlog")
    a1.set_yscale("symlog", linthresh=1e-3)
    a1.legend(frameon=False)
    a2.set(xlabel="step", ylabel=r"$B_l = \sum_t b_l(t)$", title="cumulative")
    return fig


def fig_decay_share(p, s: Seed):
    """The drift's share along theta(0) (weight decay) against t, with decay alone beside it."""
    need(s.pca, "trajectory_pca_uncentered.json")
    share = {g: group_key(s.pca, g, "share_e0") for g in BLOCKS + ["trunk"]}
    if not any(share.values()):
        raise Missing("share_e0 (weight-decay decomposition) in trajectory_pca_uncentered.json")
    fig, ax = p.subplots(figsize=(FIG_W * 0.6, 2.4))
    for i, (g, sh) in enumerate(share.items()):
        if sh:
            ax.plot(
                s.steps()[: len(sh)], sh, color="k" if g == "trunk" else p.cm.viridis(i / 8), lw=0.9, label=g
            )
    ds = group_key(s.pca, "trunk", "decay_share")
    if ds:
        ax.plot(s.steps()[: len(ds)], ds, "--", color="C3", label="decay alone (trunk)")
    ax.set(xlabel="step", ylabel=r"$\langle x, e_0\rangle^2 / \|x\|^2$", title=r"share of the drift along $\theta(0)$")
    ax.legend(frameon=False, ncol=2)
    return fig


# ----------------------------------------------------------------------------- fine-tuning study, controls
FT_DIR = "seed42/analysis"  # where finetune_geometry.py writes its study (finetune_*.json)


def finetune(res: Results) -> dict | None:
    """finetune_geometry.finetune_summary of results/<version>/seed42/analysis, None when absent."""
    d = res.path(FT_DIR)
    if not all(os.path.exists(os.path.join(d, f"finetune_{e}.json")) for e in ("full_vs_lora", "alignment",
                                                                               "activity", "rank", "table")):
        return None

    try:
        return ex.finetune_summary(d)
    except (KeyError, TypeError, ValueError, OSError):
        return None


def fig_finetune(p, res: Results):
    """Full fine-tuning vs LoRA: alignment over steps, layer-wise activity, per-layer mean |projection|."""
    ft = need(finetune(res), f"{FT_DIR}/finetune_*.json")
    fv = res.json(f"{FT_DIR}/finetune_full_vs_lora.json")["results"]
    al = res.json(f"{FT_DIR}/finetune_alignment.json")["results"]["alignment"]["groups"]["overall"]
    fig, (a1, a2, a3) = p.subplots(1, 3, figsize=(FIG_W, 2.3))
    a = ft["alignment"]
    a1.plot(a["steps"], a["cos"], color="k", marker=".", label=f"cos(dW full, LoRA rank {a['rank']})")
    if al.get("ceiling"):
        a1.plot(a["steps"], al["ceiling"], color="C0", ls="--", label=f"rank-{a['rank']} ceiling")
    a1.axhline(a["random_level"], color="0.5", ls=":", label=f"random direction {a['random_level']:.0e}")
    a1.axhspan(cl_study("align_lo"), cl_study("align_hi"), color="C3", alpha=0.15, label="study 0.17-0.19")
    a1.set(xlabel="fine-tuning step", ylabel="alignment", title="full FT vs LoRA update", ylim=(0, 1))
    a1.legend(frameon=False, fontsize=5.5)
    L = np.arange(len(ft["activity"]["full"]))
    for m, c, off in (("full", "k", -0.2), ("lora", "C1", 0.2)):
        a2.bar(L + off, ft["activity"][m], width=0.4, color=c,
               label=f"{m} (centroid {ft['activity']['centroid_' + m]:.2f})")
        proj = [fv[m][f"layer{i}"]["proj_abs_mean"] for i in L]
        nul = [fv[m][f"layer{i}"]["proj_abs_mean_null"] for i in L]
        a3.plot(L + off, proj, "o", ms=3.5, color=c, label=m)
        a3.plot(L + off, nul, "_", color="C3", ms=7, mew=1.5, label="random level" if m == "full" else None)
    a2.set(xlabel="layer", ylabel=r"$\|\Delta W_l\| / \|W_l(0)\|$", title="layer-wise activity", xticks=L)
    a3.set(xlabel="layer", ylabel=r"mean $|\langle g, z\rangle|$", xticks=L, yscale="log")
    a2.set_ylim(0, 1.35 * max(max(ft["activity"]["full"]), max(ft["activity"]["lora"])))  # room for the legend
    a2.legend(frameon=False, fontsize=5.5, loc="upper left")
    a3.legend(frameon=False, fontsize=5.5, loc="lower left", bbox_to_anchor=(0, 1.0), ncol=3, borderaxespad=0)
    a3.set_title(r"gradient on fixed random $z$", pad=12)
    return fig


def cl_study(key: str) -> float:

    return ex.FT_STUDY[key]


CONTROL_RUNS = {  # run folder under sgd_control/ -> (legend, macro name); earlier/: an earlier run of a config
    "runs/sgd_A_seed42": ("A: AdamW", "A"),
    "runs/sgd_A0_seed42": ("A0: A, no decay", "AZero"),
    "runs/sgd_D_seed42": ("D: SGD+momentum", "D"),
    "earlier/sgd_D_seed42_bf633bf": ("D, earlier run", "DEarlier"),
    "runs/sgd_D0_seed42": ("D0: D, no decay", "DZero"),
}
D_SWEEP = re.compile(r"sgd_Dsweep_lr([0-9.e-]+)_seed42$")


def control_curves(res: Results) -> dict[str, dict[int, float]]:
    """run folder (as in CONTROL_RUNS) -> {step: validation loss} of the controls present."""
    out = {}
    for run in CONTROL_RUNS:
        m = res.metrics(f"sgd_control/{run}/metrics.jsonl")
        if m:
            out[run] = val_curve(m)
    return out


def d_sweep(res: Results) -> dict[float, float]:
    """D's sweep: learning rate -> validation loss at the sweep's last eval (its stop step)."""
    root = res.path("sgd_control/runs")
    out = {}
    for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        hit = D_SWEEP.match(name)
        c = val_curve(res.metrics(f"sgd_control/runs/{name}/metrics.jsonl")) if hit else {}
        if c:
            out[float(hit.group(1))] = c[max(c)]
    return dict(sorted(out.items()))


def fig_controls(p, res: Results):
    """Validation loss of the controls A, A0, D (two runs), D0 against step, with the unigram; D's sweep; the
    beta2 sweep's runs."""
    cur = need(control_curves(res), "sgd_control/runs/*/metrics.jsonl")
    sweep, b2 = d_sweep(res), beta2_curves(res)
    fig, (ax, bx, cx) = p.subplots(1, 3, figsize=(FIG_W, 2.7), gridspec_kw=dict(width_ratios=[1.8, 1, 1.2]))
    colors = {"A": "C0", "AZero": "C3", "D": "C1", "DEarlier": "C1", "DZero": "C4"}
    for run, c in cur.items():
        st, (label, name) = sorted(c), CONTROL_RUNS[run]
        ax.plot(st, [c[t] for t in st], color=colors[name], ls="--" if run.startswith("earlier/") else "-",
                lw=1.2, label=label)
    uni = unigram(res)
    if uni is not None:
        ax.axhline(uni, color="0.5", ls=":", lw=0.8, label=f"unigram {uni:.2f}")
    ax.set(yscale="log", ylim=(0.9, 60), xlabel="step", ylabel="validation loss (nats/token)",
           title="the controls, 4,000 steps")  # the headroom holds the legend
    ax.legend(frameon=False, fontsize=6, loc="upper right", ncol=2)
    if sweep:
        lrs = list(sweep)
        bx.plot(lrs, [sweep[x] for x in lrs], "o-", color="C1", label="D's sweep")
        a = cur.get("runs/sgd_A_seed42", {})
        if 1000 in a:
            bx.axhline(a[1000], color="C0", ls="--", lw=0.8, label="A at step 1,000")
        bx.set(xscale="log", xlabel="SGD learning rate", ylabel="validation loss at step 1,000",
               title="D's sweep, 1,000 steps each")
        bx.legend(frameon=False, fontsize=6, loc=(0.02, 0.3))
    else:
        bx.set_axis_off()
    if b2:
        top = 60.0  # a diverged run's losses (1e4) would flatten the others: it is named, not drawn
        for i, (b, (c, status)) in enumerate(b2.items()):
            st = sorted(c)
            label = f"$\\beta_2$ = {b:g}"
            color = p.cm.viridis(i / max(1, len(b2) - 1))
            if status == "diverged":
                label += f": diverged, step {max(c):,}"
                st = [t for t in st if c[t] <= top] + [max(c)]
                cx.plot([max(c)], [top], "x", ms=6, mew=1.5, color=color, clip_on=False)
            cx.plot(st, [min(c[t], top) for t in st], color=color, lw=1.4 if status == "diverged" else 1.1,
                    ls="--" if status == "diverged" else "-", label=label)
        cx.set(yscale="log", ylim=(0.9, top), xlabel="step", ylabel="validation loss (nats/token)",
               title="the $\\beta_2$ sweep's runs")
        cx.legend(frameon=False, fontsize=6, loc="upper right")
    else:
        cx.set_axis_off()
    return fig


def seed_figs(s):
    return [
        ("fig1_decomposition", fig_decomposition),
        ("fig2_alignment", fig_alignment),
        ("fig3_fisher", fig_fisher),
        ("fig4_reheat", fig_reheat),
        ("fig_pc1_nulls", fig_pc1_nulls),
        ("fig_training", fig_training),
        ("fig_spectrum", fig_spectrum),
        ("fig_coherence", fig_coherence),
        ("fig_switching", fig_switching),
        ("fig_block_projection", fig_block_projection),
        ("fig_decay_share", fig_decay_share),
        ("fig_fisher_split", fig_fisher_split),
    ]



def drop_stale(out: str, name: str):
    """A skipped figure's old files would show another results set's figure in the report: remove them."""
    for ext in ("pdf", "png"):
        f = os.path.join(out, f"{name}.{ext}")
        if os.path.exists(f):
            os.remove(f)


def drop_partial(out: str):
    """Temp files of a figure write that was killed (<name>.<ext>.tmp<pid>.<ext>): never a result."""
    for f in glob.glob(os.path.join(out, "*.tmp*")):
        os.remove(f)


def save(fig, path: str):
    """Write a figure atomically (temp name, then a rename) with no date in a PDF: same inputs, same bytes."""
    ext = os.path.splitext(path)[1][1:]
    tmp = f"{path}.tmp{os.getpid()}.{ext}"
    meta = {"CreationDate": None} if ext == "pdf" else {}
    try:
        fig.savefig(tmp, dpi=150 if ext == "png" else None, metadata=meta)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def archived(res: Results, rel: str) -> Results:
    """res when it holds `rel`, else the archived corpus-v1 results set when that does (the report labels
    whatever it draws from it "corpus v1"), else res."""
    if os.path.exists(res.path(rel)) or res.version == ARCHIVE:
        return res
    old = Results(res.root, ARCHIVE)
    return old if old.dir and os.path.exists(old.path(rel)) else res


ARCHIVE = "v1"  # the archived results set whose Tables 9-11 and Figure 4 stand in while a newer one lacks them
REHEAT_JSON = "reheat/seed42/reheat.json"


def make_figures(res: Results, seed: Seed | None, out: str, log=print, inspect=None) -> list[str]:
    """Every figure into `out`; inspect(name, fig), when given, sees each figure before it is written."""
    p = plt()
    os.makedirs(out, exist_ok=True)
    drop_partial(out)
    jobs = [(n, (lambda f=f: f(p, seed))) for n, f in seed_figs(seed)] if seed else []
    rh = archived(res, REHEAT_JSON)
    jobs = [(n, (lambda: fig_reheat(p, Seed(rh, 42))) if n == "fig4_reheat" else f) for n, f in jobs]
    jobs.insert(6, ("fig_windows", lambda: fig_windows(p, archived(res, "sgd_control/sgd_control.json"))))
    jobs += [("fig_finetune", lambda: fig_finetune(p, res)), ("fig_controls", lambda: fig_controls(p, res))]
    made = []
    for name, make in jobs:
        try:
            if seed is None and name not in ("fig_windows", "fig_finetune", "fig_controls"):
                raise Missing("a seed<N>/ folder")
            fig = make()
        except Missing as e:
            log(f"skip {name}: missing {e}")
            drop_stale(out, name)
            continue
        except (KeyError, TypeError, ValueError, IndexError) as e:  # malformed input: report, go on
            log(f"skip {name}: unreadable input ({type(e).__name__}: {e})")
            p.close("all")
            drop_stale(out, name)
            continue
        fig.tight_layout(rect=getattr(fig, "_rect", (0, 0, 1, 1)))
        if inspect:
            inspect(name, fig)
        for ext in ("pdf", "png"):
            save(fig, os.path.join(out, f"{name}.{ext}"))
        p.close(fig)
        made.append(name)
    return made


# ----------------------------------------------------------------------------- numbers, macros, tables
def macro_name(*parts) -> str:
    """camelCase letters only (TeX macro names): digits spelled out."""
    s = "".join(str(x)[:1].upper() + str(x)[1:] if i else str(x) for i, x in enumerate(parts))
    s = re.sub(r"\d", lambda m: DIGITS[int(m.group())], s)
    s = re.sub(r"[^A-Za-z]", "", s)
    return s


def f1(x):
    return "--" if x is None else f"{x:.1f}"


def f2(x):
    return "--" if x is None else f"{x:.2f}"


def f3(x):
    return "--" if x is None else f"{x:.3f}"


def f4(x):
    return "--" if x is None else f"{x:.4f}"


def p1(x):
    return "--" if x is None else f"{100 * x:.1f}"


def tex_sci(x, nd=1):
    if x is None or not np.isfinite(x):
        return "--"
    m, e = f"{x:.{nd}e}".split("e")
    return f"${m}\\times10^{{{int(e)}}}$"


def tex_escape(s: str) -> str:
    rep = {
        "\\": r"\textbackslash{}",
        "&": r"\&",
        "%": r"\%",
        "$": r"\$",
        "#": r"\#",
        "_": r"\_",
        "{": r"\{",
        "}": r"\}",
        "~": r"$\sim$",
        "^": r"\textasciicircum{}",
        "<": r"\textless{}",
        ">": r"\textgreater{}",
        "|": r"\textbar{}",
    }
    return "".join(rep.get(c, c) for c in str(s)).replace("--", "-{}-")  # no en-dash ligature in options


def md_escape(s: str) -> str:
    return str(s).replace("|", "\\|")


def _numbers_pca(s: Seed, m: dict):
    if s.pca:
        pcs = {g: s.pc1(g) for g in BLOCKS + ["trunk"]}
        nl = {g: s.nulls(g) for g in pcs if pcs[g] is not None}
        for g, n in nl.items():
            nm = "trunk" if g == "trunk" else "block" + DIGITS[int(g[5:])]
            m[macro_name(nm, "PCone")] = p1(n["pc1"])
            m[macro_name(nm, "MatchedNull")] = p1(n["matched"])
            m[macro_name(nm, "ShuffleNull")] = p1(n["shuffle"].get("mean"))
            m[macro_name(nm, "DirectionNull")] = p1(n["directions"].get("mean"))
            m[macro_name(nm, "Kninetyfive")] = str(get(s.pca, f"summary.{g}.k95"))
            m[macro_name(nm, "Coherence")] = f2(s.coherence(g))
            m[macro_name(nm, "FbFinal")] = p1(get(s.pca, f"summary.{g}.f_b_final"))
        blocks = [g for g in BLOCKS if g in nl]
        rng = lambda xs: (p1(min(xs)), p1(max(xs)))  # noqa: E731
        m["blockPConeMin"], m["blockPConeMax"] = rng([nl[g]["pc1"] for g in blocks])
        m["blockMatchedNullMin"], m["blockMatchedNullMax"] = rng(
            [nl[g]["matched"] for g in blocks if nl[g]["matched"]]
        )
        m["blockShuffleNullMin"], m["blockShuffleNullMax"] = rng([nl[g]["shuffle"]["mean"] for g in blocks])
        m["blockDirectionNullMin"], m["blockDirectionNullMax"] = rng(
            [nl[g]["directions"]["mean"] for g in blocks]
        )
        m["directionNullSdMax"] = tex_sci(max(nl[g]["directions"].get("sd", 0) for g in blocks), 0)
        m["theoryPCone"] = p1(nl["block0"]["theory"])
        m["matchedNullSource"] = nl["block0"]["matched_source"] or "--"
        coh = [s.coherence(g) for g in blocks]
        if None not in coh:
            m["blockCoherenceMin"], m["blockCoherenceMax"] = f2(min(coh)), f2(max(coh))
        m["nSnapshots"] = str(len(s.steps()) + 1)
        m["nRows"] = str(len(s.steps()))
        st = get(s.pca, "results.block0.stability") or {}
        m["blockZeroCosPrev"], m["blockZeroCosGlobal"] = f4(st.get("cos_prev_mean")), f3(
            st.get("cos_global_mean")
        )
        m["blockZeroCosGlobalMin"] = f3(st.get("cos_global_min"))
        dec = s.decomposition("block0")
        if dec.get("a"):
            a = np.asarray(dec["a"])
            m["blockZeroAPeakStep"] = str(s.steps()[int(a.argmax())])
            m["blockZeroAPeak"], m["blockZeroAEnd"] = f1(a.max()), f1(a[-1])
            m["blockZeroCorrLevels"] = f2(dec.get("corr_r_p_ood"))
        sw = get(s.pca, "switching.pairs", [])
        m["nSwitchPairs"] = str(len(sw))
        ov = [get(s.pca, f"summary.{g}.switch_overlap_mean") for g in blocks]
        e26 = [get(s.pca, f"summary.{g}.E_2_6_mean") for g in blocks]
        if None not in ov:
            m["switchOverlapMin"], m["switchOverlapMax"] = f2(min(ov)), f2(max(ov))
            m["switchETwoSixMin"], m["switchETwoSixMax"] = p1(min(e26)), p1(max(e26))
        pw = [get(s.pca, f"summary.{g}.switch_pairwise_cos_max") for g in blocks]
        if None not in pw:
            m["switchPairwiseMax"] = f2(max(pw))


def _numbers_fisher_split(s: Seed, m: dict):
    """Of the combined Fisher's rank-1 snapshots, how many are rank-1 in the probe part, and in the LM part."""
    rows = [x for _, x in fisher_rows(s)]
    frac = lambda x: x.get("lambda1_frac", x["lambda1"] / x["trace"] if x.get("trace") else 0)  # noqa: E731
    r1 = [x for x in rows if frac(x) > cl.RANK1]
    if r1 and all(isinstance(x.get("probe"), dict) for x in r1):
        m["fisherRankOneProbe"] = str(sum(frac(x["probe"]) > cl.RANK1 for x in r1))
        m["fisherRankOneLm"] = str(sum(frac(x["lm"]) > cl.RANK1 for x in r1))
        m["fisherRankOneAll"] = str(len(r1))


def _numbers_update(s: Seed, m: dict):
    if s.update:
        for g, nm in (("block0", "blockZero"), ("trunk", "trunk")):
            for ph in ("early", "mid", "late"):
                m[macro_name(nm, "C", ph)] = f3(get(s.update, f"groups.{g}.phase_means.{ph}.abs_C"))
                m[macro_name(nm, "SignedC", ph)] = f3(get(s.update, f"groups.{g}.phase_means.{ph}.C"))
            m[macro_name(nm, "TStar")] = str(get(s.update, f"summary.{g}.t_star"))
        m["updateLabel"] = "its midpoint" if cl.labels_by_midpoint(s.update) else "its later step"
        for ph in ("early", "mid", "late"):  # the matched walk of the same increments
            walk = get(s.update, f"summary.block0.matched_walk_{ph}_abs_C")
            m[macro_name("walkC", ph)] = f3(walk)
        for ph in ("early", "mid", "late"):
            m[macro_name("medianBlocksC", ph)] = f3(
                get(s.update, f"summary.median_of_blocks_1_on.{ph}_abs_C")
            )


def _numbers_grad(s: Seed, m: dict):
    if s.grad:
        floor = get(s.grad, "noise_floor.block0")
        cos = np.asarray(get(s.grad, "results.combined.block0.cos_mean", []), float)
        if len(cos):
            m["gradCosBlockZero"] = f"{cos.mean():.4f}"
            m["gradCosRatio"] = f1(cos.mean() / floor)
            m["noiseFloorBlockZero"] = tex_sci(floor)
            m["noiseFloorTrunk"] = tex_sci(get(s.grad, "noise_floor.trunk"))
        b = np.asarray(get(s.grad, "results.combined.block0.b", []), float)
        if len(b):  # the share of snapshots at which b_0 has its more common sign
            m["gradSameSign"] = f"{100 * max(np.mean(b < 0), np.mean(b > 0)):.0f}"


def _numbers_claims(s: Seed, m: dict):
    """The numbers the claims' rules computed for this seed (claims.py's `numbers` of each row)."""
    for r in cl.evaluate_cache(s.res):
        if r["seed"] != s.seed:
            continue
        nums = r["numbers"]
        if r["id"] == "C3" and nums.get("corr_diff") is not None:
            m["blockZeroCorrDiff"] = f2(nums["corr_diff"])
            m["blockZeroARetreat"] = f"{100 * nums['a_retreat']:.0f}"
        if r["id"] == "C2" and nums:
            m["nullCosPrev"], m["nullCosGlobal"] = f"{nums['null_cos_prev']:.4f}", f3(nums["null_cos_global"])
        if r["id"] == "C4" and nums:
            for k, nm in (("fb_median", "Median"), ("fb_min", "Min"), ("fb_max", "Max")):
                m["fbFinal" + nm] = p1(nums[k])
            m["walkFbFinal"] = p1(nums.get("walk"))
        if r["id"] == "C8" and nums:
            m["blockZeroDominance"] = f1(nums["ratio"])
        if r["id"] == "C9" and nums:
            m["fisherRiseOrders"] = f"{nums['rise_orders']:+.1f}"
            m["fisherRankOne"], m["fisherRankOneOf"] = str(nums["rank1"]), str(nums["rank1_of"])
            m["alphaSpike"] = f1(nums["alpha_spike"])
        if r["id"] == "C10" and nums:
            m["fisherOverlapMedian"] = tex_sci(nums["overlap_median"])
            m["fisherOverlapMax"] = tex_sci(nums["overlap_max"])
            m["fisherOverlapFloor"] = tex_sci(nums["floor"])
            m["fisherOverlapPCTwo"] = tex_sci(nums.get("pc2_median"))
        if r["id"] == "C11" and nums.get("ordinary") is not None:
            m["ordinaryUpdateC"] = f2(nums["ordinary"])
    avg = cl.rule_c4(s, fb="mean").numbers  # C4's second definition: f_b averaged over time
    if avg:
        m["fbAvgMin"], m["fbAvgMax"] = p1(avg["fb_min"]), p1(avg["fb_max"])


def mean_sd(x: dict | None, fmt_) -> str | None:
    """'mean +- sd' of a null's {mean, sd} over its seeds (None without it); text or math mode."""
    if not x or x.get("mean") is None:
        return None
    return fmt_(x["mean"]) + ("" if not x.get("sd") else f" \\ensuremath{{\\pm}} {fmt_(x['sd'])}")


def step_text(x) -> str:
    return f"{x:,.0f}".replace(",", "{,}")


NULL_STATS = [  # (the optimizer null's statistic, macro suffix, format): what the text quotes
    ("pc1", "PCone", lambda x: f"{100 * x:.1f}"),
    ("null_matched_pc1", "Matched", lambda x: f"{100 * x:.1f}"),
    ("coherence", "Coherence", f2), ("cos_vb_theta0", "CosThetaZero", f2),
    ("early_abs_C", "CEarly", f2),
    ("t_star", "TStar", step_text), ("a_retreat", "ARetreat", lambda x: f"{100 * x:.1f}"),
    ("f_b_final", "FbFinal", lambda x: f"{100 * x:.1f}"),
]


def _numbers_optimizer_null(s: Seed, m: dict):
    """This seed's optimizer null (block 0, mean +- sd over its noise seeds) and its no-decay twin,
    or the flags that make the text say they are not yet run."""
    path = tex_escape(f"results/{s.res.version}/{s.dir}/{NULL_JSON}")
    m["optNullFile"] = path.replace("/", "/\\allowbreak{}")  # a long path may break at a slash
    m["haveOptNull"] = "1" if s.null else "0"
    if s.null:
        for stat, nm, fmt_ in NULL_STATS:
            m["optNull" + nm] = mean_sd(s.opt("block0", stat), fmt_)
        m["optNullSeeds"] = str((s.opt("block0", "pc1") or {}).get("n"))
    tw = s.twin()
    m["twinName"] = tex_escape(f"{s.dir}_wd0")
    m["haveTwin"] = "1" if tw else "0"
    if tw:
        pcs = [tw.pc1(g) for g in BLOCKS if tw.pc1(g) is not None]
        m["twinBlockPConeMin"], m["twinBlockPConeMax"] = p1(min(pcs)), p1(max(pcs))
        m["twinTStar"] = str(get(tw.update, "summary.block0.t_star")) if tw.update else None
        m["twinCoherence"] = f2(tw.coherence("block0"))


def _numbers_metrics(s: Seed, m: dict):
    if s.metrics:
        val = {r["step"]: r.get("val_loss") for r in s.metrics}
        T = max(val)
        m["valStart"], m["valEnd"] = f2(val[0]), f3(val[T])
        for t in (2000, 4000, 6000):
            if t in val:
                m[macro_name("val", DIGITS[t // 1000], "k")] = f3(val[t])
        po = [(r["step"], r.get("p_ood") or 0) for r in s.metrics]
        best = max(po, key=lambda x: x[1])
        m["poodBest"], m["poodBestStep"], m["poodFinal"] = f2(best[1]), str(best[0]), f3(po[-1][1])
        pin = next((r["step"] for r in s.metrics if (r.get("p_in") or 0) >= 0.95), None)
        m["pinStep"] = str(pin)
        four = get(s.res.corpus_stats(), "ngram_val_nats.4") if s.res.corpus_stats() else None
        m["valVsFourgram"] = compare(val[T], four, 0.0005)
        m["runSteps"] = f"{T:,}".replace(",", "{,}")


CALIBRATION = dict(val_lo=1.0, val_hi=1.6, above_h=0.1, fall=0.03)  # SPEC section 3, corpus v2's targets


def met(ok) -> str:
    return "not measurable" if ok is None else ("met" if ok else "missed")


def _numbers_calibration(s: Seed, m: dict):
    """Corpus calibration at step 10,000: val in [1.0, 1.6], >= 0.1 above H_choice, val(6k)-val(10k) >= 0.03."""
    val = {r["step"]: r.get("val_loss") for r in s.metrics or []}
    v10, v6 = val.get(10000), val.get(6000)
    if v10 is None:
        return
    c = CALIBRATION
    m["valTenK"] = f3(v10)
    m["calValLo"], m["calValHi"] = f"{c['val_lo']:.1f}", f"{c['val_hi']:.1f}"
    m["calAboveH"], m["calFall"] = f"{c['above_h']:g}", f"{c['fall']:g}"
    m["calValMet"] = met(c["val_lo"] <= v10 <= c["val_hi"])
    h = get(s.res.corpus_stats() or {}, "h_choice.val")
    m["hChoice"] = f3(h)
    m["calGap"] = f3(None if h is None else v10 - h)
    m["calGapMet"] = met(None if h is None else v10 - h >= c["above_h"])
    if v6 is not None:
        m["valFallSixTen"] = f3(v6 - v10)
        m["calFallMet"] = met(v6 - v10 >= c["fall"])


def _numbers_finetune(res: Results, m: dict):
    ft = finetune(res)
    m["haveFinetune"] = "0" if ft is None else "1"
    if ft is None:
        return

    fv = res.json(f"{FT_DIR}/finetune_full_vs_lora.json")["results"]
    for k, v in (("Full", "full"), ("Lora", "lora")):
        m[f"ftProj{k}"] = tex_sci(ft["proj_abs_mean"][v], 2)
        m[f"ftProjNull{k}"] = tex_sci(fv[v]["overall"]["proj_abs_mean_null"], 2)
        m[f"ftCentroid{k}"] = f2(ft["activity"][f"centroid_{v}"])
        m[f"ftArgmax{k}"] = str(int(np.argmax(ft["activity"][v])))
    m["ftProjRatio"] = f2(ft["ratio_full_over_lora"]["proj_abs_mean"])
    m["ftProjVarRatio"] = f2(ft["ratio_full_over_lora"]["proj_var"])
    a = ft["alignment"]
    m["ftAlignLate"], m["ftAlignRandom"] = f3(a["late_mean"]), tex_sci(a["random_level"], 1)
    m["ftAlignCeiling"], m["ftRank"], m["ftSteps"] = f3(a["ceiling_final"]), str(a["rank"]), str(a["steps"][-1])
    m["ftAlignFrom"] = str(a["steps"][-1] // 2)
    st = ex.FT_STUDY
    m["ftStudyProjFull"], m["ftStudyProjLora"] = f"{st['proj_full']:g}", f"{st['proj_lora']:g}"
    m["ftStudyAlign"] = f"{st['align_lo']:g}--{st['align_hi']:g}"
    rd = ft["table"]["readings"]
    m["ftAlignVsStudy"] = "inside" if rd.get("alignment_in_study_range") else (
        "below" if (a["late_mean"] or 0) < st["align_lo"] else "above")
    m["ftAlignVsRandom"] = "above" if rd.get("alignment_above_random") else "not above"
    m["ftBasePood"], m["ftFullPood"] = f2(ft["base_p_ood"]), f3(ft["full_p_ood"])
    m["ftStudyRatio"] = f2(st["proj_full"] / st["proj_lora"])
    m["ftDim"] = tex_sci(fv["full"]["overall"]["D"], 1)
    m["ftRatioVsStudy"] = compare(ft["ratio_full_over_lora"]["proj_abs_mean"], st["proj_full"] / st["proj_lora"])
    for k, v in (("Full", "full"), ("Lora", "lora")):
        r = ft["proj_abs_mean"][v] / fv[v]["overall"]["proj_abs_mean_null"]
        m[f"ftProj{k}VsNull"] = "at" if abs(r - 1) < 0.1 else ("above" if r > 1 else "below")
    m["ftCentroidVs"] = compare(ft["activity"]["centroid_lora"], ft["activity"]["centroid_full"], 0.005)
    lora_p = [r["p_ood"] for r in ft["rank"] if r["rank"] == a["rank"]]
    m["ftLoraPood"] = f3(lora_p[0]) if lora_p else "--"


def _numbers_controls(res: Results, m: dict):
    cur = {CONTROL_RUNS[run][1]: c for run, c in control_curves(res).items()}
    for n, c in cur.items():
        T = max(c)
        m[f"ctrl{n}Last"], m[f"ctrl{n}LastVal"] = f"{T:,}".replace(",", "{,}"), f3(c[T])
        for t, w in ((0, "Zero"), (1000, "OneK"), (4000, "FourK")):
            if t in c:
                m[f"ctrl{n}Val{w}"] = f3(c[t])
    cfg = res.json("sgd_control/runs/sgd_D_seed42/config.json")
    if cfg:
        m["ctrlDLr"] = f"{get(cfg, 'config.lr'):g}"
        m["ctrlDMomentum"] = f"{get(cfg, 'config.momentum'):g}"
    sweep = d_sweep(res)
    if sweep:
        m["ctrlSweep"] = (", ".join(f3(v) for v in sweep.values()) + " at learning rates "
                          + ", ".join(f"{lr:g}" for lr in sweep))
        m["ctrlSweepBest"] = f"{min(sweep, key=sweep.get):g}"
        m["ctrlSweepEdge"] = "the largest" if min(sweep, key=sweep.get) == max(sweep) else "inside the range"
    uni = unigram(res)
    d, d1 = cur.get("D", {}), cur.get("DEarlier", {})
    m["ctrlDVsUnigram"] = compare(d.get(4000), uni) if d else "not comparable with"
    if 4000 in d and 4000 in d1:
        m["ctrlDSpread"] = f2(abs(d[4000] - d1[4000]))
        m["ctrlDPartStep"] = f"{min(t for t in d if t in d1 and abs(d[t] - d1[t]) > 0.05):,}".replace(",", "{,}")
    a, a0, d0 = cur.get("A", {}), cur.get("AZero", {}), cur.get("DZero", {})
    m["ctrlAZeroVsA"] = compare(a0.get(4000), a.get(4000), 0.005) if a and a0 else "not comparable with"
    m["ctrlDZeroVsD"] = compare(d0.get(4000), d.get(4000), 0.005) if d and d0 else "not comparable with"
    m["ctrlDZeroVsUnigram"] = compare(d0.get(4000), uni) if d0 else "not comparable with"


NOT_RUN = [  # (what, the result file whose absence says it was not run, the 0/1 macro of the text that shows it)
    ("seed 271", "seed271/metrics.jsonl", None),
    ("the $\\beta_2$ sweep's window geometry", "beta2/beta2_seed42.json", "haveBetaTwo"),
    ("reheating", "reheat/seed42/reheat.json", "haveReheat"),
    ("Table~9's controls B, C and C$'$ with their window geometry", "sgd_control/sgd_control.json", "haveSgdWindows"),
    ("the matched-loss windows", "sgd_control/sgd_matched_valloss.json", "haveMatched"),
    ("control D0", "sgd_control/runs/sgd_D0_seed42/metrics.jsonl", None),
    ("the controls' window geometry", "sgd_control/backbone_controls.json", None),
]


def _numbers_missing(res: Results, m: dict):
    """The experiments with no result file in results/<version>/ (the text lists them), and a 0/1 flag per
    table the text shows only when its file exists."""
    have = {w: os.path.exists(res.path(f)) for w, f, _ in NOT_RUN}
    gone = [w for w, _, _ in NOT_RUN if not have[w]]
    m["notRunList"] = "; ".join(gone) if gone else "none"
    m["nNotRun"] = str(len(gone))
    for w, _, flag in NOT_RUN:
        if flag:
            m[flag] = "1" if have[w] else "0"


def _numbers_beta2_curves(res: Results, m: dict):
    """The beta2 sweep's runs from their training curves alone: final validation losses and divergences."""
    ends = [(b, c[max(c)], status, max(c)) for b, (c, status) in beta2_curves(res).items() if c]
    fin = [(b, v) for b, v, s, _ in ends if s == "complete"]
    if fin:
        m["betaTwoFinal"] = ", ".join(f"{f3(v)} ($\\beta_2$ = {b:g})" for b, v in sorted(fin, reverse=True))
    div = [(b, T) for b, _, s, T in ends if s == "diverged"]
    m["betaTwoDiverged"] = ("; " + "; ".join(f"$\\beta_2$ = {b:g} diverged (stopped at step {T:,})".replace(",", "{,}")
                                              for b, T in div)) if div else ""


# the mechanics rows the text quotes: ingredient -> macro name part
MECH_ROWS = {"as configured": "Adam", "no weight decay": "NoDecay", "SGD + momentum": "Sgd"}


def _numbers_mechanics(res: Results, m: dict):
    """The mechanics table's numbers the text quotes (trunk, mean +- sd over the noise seeds):
    AdamW as configured and without decay on pure noise, SGD with momentum, the beta rows' range."""
    m["tolPct"], m["spreadSd"] = f"{100 * cl.TOL:.0f}", f"{cl.SPREAD:g}"
    rows = mechanics_rows(res)
    m["haveMechanics"] = "1" if rows else "0"
    if not rows:
        return
    setup = get(res.json(MECHANICS_JSON), "setup") or {}
    m["mechSeeds"], m["mechSample"] = str(setup.get("seeds")), str(setup.get("sample"))
    for r in rows:
        name = MECH_ROWS.get(r.get("ingredient"))
        for stat, nm, fmt_ in NULL_STATS if name else []:
            m[f"mech{name}{nm}"] = mean_sd((r.get("trunk") or {}).get(stat), fmt_)
    for r in rows:  # PC1 against its own matched walk: "equal to" within SPREAD sd of the seeds
        name, t = MECH_ROWS.get(r.get("ingredient")), r.get("trunk") or {}
        pc, mw = t.get("pc1") or {}, t.get("null_matched_pc1") or {}
        if name and pc.get("mean") is not None and mw.get("mean") is not None:
            tol = cl.SPREAD * (pc.get("sd") or 0.0)
            m[f"mech{name}VsMatched"] = compare(pc["mean"], mw["mean"], tol)
    betas = [r["trunk"] for r in rows
             if str(r.get("ingredient", "")).startswith("beta") and r.get("trunk")]
    for stat, nm, fmt_ in NULL_STATS if betas else []:
        xs = [b[stat]["mean"] for b in betas if (b.get(stat) or {}).get("mean") is not None]
        if xs:
            m[f"mechBeta{nm}Min"], m[f"mechBeta{nm}Max"] = fmt_(min(xs)), fmt_(max(xs))
    m["mechBetaRows"] = str(len(betas))


def seed_numbers(s: Seed, log=print) -> dict:
    """Every number the report quotes about one seed run (macro name -> text); a part whose inputs are
    missing or malformed is left out with one line (the text then shows "--" for its macros)."""
    m = {}
    for part in (_numbers_pca, _numbers_update, _numbers_grad, _numbers_claims, _numbers_metrics,
                 _numbers_calibration, _numbers_fisher_split, _numbers_optimizer_null):
        try:
            part(s, m)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
            log(f"numbers: {part.__name__[9:]} of {s.dir} left out ({type(e).__name__}: {e})")
    return {k: v for k, v in m.items() if v is not None}


def global_numbers(res: Results, log=print) -> dict:
    """The numbers of the experiments beyond one seed run, the verdict counts and the provenance."""
    m = {"corpusVersion": res.version or "--"}
    for part in (_numbers_sgd, _numbers_corpus, _numbers_verdicts, _numbers_bench, _numbers_finetune,
                 _numbers_controls, _numbers_missing, _numbers_beta2_curves, _numbers_mechanics):
        try:
            part(res, m)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
            log(f"numbers: {part.__name__[9:]} left out ({type(e).__name__}: {e})")
    return m


def _numbers_sgd(res: Results, m: dict):
    rows = sgd_rows(res)
    for k, r in rows.items():
        nm = {"C'": "Cp"}.get(k, k)
        m[macro_name("sgd", nm, "PCone")] = f1(r.get("pc1_pct"))
        m[macro_name("sgd", nm, "Kninetyfive")] = str(r.get("k95"))
        m[macro_name("sgd", nm, "Drift")] = f2(r.get("drift"))
        m[macro_name("sgd", nm, "Val")] = f2(r.get("final_val"))
        m[macro_name("sgd", nm, "Shuffle")] = f1(r.get("null_shuffle_pc1_pct"))
        m[macro_name("sgd", nm, "DirNull")] = f1(r.get("null_direction_pc1_pct"))


def _numbers_corpus(res: Results, m: dict):
    uni = unigram(res)
    st = res.corpus_stats()
    if uni is not None:
        m["unigramVal"] = f2(uni)
        m["fourgramVal"] = f3(get(st, "ngram_val_nats.4"))
        m["corpusVocab"] = f"{get(st, 'vocab'):,}".replace(",", "{,}")
        m["corpusTrainTokens"] = f"{get(st, 'train_tokens') / 1e6:.0f}"
    ident = get(res.json("seed42/config.json") or {}, "corpus_identity") or {}
    tok = re.search(r"([\d,]+) train tokens", get(res.json("seed42/config.json") or {}, "corpus") or "")
    if "corpusVocab" not in m and ident.get("tokenizer_words"):  # no corpus statistics: the run's identity
        n = 1 + ident["tokenizer_words"] + get(res.json("seed42/config.json"), "config.n_codewords")  # EOT, codewords
        m["corpusVocab"] = f"{n:,}".replace(",", "{,}")
    if "corpusTrainTokens" not in m and tok:
        m["corpusTrainTokens"] = f"{int(tok.group(1).replace(',', '')) / 1e6:.0f}"


# verdict -> (macro name part, heading in the report's summary, what it means): one per cl.VERDICTS
VERDICT_TEXT = {
    cl.HOLDS: ("Holds", "Holds beyond every null",
               "the paper's value is reproduced (the tolerance rule) and our number lies beyond "
               "every null that applies"),
    cl.ABOVE: ("HoldsAbove", "Beyond the nulls, but not the paper's value",
               "our number is beyond the nulls on the claimed side, but the paper's value or "
               "part of its statement is not reproduced"),
    cl.BY_OPT: ("ByOpt", "Reproduced, explained by the optimizer's mechanics",
                "the paper's value is reproduced, but the optimizer null (the run's optimizer on "
                "pure noise gradients) gives it too, or our number lies within that null's spread"),
    cl.BY_WALK: ("ByWalk", "Reproduced, explained by a random walk",
                 "the paper's value is reproduced, but the matched random walk (the run's own step "
                 "sizes in random directions) gives as much"),
    cl.BY_NULL: ("ByNull", "Reproduced, explained by another null",
                 "the paper's value is reproduced, but the null named in the reason gives as much "
                 "(another trajectory direction, or ordinary motion over the same spans)"),
    cl.NOT: ("NotHold", "Not reproduced",
             "our number is not the paper's value (outside its range widened by the tolerance "
             "rule), or a part of the statement fails"),
    cl.NA: ("NotMeasurable", "Not measurable here",
            "results/ lacks the quantity, or a null to read it against; the reason names which"),
}


def claims_with(rows: list[dict], verdict: str) -> list[str]:
    """The claims (in order) with this verdict; a claim whose seeds disagree names its seeds."""
    out = []
    for cid in dict.fromkeys(r["id"] for r in rows):
        mine = [r for r in rows if r["id"] == cid]
        hit = [r["seed"] for r in mine if r["verdict"] == verdict]
        if hit:
            out.append(cid if len(hit) == len(mine) or len(mine) == 1 else
                       f"{cid} (seed {' and '.join(map(str, hit))})")
    return out


def verdict_summary(rows: list[dict]) -> str:
    """The report's answer in words: one item per verdict that some claim has, each claim with its
    statement and the rule's reason (the first seed's)."""
    items = []
    for v, (_, head, _) in VERDICT_TEXT.items():
        parts = []
        for label in claims_with(rows, v):
            cid = label.split(" ")[0]
            r = next(r for r in rows if r["id"] == cid and r["verdict"] == v)
            why = tex_escape(r["reason"])
            parts.append(f"{tex_escape(label)}, {tex_escape(r['claim'])}: \\emph{{{why}}}.")
        if parts:
            items.append(f"\\item \\textbf{{{head}}} ({len(parts)}). " + " ".join(parts))
    items = items or ["\\item No claim has a verdict yet."]
    return "\\begin{itemize}\n" + "\n".join(items) + "\n\\end{itemize}\n"


def verdict_words_tex() -> str:
    """The verdict words and what each means (the report's definitions)."""
    return ("\\begin{description}\n" + "\n".join(f"\\item[{tex_escape(v)}] {tex_escape(t)}."
                                                for v, (_, _, t) in VERDICT_TEXT.items())
            + "\n\\end{description}\n")


def md_verdict_words() -> str:
    return (f"Verdict words (the tolerance rule: the paper's range widened by {100 * cl.TOL:.0f}%"
            f" at each end; beyond the optimizer null: more than {cl.SPREAD:g} sd of its seeds"
            " from their mean):\n\n"
            + "\n".join(f"- **{v}**: {t}." for v, (_, _, t) in VERDICT_TEXT.items()) + "\n")


def _numbers_verdicts(res: Results, m: dict):
    for r in cl.evaluate_cache(res):
        if r["id"] == "C15" and r["numbers"]:
            m["reheatPeakSixE"], m["reheatPeakAny"] = f2(r["numbers"]["peak_6e4"]), f2(
                r["numbers"]["peak_any"]
            )
            m["reheatAChange"] = f"{100 * r['numbers']['a_change']:.0f}"
            m["reheatRGrowth"] = f1(r["numbers"]["r_growth"])
    rows = cl.evaluate_cache(res)
    seeds = sorted({r["seed"] for r in rows})
    first = 42 if 42 in seeds else seeds[0]
    verdict = {(r["id"], r["seed"]): r["verdict"] for r in rows}
    counts = {v: 0 for v in cl.VERDICTS}
    for r in rows:
        if r["seed"] == first:
            counts[r["verdict"]] += 1
    for v, (name, _, _) in VERDICT_TEXT.items():
        m["n" + name] = str(counts[v])
        m["claims" + name] = ", ".join(claims_with(rows, v)) or "none"
    m["countSeed"] = str(first)
    m["seedList"] = " and ".join(str(s) for s in seeds)
    m["nSeeds"] = {1: "One seed", 2: "Two seeds"}.get(len(seeds), f"{len(seeds)} seeds")
    measured = lambda c, s: verdict.get((c, s)) not in (None, cl.NA)  # noqa: E731
    agree = []
    for s in seeds:
        if s == first:
            continue
        both = [c for (c, s_) in verdict if s_ == s and measured(c, s) and measured(c, first)]
        diff = [c for c in both if verdict[(c, s)] != verdict[(c, first)]]
        agree.append(f"seed {s} gives the same verdict as seed {first} on each of the {len(both)} claims both "
                     "measure" if not diff else
                     f"seed {s} differs from seed {first} on {', '.join(diff)} (of {len(both)} claims both measure)")
    m["seedAgreement"] = "; ".join(agree) if agree else f"only seed {first} has been run"


def _numbers_bench(res: Results, m: dict):
    b = res.json("bench/bench.json")
    for r in get(b, "rows", []) if b else []:
        nm = "Corpus" if r["vocab"] < 10000 else "Gpt"
        m[macro_name("bench", nm, "TokS")] = f"{r['tok_per_s'] / 1e6:.2f}"
        m[macro_name("bench", nm, "Mfu")] = f1(r["mfu_pct"])
        m[macro_name("bench", nm, "Ms")] = f1(r["ms_per_step"])
    prov = res.json("seed42/provenance.json") or {}
    commits = []  # every commit that made a result folder, seed 42's first
    found = sorted(os.path.relpath(f, res.dir) for f in glob.glob(res.path(os.path.join("*", "provenance.json"))))
    for f in ["seed42/provenance.json"] + found:
        c = (res.json(f) or {}).get("git_commit")
        if c and c[:7] not in commits:
            commits.append(c[:7])
    m["gitCommit"] = ", ".join(commits) or "--"
    m["deviceName"] = prov.get("device_name") or "--"
    m["torchVersion"] = tex_escape(prov.get("torch") or "--")
    m["runDate"] = prov.get("date") or "--"
    _numbers_determinism(res, m)


def _numbers_determinism(res: Results, m: dict):
    """determinism.py: control D trained N times with --deterministic off and on, at its last step."""
    d = res.json("determinism/determinism.json")
    runs, cost = (get(d, "results", {}).get("runs") or {}, get(d, "results", {}).get("cost")) if d else ({}, None)
    for setting, nm in (("false", "Off"), ("true", "On")):
        s = runs.get(setting)
        last = s["val"][max(s["val"], key=int)] if s else None
        m[f"det{nm}Runs"] = str(len(last)) if last else "--"
        m[f"det{nm}Step"] = f"{max(map(int, s['val'])):,}" if s else "--"
        m[f"det{nm}Min"], m[f"det{nm}Max"] = (f"{min(last):.3f}", f"{max(last):.3f}") if last else ("--", "--")
        m[f"det{nm}Spread"] = f"{max(last) - min(last):.3f}" if last else "--"
        m[f"det{nm}Distinct"] = str(s["distinct_final_weights"]) if s else "--"
    off, on = (cost or {}).get("off"), (cost or {}).get("on")
    m["detOffMs"], m["detOnMs"] = (f"{off['ms_per_step']:.2f}", f"{on['ms_per_step']:.2f}") if on else ("--", "--")
    m["detCostPct"] = f"{100 * (on['ms_per_step'] / off['ms_per_step'] - 1):+.1f}" if on else "--"
    m["detDevice"] = tex_escape(on.get("device") or "--") if on else "--"


NUMWORDS = [
    "Zero",
    "One",
    "Two",
    "Three",
    "Four",
    "Five",
    "Six",
    "Seven",
    "Eight",
    "Nine",
    "Ten",
    "Eleven",
    "Twelve",
    "Thirteen",
    "Fourteen",
    "Fifteen",
    "Sixteen",
    "Seventeen",
    "Eighteen",
    "Nineteen",
    "Twenty",
]


def compare(x, ref, tol=0.0005) -> str:
    """'above' / 'below' / 'equal to': the word the text uses for a number against its null."""
    if x is None or ref is None:
        return "not comparable with"
    return "equal to" if abs(x - ref) <= tol else ("above" if x > ref else "below")


def claim_numbers(rows: list[dict], seed: int | None) -> dict:
    """Per claim: verdict, our number, its null and the rule's reason (the figure seed's row)."""
    m = {}
    for r in rows:
        if (
            seed is not None
            and r["seed"] != seed
            and any(x["id"] == r["id"] and x["seed"] == seed for x in rows)
        ):
            continue
        c = "C" + NUMWORDS[int(r["id"][1:])]
        m[f"verdict{c}"], m[f"ours{c}"] = tex_escape(r["verdict"]), tex_escape(r["ours"])
        m[f"null{c}"], m[f"reason{c}"] = tex_escape(r["null"]), tex_escape(r["reason"])
    return m


def used_macros(src_dir: str) -> set[str]:
    """Every \\word of the report's sources (paper.tex, sections/*.tex)."""
    files = [os.path.join(src_dir, "paper.tex")] + sorted(
        glob.glob(os.path.join(src_dir, "sections", "*.tex"))
    )
    return {w for f in files if os.path.exists(f) for w in re.findall(r"\\([A-Za-z]+)", open(f).read())}


def write_macros(nums: dict, path: str, used: set[str] = frozenset()):
    """One \\newcommand per number; every other camelCase word the text uses gets \\providecommand{..}{--}:
    the text shows "--" for a number that results/ does not have yet."""
    lines = ["% generated by make_paper_figures.py from results/; do not edit"]
    for k in sorted(nums):
        if not re.fullmatch(r"[A-Za-z]+", k):
            raise ValueError(f"bad macro name {k!r}")
        lines.append(f"\\newcommand{{\\{k}}}{{{nums[k]}}}")
    ours = {k for k in used if re.fullmatch(r"[a-z]+[A-Z][A-Za-z]*", k)}  # the generated names are camelCase
    lines += [f"\\providecommand{{\\{k}}}{{--}}" for k in sorted(ours - set(nums))]
    write_text(path, "\n".join(lines) + "\n")


def tabular(cols: str, head: list[str], rows: list, caption: str = "") -> str:
    """A booktabs tabular; a row that is a str (not a list of cells) is a line of its own (a seed's header)."""
    out = [f"\\begin{{tabular}}{{{cols}}}", "\\toprule", " & ".join(head) + " \\\\", "\\midrule"]
    out += [r if isinstance(r, str) else " & ".join(r) + " \\\\" for r in rows]
    out += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(out) + "\n"


def per_seed(part, seeds: list[Seed]) -> str:
    """One tabular with a block of rows per seed (the paper shows both seeds side by side)."""
    cols, head, rows = None, None, []
    for s in seeds:
        cols, head, r = part(s)
        if len(seeds) > 1:
            rows.append(("\\midrule" if rows else "") + f"\\multicolumn{{{len(head)}}}{{@{{}}l}}{{\\emph{{seed {s.seed}}}}} \\\\")
        rows += r
    if cols is None:
        raise ValueError("no seed run")
    return tabular(cols, head, rows)


def tab_pc1(s: Seed):
    rows = []
    for g in BLOCKS + ["trunk"]:
        if s.pc1(g) is None:
            continue
        n = s.nulls(g)
        sh = n["shuffle"]
        rows.append(
            [
                g.replace("block", "block "),
                p1(n["pc1"]),
                str(get(s.pca, f"summary.{g}.k95")),
                p1(n["theory"]),
                f"{p1(sh.get('mean'))} $\\pm$ {p1(sh.get('sd'))}",
                p1(n["directions"].get("mean")),
                p1(n["matched"]),
                f2(s.coherence(g)),
                p1(get(s.pca, f"summary.{g}.f_b_final")),
            ]
        )
    return (
        "lrrrrrrrr",
        ["group", "PC1", "$k_{95}$", "$8/\\pi^2$", "shuffle", "rand.\\ dir.", "matched", "coherence",
         "$f_b(T)$"],
        rows,
    )


def tab_update(s: Seed):
    u = s.update
    rows = []
    for ph, lab in (
        ("early", "early ($t<2000$)"),
        ("mid", "mid ($2000\\le t\\le6000$)"),
        ("late", "late ($t>6000$)"),
    ):
        rows.append(
            [
                lab,
                f3(get(u, f"groups.block0.phase_means.{ph}.abs_C")),
                f3(get(u, f"summary.median_of_blocks_1_on.{ph}_abs_C")),
                f3(get(u, f"groups.trunk.phase_means.{ph}.abs_C")),
                f3(get(u, f"groups.block0.phase_means.{ph}.C")),
                f3(get(u, f"summary.block0.matched_walk_{ph}_abs_C")),
                mean_sd(s.opt("block0", f"{ph}_abs_C"), f3) or "--",
            ]
        )
    rows.append(
        [
            "sign flip $t^*$",
            str(get(u, "summary.block0.t_star")),
            "--",
            str(get(u, "summary.trunk.t_star")),
            "--",
            "none",
            mean_sd(s.opt("block0", "t_star"), step_text) or "--",
        ]
    )
    return (
        "lrrrrrr",
        ["phase (midpoint)", "$|C|$ block 0", "$|C|$ blocks 1--7 (median)", "$|C|$ trunk",
         "signed $C$ block 0", "matched walk $|C|$ block 0", "optimizer null $|C|$ block 0"],
        rows,
    )


def tab_fisher(s: Seed):
    rows = fisher_rows(s)
    want = [200, 1800, 4000, 4800, 6000, 8000, 9600, 10000]
    out = []
    for st, x in rows:
        if st not in want:
            continue
        fr = x.get("lambda1_frac", x["lambda1"] / x["trace"] if x.get("trace") else None)
        out.append(
            [
                str(st),
                tex_sci(x["q"]["v_b"]),
                tex_sci(x["q"].get("v_sw")),
                tex_sci(x["q"].get("v_PC2")),
                tex_sci(x.get("q_random_mean")),
                f1(x["alpha"]),
                f3(fr),
                tex_sci(x["u1_overlap"]["v_b"]),
            ]
        )
    return (
        "rrrrrrrr",
        ["step", "$q(v_b)$", "$q(v_{sw})$", "$q(v_{PC2})$", "mean $q(w_k)$", "$\\alpha$",
         "$\\lambda_1/\\mathrm{tr}$", "$|\\langle u_1, v_b\\rangle|$"],
        out,
    )


def tab_sgd(res: Results) -> str:
    rows = []
    for k, r in sgd_rows(res).items():
        rows.append(
            [
                tex_escape(k),
                tex_escape(r.get("optimizer", "")),
                tex_escape(r.get("status", "")),
                f2(r.get("final_val")),
                f3(r.get("best_p_ood")),
                f1(r.get("pc1_pct")),
                str(r.get("k95")),
                f1(r.get("drift")),
                f1(r.get("null_shuffle_pc1_pct")),
                f1(r.get("null_matched_pc1_pct", r.get("null_direction_pc1_pct"))),
            ]
        )
    return tabular(
        "llllrrrrrr",
        ["run", "optimizer", "status", "final val", "best $p_{ood}$", "PC1 \\%", "$k_{95}$", "drift",
         "shuffle \\%", "matched \\%"],
        rows,
    )


def tab_matched(res: Results) -> str:
    d = res.json("sgd_control/sgd_matched_valloss.json")
    ws = get(d, "window_summaries", [])
    rows = []
    for i, r in enumerate(get(d, "rows", [])):
        th = get(ws[i], "groups.trunk.null_theory_pc1") if i < len(ws) else None
        rows.append(
            [
                tex_escape(r.get("optimizer", r["run"])),
                r["kind"],
                tex_escape(r["window"]),
                f"{r['val_max']:.2f}--{r['val_min']:.2f}",
                f1(r["pc1_pct"]),
                str(r["k95"]),
                str(r["k99"]),
                f3(r["drift"]),
                p1(th),
            ]
        )
    return tabular(
        "lllrrrrrr",
        ["optimizer", "kind", "window", "val", "PC1 \\%", "$k_{95}$", "$k_{99}$", "drift", "walk PC1 \\%"],
        rows,
    )


def tab_beta2(res: Results) -> str:
    rows = []
    for r in window_rows(res):
        rows.append(
            [
                tex_escape(r["label"]).replace("beta2", "$\\beta_2$"),
                f2(r["val"]),
                f1(r["pc1"]),
                str(r["k95"]),
                f1(r["drift"]),
                f1(r["shuffle"]),
                f1(r["null"]),
            ]
        )
    b2 = res.json("beta2/beta2_seed42.json")
    for r in get(b2, "table", []) if b2 else []:
        if r.get("status") == "diverged":
            rows.append(
                [f"AdamW $\\beta_2$ {r['beta2']:g}", f"diverged at {r['last_step']}", "--", "--", "--", "--", "--"]
            )
    return tabular(
        "lrrrrrr", ["run", "final val", "PC1 \\%", "$k_{95}$", "drift", "shuffle \\%", "matched \\%"], rows
    )


def tab_reheat(res: Results, seed: int) -> str:
    d = res.json(f"reheat/seed{seed}/reheat.json")
    rows = []
    for r in get(d, "table", []) if d else []:
        fs = r.get("first_step_at_threshold")
        rows.append(
            [
                f"{r['lr']:g}",
                f3(r["peak_p_ood"]),
                str(r["peak_step"]),
                "--" if fs is None else str(fs),
                f3(r["final_p_ood"]),
                f1(r["a_start"]),
                f1(r["a_end"]),
                f1(r["r_start"]),
                f1(r["r_max"]),
                f1(r["r_end"]),
            ]
        )
    return tabular(
        "rrrrrrrrrr",
        ["lr", "peak $p_{ood}$", "at step", "first $\\ge$ 0.60", "final", "$a$ start", "$a$ end",
         "$\\|r\\|$ start", "$\\|r\\|$ max", "$\\|r\\|$ end"],
        rows,
    )


def tab_bench(res: Results) -> str:
    b = res.json("bench/bench.json")
    rows = (
        [
            [
                f"{r['vocab']:,}",
                f"{r['params']:,}",
                f1(r["ms_per_step"]),
                f"{r['tok_per_s']:,.0f}",
                f1(r["tflops"]),
                f1(r["mfu_pct"]),
                f1(r["mem_gib"]),
            ]
            for r in get(b, "rows", [])
        ]
        if b
        else []
    )
    return tabular(
        "rrrrrrr", ["vocabulary", "parameters", "ms/step", "tokens/s", "TFLOP/s", "MFU \\%", "GiB"], rows
    )


def tex_cmd(cmd: str) -> str:
    """A command line in typewriter type: '--' stays two hyphens, and it may break after a space."""
    return "\\texttt{" + tex_escape(cmd).replace(" ", " \\allowbreak ") + "}"


def provenance_stages(res: Results) -> list[dict]:
    """Every command that made results/<version>/: the stages of each provenance.json (and of the earlier
    collects it keeps) and the provenance a result file carries inside it (bench.json), with their exit
    status and wall time, in date order."""
    out = []
    for f in sorted(glob.glob(os.path.join(res.dir, "**", "provenance.json"), recursive=True)):
        folder = os.path.relpath(os.path.dirname(f), res.dir)
        pv = res.json(os.path.relpath(f, res.dir)) or {}
        # the earlier collects of a folder of several runs made the runs of theirs that are still there
        for p in [pv, *pv.get("earlier", [])]:
            for stg in p.get("stages", []):
                out.append(dict(folder=folder, **stg))
    for rel in ("bench/bench.json",):
        pv = (res.json(rel) or {}).get("provenance")
        if pv and pv.get("command"):
            out.append(dict(folder=os.path.dirname(rel), command=pv["command"], wall_s=pv.get("wall_s"),
                            rc=pv.get("rc", 0), date=pv.get("date")))  # a result file is written at exit 0
    return sorted(out, key=lambda r: (str(r.get("date") or ""), r["folder"]))


def tab_provenance(res: Results) -> str:
    rows = []
    for r in provenance_stages(res):
        rc = r.get("rc")
        rows.append([tex_escape(r["folder"]), tex_cmd(r["command"]),
                     "--" if rc is None else (str(rc) if rc == 0 else f"\\textbf{{{rc}}}"), f1(r.get("wall_s")),
                     tex_escape(str(r.get("date") or "--")[:16])])
    return tabular("@{}l>{\\raggedright\\arraybackslash}p{0.52\\linewidth}rrl@{}",
                   ["folder", "command", "exit", "wall s", "date"], rows)


HPARAMS = [  # (paper's Table 1 name, config field, format)
    ("layers", "n_layer", "{}"), ("$d_\\mathrm{model}$", "d_model", "{}"), ("heads", "n_head", "{}"),
    ("$d_\\mathrm{ff}$", "d_ff", "{}"), ("context", "ctx", "{}"), ("optimizer", "optimizer", "{}"),
    ("peak learning rate", "lr", "{:g}"), ("$(\\beta_1, \\beta_2)$", ("beta1", "beta2"), "({:g}, {:g})"),
    ("$\\epsilon$", "eps", "{:g}"), ("weight decay", "weight_decay", "{:g}"), ("decay mode", "wd_mode", "{}"),
    ("gradient clip", "grad_clip", "{:g}"), ("warmup steps", "warmup", "{:,}"),
    ("final learning rate / peak", "min_lr_frac", "{:g}"), ("steps", "steps", "{:,}"),
    ("batch (sequences $\\times$ accumulation)", ("batch_size", "grad_accum"), "{} $\\times$ {}"),
    ("probe weight $\\lambda$ (before, after)", ("lambda_probe", "lambda_probe_late"), "{:g}, {:g}"),
    ("$\\lambda$ switch step", "lambda_step", "{:,}"), ("eval / snapshot every", ("eval_every", "snapshot_every"),
                                                        "{}, {} steps"),
    ("probe gaps: training, out of distribution", ("gap_min", "gap_max", "ood_gap_min", "ood_gap_max"),
     "{}--{}, {}--{}"), ("probe codewords", "n_codewords", "{}"),
]


def tab_hparams(res: Results, seeds: list[int]) -> str:
    """The paper's Table 1 from the runs' own config.json (one column per seed)."""
    cfgs = [get(res.json(f"seed{s}/config.json"), "config") for s in seeds]
    if not any(cfgs):
        raise ValueError("no seed config.json")
    rows = []
    for name, key, f in HPARAMS:
        cells = []
        for c in cfgs:
            ks = key if isinstance(key, tuple) else (key,)
            v = [c.get(k) if c else None for k in ks]
            cells.append("--" if None in v else f.format(*[tex_escape(x) if isinstance(x, str) else x for x in v]))
        rows.append([name] + cells)
    return tabular("l" + "r" * len(seeds), ["setting"] + [f"seed {s}" for s in seeds], rows)


def tab_optimizers() -> str:
    """The paper's Table 8 (optimizer configurations) and the controls it lacks, from experiments.py."""

    rows = []
    for k, c in ex.CONTROLS.items():
        lr = c.get("lr")
        rows.append([tex_escape(k), tex_escape(c["label"]), c["optimizer"],
                     "swept" if lr is None else f"{lr:g}", f"{c['momentum']:g}" + (" (Nesterov)" if c["nesterov"]
                                                                                  else ""),
                     "$\\eta\\lambda$ of A" if c.get("weight_decay") is None else f"{c['weight_decay']:g}",
                     "decoupled" if c["wd_mode"] == "decoupled" else "L2 in the gradient",
                     "paper" if k in ex.TABLE8 else "added"])
    return tabular("llllllll", ["run", "label", "optimizer", "peak lr", "momentum", "weight decay", "decay mode",
                                "in"], rows)


def tab_switch(seeds: list[Seed]) -> str:
    """Switching per seed: pairs, backbone overlap and E_2:6 ranges over blocks, pairwise cosine, ordinary |C|."""
    rows = []
    for s in seeds:
        m = {}
        _numbers_pca(s, m)
        c11 = next((r["numbers"] for r in cl.evaluate_cache(s.res) if r["id"] == "C11" and r["seed"] == s.seed), {})
        if "nSwitchPairs" not in m:
            continue
        rows.append([str(s.seed), m["nSwitchPairs"], f"{m.get('switchOverlapMin', '--')}--{m.get('switchOverlapMax', '--')}",
                     f"{m.get('switchETwoSixMin', '--')}--{m.get('switchETwoSixMax', '--')}",
                     m.get("switchPairwiseMax", "--"), f2(c11.get("ordinary"))])
    if not rows:
        raise ValueError("no switching results")
    rows.append(["paper", "--", "0.20--0.25", "15--22", "--", "--"])
    return tabular("lrrrrr", ["seed", "pairs", "$|\\langle v_{sw}, v_b\\rangle|$ (blocks)", "$E_{2:6}$ \\% (blocks)",
                              "pairwise $|\\cos|$ max", "ordinary $|C|$"], rows)


# ----------------------------------------------------------------------------- the nulls' tables
def not_yet(res: Results, rel: str, cmd: str) -> str:
    return (f"\\emph{{Not yet run: \\texttt{{results/{res.version}/{tex_escape(rel)}}} does not exist; "
            f"{cmd} writes it.}}\n")


def _mean_sd(row: dict, stat: str, fmt_, group: str = "trunk") -> str:
    return mean_sd((row.get(group) or {}).get(stat), fmt_) or "--"


def tab_mechanics(res: Results) -> str:
    rows = mechanics_rows(res)
    if rows is None:
        return not_yet(res, MECHANICS_JSON, "\\texttt{optimizer\\_null.py --mechanics}")
    pct = lambda x: f"{100 * x:.1f}"  # noqa: E731
    body = [[tex_escape(r.get("ingredient", "?")), _mean_sd(r, "pc1", pct), _mean_sd(r, "null_matched_pc1", pct),
             _mean_sd(r, "coherence", f2), _mean_sd(r, "cos_vb_theta0", f2), _mean_sd(r, "t_star", lambda x: f"{x:,.0f}"),
             _mean_sd(r, "a_retreat", pct)] for r in rows]
    return tabular("@{}lrrrrrr@{}", ["on noise gradients (trunk)", "PC1 \\%", "matched walk \\%", "coherence",
                                    "$\\cos(v_b, -\\theta_0)$", "$t^*$", "$a(t)$ retreat \\%"], body)


ABBREV = {cl.HOLDS: "holds", cl.ABOVE: "above null", cl.NOT: "no", cl.NA: "n/m", cl.BY_OPT: "optimizer",
          cl.BY_WALK: "walk", cl.BY_NULL: "null"}


def tab_robust(res: Results) -> str:
    """One row per claim and seed: its verdict under each definition it has (a claim has only its own)."""
    rows = robust_rows(res)
    if rows is None:
        return not_yet(res, ROBUST_JSON, "\\texttt{claims.py --robust}")
    body = []
    for r in rows:
        v = r.get("verdicts", {})
        cells = "; ".join(f"{tex_escape(n)}: {ABBREV.get(x, tex_escape(str(x)))}" for n, x in v.items())
        dep = r.get("depends_on") or []
        body.append([f"{tex_escape(r['claim'])} (s{r.get('seed', '?')})", cells,
                     "yes" if not dep else "\\textbf{no}: " + tex_escape(", ".join(dep))])
    return tabular("@{}lp{9.5cm}p{3.2cm}@{}", ["claim", "verdict under each definition", "same verdict?"], body)


def tab_finetune(res: Results) -> str:
    """The study's numbers beside ours, from finetune_table.json (rows and their references)."""
    ft = finetune(res)
    if ft is None:
        return "\\emph{(not in results/)}\n"

    rows = [[tex_escape(r["quantity"]), tex_escape(fmt_g(r["study"])), tex_escape(fmt_g(r["ours"])),
             tex_escape(f"{fmt_g(r['reference'])} ({r['reference_is']})")] for r in ft["table"]["rows"]]
    return tabular("p{4.6cm}p{2.4cm}rp{5.2cm}", ["quantity", "study (DistilGPT-2)", "ours", "reference"], rows)


def claim_cells(rows: list[dict]) -> list[tuple[dict, list[str]]]:
    """(row, [id, claim, paper, ours, null]) per claim row; the id names the seed when there are several."""
    multi = len({r["seed"] for r in rows}) > 1
    return [(r, [r["id"] + (f" (s{r['seed']})" if multi else ""), r["claim"], r["paper"], r["ours"], r["null"]])
            for r in rows]


def tab_claims(rows: list[dict]) -> str:
    col = lambda w: f">{{\\raggedright\\arraybackslash}}p{{{w}\\linewidth}}"  # noqa: E731
    widths = (0.045, 0.18, 0.13, 0.245, 0.2, 0.11)  # the verdict's widest word fits its column
    out = ["\\begin{longtable}{@{}" + "".join(col(w) for w in widths) + "@{}}",
           "\\toprule", "id & claim & paper & ours & null & verdict \\\\", "\\midrule", "\\endhead"]
    for r, cells in claim_cells(rows):
        sid = cells[0].replace(" (s", "\\newline{\\scriptsize s").replace(")", "}")  # the seed under the id
        out.append(" & ".join([sid] + [tex_escape(c) for c in cells[1:]]
                              + [f"\\textbf{{{tex_escape(r['verdict'])}}}"]) + " \\\\")
        out.append("\\multicolumn{6}{@{}p{0.97\\linewidth}}" f"{{\\quad\\emph{{{tex_escape(r['reason'])}}}}} \\\\[2pt]")
    out += ["\\bottomrule", "\\end{longtable}"]
    return "\n".join(out) + "\n"


def md_claims(rows: list[dict], res: Results) -> str:
    out = [f"Claims of the paper against `results/{res.version}` (verdicts computed by `claims.py`):", "",
           "| id | claim | paper | ours | null | verdict |", "|---|---|---|---|---|---|"]
    for r, cells in claim_cells(rows):
        out.append("| " + " | ".join(md_escape(x) for x in cells + [f"**{r['verdict']}**: {r['reason']}"]) + " |")
    return "\n".join(out) + "\n"


def md_pc1(s: Seed) -> str:
    out = ["| group | PC1 | 8/pi^2 | shuffle | matched null | coherence |", "|---|---|---|---|---|---|"]
    for g in BLOCKS + ["trunk"]:
        if s.pc1(g) is None:
            continue
        n = s.nulls(g)
        out.append(
            f"| {g} | {p1(n['pc1'])}% | {p1(n['theory'])}% | {p1(n['shuffle'].get('mean'))}% | "
            f"{p1(n['matched'])}% | {f2(s.coherence(g))} |"
        )
    return "\n".join(out) + "\n"


def update_readme(path: str, block: str) -> bool:
    """Replace the README's generated block (between the marker lines); False when it has no markers."""
    if not os.path.exists(path):
        return False
    text = open(path).read()
    i, j = text.find(README_START), text.find(README_END)
    if i < 0 or j < i:
        return False
    new = text[: i + len(README_START)] + "\n" + block + text[j:]
    if new != text:
        write_text(path, new)  # a kill mid-write leaves the old README, never a cut one
    return True


def generate(res: Results, seed: Seed | None, out: str, readme: str | None, log=print) -> dict:
    gen = os.path.join(out, "generated")
    os.makedirs(gen, exist_ok=True)
    drop_partial(gen)
    rows = cl.evaluate_cache(res)
    nums = global_numbers(res, log)
    nums.update(claim_numbers(rows, seed.seed if seed else None))
    seeds = [Seed(res, n) for n in res.seeds()]
    if seed:
        nums.update(seed_numbers(seed, log))
        nums["figSeed"] = str(seed.seed)
        if seed.pc1("trunk") is not None:
            tn = seed.nulls("trunk")
            nums["trunkVsMatched"] = compare(tn["pc1"], tn["matched"])
            nums["trunkVsTheory"] = compare(tn["pc1"], tn["theory"])
            nums["trunkVsShuffle"] = compare(tn["pc1"], tn["shuffle"].get("mean"))
    for flag in ("haveOptNull", "haveTwin", "haveMechanics", "haveFinetune"):  # \\ifnum needs 0/1
        nums.setdefault(flag, "0")
    nums.update(other_seed_numbers(seeds, seed, log))
    nums.update(archive_numbers(res, log))
    src = out if os.path.exists(os.path.join(out, "paper.tex")) else os.path.join(ROOT, "paper")
    write_macros(nums, os.path.join(gen, "macros.tex"), used_macros(src))
    sgd_res, rh_res = archived(res, "sgd_control/sgd_control.json"), archived(res, REHEAT_JSON)
    tables = {
        "tab_claims": lambda: tab_claims(rows),
        "tab_sgd": lambda: tab_sgd(sgd_res),
        "tab_matched": lambda: tab_matched(archived(res, "sgd_control/sgd_matched_valloss.json")),
        "tab_beta2": lambda: tab_beta2(sgd_res),
        "tab_reheat": lambda: tab_reheat(rh_res, 42),
        "tab_bench": lambda: tab_bench(res),
        "tab_provenance": lambda: tab_provenance(res),
        "tab_finetune": lambda: tab_finetune(res),
        "tab_hparams": lambda: tab_hparams(res, res.seeds()),
        "tab_optimizers": tab_optimizers,
        "tab_mechanics": lambda: tab_mechanics(res),
        "tab_robust": lambda: tab_robust(res),
        "tab_pc1": lambda: per_seed(tab_pc1, seeds),
        "tab_update": lambda: per_seed(tab_update, seeds),
        "tab_fisher": lambda: per_seed(tab_fisher, seeds),
        "tab_switch": lambda: tab_switch(seeds),
    }
    for name, make in tables.items():
        try:
            text = make()
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
            log(f"skip table {name}: unreadable input ({type(e).__name__}: {e})")
            text = "\\emph{(not in results/)}\n"
        write_text(os.path.join(gen, f"{name}.tex"), text)
    write_text(os.path.join(gen, "verdict_summary.tex"), verdict_summary(rows))
    write_text(os.path.join(gen, "verdict_words.tex"), verdict_words_tex())
    md = md_verdict_words() + "\n" + md_claims(rows, res)
    write_text(os.path.join(gen, "claims.md"), md)
    write_text(os.path.join(gen, "numbers.json"),
               json.dumps({"numbers": nums, "claims": rows}, indent=1, default=float) + "\n")
    block = readme_figures(res, seed, nums) + "\n" + md + (
        "\nPer-block PC1 of the drift against its nulls (seed " + str(seed.seed) + "):\n\n" + md_pc1(seed)
        if seed
        else ""
    )
    if readme and not update_readme(readme, block):
        log(f"README {readme}: no generated block markers, left as it is")
    return nums


README_FIGS = [  # (figure, caption); the corpus version and seed are filled in
    ("fig_pc1_nulls", "Per-block PC1 of the drift against the equal-norm random walk (8/pi^2), the "
                      "time-shuffle null, the random-directions null and the matched null (a random walk with "
                      "the run's own step sizes)."),
    ("fig1_decomposition", "The paper's Figure 1 (block 0): backbone coordinate a(t), residual ||r(t)|| and "
                           "p_ood."),
    ("fig2_alignment", "The paper's Figure 2: per-batch gradient |cos| with v_b against the noise floor, and "
                       "the 200-step update alignment C(t) beside the matched random walk's."),
    ("fig_controls", "Validation loss of the controls (A AdamW, A0 without decay, D SGD with momentum, D0 "
                     "without decay), D's learning-rate sweep and the beta2 sweep's runs."),
]


def readme_figures(res: Results, seed: Seed | None, nums: dict) -> str:
    """The README's figures with captions that name the results set they show (only figures that exist)."""
    out = [f"Key figures (results/{res.version}, seed {seed.seed if seed else '-'}, "
           f"{nums.get('deviceName', 'GPU')}):", ""]
    for name, cap in README_FIGS:
        if os.path.exists(os.path.join(ROOT, "paper", "figures", f"{name}.png")):
            out += [f"![{name}](paper/figures/{name}.png)", f"*{cap}*", ""]
    return "\n".join(out)


def other_seed_numbers(seeds: list[Seed], shown: Seed | None, log=print) -> dict:
    """A few numbers of every seed under a seed-suffixed name (trunkPConeSeedTwoSevenOne), for the text that
    compares the seeds."""
    m = {}
    for s in seeds:
        sub = seed_numbers(s, lambda *_: None)
        suffix = macro_name("seed", str(s.seed))
        for k in ("trunkPCone", "trunkMatchedNull", "blockPConeMin", "blockPConeMax", "blockMatchedNullMin",
                  "blockMatchedNullMax", "blockZeroTStar", "fisherRankOne", "fisherRankOneOf", "nSwitchPairs",
                  "valEnd", "poodBest", "trunkCoherence"):
            if k in sub:
                m[k + suffix[0].upper() + suffix[1:]] = sub[k]
    return m


def archive_numbers(res: Results, log=print) -> dict:
    """Where Tables 9-11 and Figure 4 come from (this version or the archived v1) and their numbers: the
    windows of the controls, reheating (the rule of C15 run on the archive)."""
    m = {}
    for name, rel in (("sgd", "sgd_control/sgd_control.json"), ("matched", "sgd_control/sgd_matched_valloss.json"),
                      ("betaTwoGeo", "beta2/beta2_seed42.json"), ("reheat", REHEAT_JSON)):
        src = archived(res, rel)
        have = os.path.exists(src.path(rel))
        m[name + "Version"] = src.version if have else "--"
        m[name + "Archived"] = "1" if have and src.version != res.version else "0"
        m[name + "Have"] = "1" if have else "0"
        m[name + "Here"] = "1" if have and src.version == res.version else "0"  # this version's own
    try:
        sgd = archived(res, "sgd_control/sgd_control.json")
        if sgd is not res:
            _numbers_sgd(sgd, m)
        rh = archived(res, REHEAT_JSON)
        for r in cl.evaluate_cache(rh) if rh is not res else []:
            if r["id"] == "C15" and r["numbers"]:
                m["reheatPeakSixE"], m["reheatPeakAny"] = f2(r["numbers"]["peak_6e4"]), f2(r["numbers"]["peak_any"])
                m["reheatAChange"] = f"{100 * r['numbers']['a_change']:.0f}"
                m["reheatRGrowth"] = f1(r["numbers"]["r_growth"])
                m["reheatVerdictArchived"] = tex_escape(r["verdict"])
            if r["id"] == "C12" and sgd is rh:
                m["sgdReasonArchived"] = tex_escape(r["reason"])
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        log(f"numbers: archive left out ({type(e).__name__}: {e})")
    return m


def same_dir(a: str, b: str) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def main(argv=None):
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default="results", help="results root (results/<version>/<experiment>/...)")
    p.add_argument("--version", default=None, help="corpus version (default: the newest with a seed run)")
    p.add_argument(
        "--seed", type=int, default=None, help="seed whose run the figures show (default 42, else the first)"
    )
    p.add_argument("--out", default="paper", help="writes <out>/figures and <out>/generated")
    p.add_argument(
        "--readme",
        default=None,
        help="README whose generated block is rewritten ('' for none; default: the repository's README only "
        "when --out is the repository's paper/ folder)",
    )
    p.add_argument("--no-figures", action="store_true", help="numbers, tables and README block only")
    ns = p.parse_args(argv)
    if os.path.exists(ns.out) and not os.path.isdir(ns.out):
        fail(f"--out {ns.out}: a file, not a folder")
    res = open_results(ns.results, ns.version)
    seeds = res.seeds()
    if ns.seed is not None and ns.seed not in seeds:
        fail(f"no {res.dir}/seed{ns.seed}")
    pick = ns.seed if ns.seed is not None else (42 if 42 in seeds else (seeds[0] if seeds else None))
    seed = Seed(res, pick) if pick is not None else None
    made = [] if ns.no_figures else make_figures(res, seed, os.path.join(ns.out, "figures"))
    readme = ns.readme
    if readme is None:  # another --out is a scratch build: it must not rewrite the repository's README
        readme = os.path.join(ROOT, "README.md") if same_dir(ns.out, os.path.join(ROOT, "paper")) else ""
    generate(res, seed, ns.out, readme or None)
    print(
        f"{len(made)} figures in {os.path.join(ns.out, 'figures')}; "
        f"macros and tables in {os.path.join(ns.out, 'generated')}"
        f" (results {res.dir})"
    )


if __name__ == "__main__":
    main()
