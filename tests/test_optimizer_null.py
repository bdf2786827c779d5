"""The optimizer null (optimizer_null.py) and the geometry it brings (decay split, cosine shape test).

Known answers: one replayed step is model.make_optimizer's torch.optim step (AdamW, Adam + L2, SGD with
momentum, Nesterov and L2, SGDW); decay with zero noise drifts along -theta(0) (PC1 1, cos 1); noise without
decay and without momentum has independent increments, so its PC1 is the matched walk's; a coordinate
sample gives the full trunk's statistics within the null's spread; the decay split is exact for pure decay
and its discretisation error obeys its first-order bound on a run snapshotted every step.
"""
import json
import math
import os

import numpy as np
import pytest
import torch

import geometry as geo
import optimizer_null as on
from config import make_config
from model import make_optimizer, optimizer_step, trunk_keys

SMALL = dict(preset="tiny", n_layer=1, d_model=64, n_head=4, d_ff=256, steps=200, warmup=20,
             snapshot_every=20)


@pytest.mark.parametrize("opt", [
    dict(optimizer="adamw", wd_mode="decoupled", weight_decay=0.5),
    dict(optimizer="adamw", wd_mode="l2", weight_decay=0.1, beta2=0.9),
    dict(optimizer="adamw", wd_mode="decoupled", weight_decay=0.5, beta1=0.0, beta2=0.0),
    dict(optimizer="sgd", momentum=0.9, nesterov=True, wd_mode="l2", weight_decay=0.05, lr=1e-2),
    dict(optimizer="sgd", momentum=0.9, wd_mode="l2", weight_decay=0.05, lr=1e-2),
    dict(optimizer="sgd", momentum=0.0, wd_mode="l2", weight_decay=0.5),
    dict(optimizer="sgd", momentum=0.9, nesterov=True, wd_mode="decoupled", weight_decay=0.5, lr=1e-2),
])
def test_replayed_steps_equal_torch_optim(opt):
    cfg = make_config(**SMALL, **opt)
    gen = torch.Generator().manual_seed(1)
    theta = torch.randn(3, 50, generator=gen) * 0.02
    mod = torch.nn.Module()
    mod.w = torch.nn.Parameter(theta.clone())
    ref = make_optimizer(mod, cfg, torch.device("cpu"))
    mine = on.Replay(cfg, theta.clone())
    for t in range(4):
        g = torch.randn(3, 50, generator=gen) * 1e-3
        lr = on.lr_at(cfg, t)
        mod.w.grad = g.clone()
        optimizer_step(ref, cfg, lr)
        mine.step(g.clone(), lr)
        torch.testing.assert_close(mine.theta, mod.w.detach(), rtol=1e-6, atol=1e-9)


def test_grad_scales_interpolate_and_clip():
    cfg = make_config(**SMALL, grad_clip=1.0)
    m = [dict(step=0, grad_norm=None), dict(step=101, grad_norm=4.0), dict(step=151, grad_norm=0.5)]
    s = on.grad_scales(cfg, m, P=100) * 10  # sqrt(P) = 10
    assert s[0] == pytest.approx(1.0) and s[100] == pytest.approx(1.0)  # before the first eval: held; clipped
    assert s[150] == pytest.approx(0.5) and s[199] == pytest.approx(0.5)
    assert s[125] == pytest.approx(1.0)  # 2.25 interpolated, clipped at 1
    assert s[140] == pytest.approx(min(1.0, 4.0 + (0.5 - 4.0) * 40 / 50))
    assert (on.grad_scales(cfg, [], P=4, grad_norm=0.3) == pytest.approx(0.15))


def test_pure_decay_drifts_along_minus_theta0():
    cfg = make_config(**SMALL)
    rec = on.null_records(cfg, on.drawn_theta0(cfg), 2, 0, torch.device("cpu"), grad_norm=0.0)[0]
    st = on.record_stats(rec, null_draws=10)
    for g in ("block0", "trunk"):
        assert st[g]["pc1"] == pytest.approx(1.0, abs=1e-9)
        assert st[g]["cos_vb_theta0"] == pytest.approx(1.0, abs=1e-9)
    s = geo.decay_factors(cfg.to_dict(), cfg.steps)
    G = rec.group_grams(0)["trunk"]
    a2 = float(G[-1, -1])
    assert float(G[-2, -2]) == pytest.approx((1 - s[-1]) ** 2 * a2, rel=1e-5)  # ||x(T)|| = (1 - s) ||theta0||


def test_noise_without_decay_or_momentum_is_the_matched_walk():
    """Independent increments (beta1 = 0, no weight decay): PC1 is the matched walk's, within the spread."""
    cfg = make_config(**SMALL, weight_decay=0.0, beta1=0.0)
    draws = [on.record_stats(r, 10)["trunk"]
             for r in on.null_records(cfg, on.drawn_theta0(cfg), 5, 0, torch.device("cpu"))]
    pc1 = np.array([d["pc1"] for d in draws])
    walk = np.array([d["null_matched_pc1"] for d in draws])
    assert abs(pc1.mean() - walk.mean()) <= 3 * pc1.std(ddof=1), (pc1, walk)
    assert abs(np.mean([d["cos_vb_theta0"] for d in draws])) < 0.05  # no decay: v_b ignores theta(0)


def test_coordinate_sample_matches_the_full_trunk():
    cfg = make_config(**SMALL)
    th = on.drawn_theta0(cfg)
    stats = {}
    for sample in (0, 512):
        draws = [on.record_stats(r, 10)["trunk"]
                 for r in on.null_records(cfg, th, 5, 1, torch.device("cpu"), sample=sample)]
        stats[sample] = {k: np.array([d[k] for d in draws], float)
                         for k in ("pc1", "coherence", "cos_vb_theta0", "f_b_final", "early_abs_C")}
    for k, full in stats[0].items():
        smp = stats[512][k]
        assert abs(smp.mean() - full.mean()) <= 3 * max(smp.std(ddof=1), full.std(ddof=1)), (k, smp, full)


def test_decay_split_exact_for_pure_decay():
    cfg = make_config(**SMALL)
    rec = on.null_records(cfg, on.drawn_theta0(cfg), 2, 0, torch.device("cpu"), grad_norm=0.0)[0]
    Ga = rec.group_grams(0)["trunk"]
    rows = rec.row_steps(0)
    G = geo.split_anchor(Ga)[0]
    sp = geo.decay_split(Ga, geo.pca(G).coef(1)[:, 0], geo.run_decay_factors(cfg.to_dict(), 0, rows))
    # the replay multiplies float32 weights by (1 - lr wd) each step: rounding of ~1e-7 ||theta|| a step
    assert np.allclose(sp["delta_a_rest"], 0, atol=1e-7 * cfg.steps * abs(sp["theta_anchor_dot_vb"]))
    C, Cd, Cr = (np.asarray(sp[k]) for k in ("C", "C_decay", "C_rest"))
    assert np.allclose(Cd + Cr, C) and (np.sign(Cd) == np.sign(C)).all() and np.median(np.abs(Cr)) < 1e-4


def test_decay_split_discretisation_on_a_run_snapshotted_every_step(tmp_path, micro_cfg):
    """A micro run with a snapshot at every step: the split of every step is exact there; the split over
    coarse intervals of K steps differs from the sum of its steps' by decay acting on the motion inside the
    interval, bounded by sum_s |f_s - 1| * max_s |<theta(s) - prod f theta(t_prev), v_b>| (first order)."""
    from runs import run_record
    from train import train
    cfg = micro_cfg(tmp_path, steps=40, warmup=4, snapshot_every=1, eval_every=20, lr=3e-3)
    train(cfg)
    rec = run_record(cfg.run_dir, "cpu")
    K, fine = 10, rec.row_steps(0)
    coarse = [s for s in fine if s % K == 0]
    Ga_f = rec.gram(rec.groups["trunk"], rec.combination(0, fine))
    Ga_c = rec.gram(rec.groups["trunk"], rec.combination(0, coarse))
    c_c = geo.pca(geo.split_anchor(Ga_c)[0]).coef(1)[:, 0]
    # the coarse v_b as a combination of the fine rows: x(t) for t in coarse
    idx = {s: i for i, s in enumerate(fine)}
    c_f = torch.zeros(len(fine), dtype=torch.float64)
    for j, s in enumerate(coarse):
        c_f[idx[s]] = c_c[j]
    sf = geo.run_decay_factors(cfg.to_dict(), 0, fine)
    fine_sp = geo.decay_split(Ga_f, c_f, sf)
    coarse_sp = geo.decay_split(Ga_c, c_c, geo.run_decay_factors(cfg.to_dict(), 0, coarse))
    a_f = np.asarray(geo.split_anchor(Ga_f)[0] @ c_f)
    a0 = fine_sp["theta_anchor_dot_vb"]
    s_all = np.asarray([1.0] + sf)
    errs = []
    for j, t in enumerate(coarse):
        tp = t - K
        inside = range(tp, t)  # the steps s whose update makes theta(s + 1)
        fine_sum = sum(fine_sp["delta_a_decay"][idx[s + 1]] for s in inside)
        err = coarse_sp["delta_a_decay"][j] - fine_sum
        f = [s_all[s + 1] / s_all[s] for s in inside]
        ap = a_f[idx[tp]] if tp else 0.0
        r = [abs((a_f[idx[s]] if s else 0.0) + a0 - s_all[s] / s_all[tp] * (ap + a0)) for s in inside]
        bound = sum(abs(x - 1) for x in f) * max(r)
        assert abs(err) <= bound * (1 + 1e-6) + 1e-12, (t, err, bound)
        errs.append(abs(err) / max(abs(coarse_sp["delta_a"][j]), 1e-30))
    assert max(errs) < 0.05  # first order in lr * wd * K = 0.015: a few per cent of the interval's change


def test_cosine_shape_of_a_walk_and_a_line():
    T = 100
    steps = list(range(1, T + 1))
    walk = geo.cosine_shape(geo.matched_walk(torch.ones(T)), steps, 0)
    assert min(walk) > 0.99
    line = torch.outer(torch.arange(1.0, T + 1), torch.arange(1.0, T + 1)).double()  # x(t) = t v: one PC
    t = np.arange(1.0, T + 1)
    want = abs(np.corrcoef(t, np.cos(math.pi * t / T))[0, 1])  # the projection is linear in t
    # a line follows cos(pi tau) almost as closely as a walk (0.993): only PCs 2, 3 tell them apart
    assert geo.cosine_shape(line, steps, 0) == [pytest.approx(want), None, None]


def test_cli_writes_summary_draws_and_records(tmp_path, usage_error):
    from runs import load_record
    out = tmp_path / "null"
    on.main(["--preset", "tiny", "--n_layer", "1", "--steps", "100", "--warmup", "10", "--seeds", "2",
             "--sample", "256", "--out", str(out), "--device", "cpu", "--null-draws", "10"])
    d = json.load(open(out / "optimizer_null.json"))
    assert {"experiment", "config", "definitions", "results", "provenance"} <= set(d)
    for st in on.STATS:
        assert set(d["results"]["summary"]["trunk"][st]) == {"mean", "sd", "min", "max", "n"}
    assert len(d["results"]["draws"]) == 2 and d["results"]["run"] is None
    rec = load_record(str(out / "optimizer_null_s1.safetensors"))
    assert rec.steps == make_config(preset="tiny", steps=100).snapshot_steps()
    usage_error(on.main, ["--run", str(tmp_path / "nope")], match="config.json")
    usage_error(on.main, ["--preset", "tiny"], match="--out")
