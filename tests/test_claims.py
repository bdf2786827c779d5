"""claims.py's rules on planted tables: every rule gives each of its verdicts at least once, the tolerance
rule and the optimizer null decide as stated, and --robust names the definitions a verdict depends on."""
import json

import numpy as np
import pytest

import claims as cl
from readers import Results, Seed

STEPS = list(range(200, 2001, 200))


class Planted(Seed):
    """A Seed whose tables are given, not read."""

    def __init__(self, seed=42, pca=None, update=None, grad=None, fisher=None, null=None, metrics=None,
                 twin=None, record=None):
        self.res, self.seed, self.dir = None, seed, f"seed{seed}"
        self.pca, self.update, self.grad, self.fisher, self.null = pca, update, grad, fisher, null
        self.metrics, self._twin, self._record = metrics or [], twin, record

    def twin(self):
        return self._twin

    def record(self):
        return self._record


def opt(group, **stats):
    return {"results": {"summary": {group: {k: dict(mean=m, sd=sd, n=5) for k, (m, sd) in stats.items()}}}}


def c1(pc1, walk, o=None):
    pca = {"summary": {f"block{l}": dict(pc1=pc1, null_matched_pc1=walk) for l in range(8)}}
    return cl.rule_c1(Planted(pca=pca, null=opt("block0", pc1=o) if o else None)).verdict


def test_c1_every_verdict():
    assert c1(0.80, 0.70, (0.50, 0.01)) == cl.HOLDS
    assert c1(0.80, 0.70, (0.80, 0.01)) == cl.BY_OPT
    assert c1(0.80, 0.90, (0.50, 0.01)) == cl.BY_WALK
    assert c1(0.50, 0.70, (0.50, 0.01)) == cl.NOT
    assert c1(0.99, 0.60, (0.50, 0.01)) == cl.ABOVE
    assert cl.rule_c1(Planted()).verdict == cl.NA


def test_tolerance_rule_is_the_paper_range_widened_by_tol():
    lo, hi = cl.paper_range("C1", 42)
    assert cl.reproduces(lo * (1 - cl.TOL) + 1e-9, lo, hi) and not cl.reproduces(lo * (1 - cl.TOL) - 1e-9, lo, hi)
    assert cl.paper_range("C16", 271) == (0.20, 0.67) and cl.paper_range("C15", 271) == (0.36, 0.42)
    assert cl.paper_range("C7", 42) != cl.paper_range("C7", 271)  # per-seed values, not seed 42's copied


def update_doc(early, walk_early, t_star=None, walk_t=None):
    sm = dict(early_abs_C=early, mid_abs_C=0.05, late_abs_C=0.1, matched_walk_early_abs_C=walk_early,
              t_star=t_star, matched_walk_t_star=walk_t, t_star_end=t_star, early_abs_C_end=early,
              mid_abs_C_end=0.05, late_abs_C_end=0.1)
    return {"summary": {"block0": sm}, "phases": {"scale": 1.0}}


def test_c6_every_verdict():
    v = lambda e, w, o=None: cl.rule_c6(Planted(update=update_doc(e, w), null=opt("block0", early_abs_C=o) if o  # noqa: E731
                                                else None)).verdict
    assert v(0.25, 0.15, (0.10, 0.01)) == cl.HOLDS
    assert v(0.25, 0.15, (0.24, 0.01)) == cl.BY_OPT
    assert v(0.25, 0.30, (0.10, 0.01)) == cl.BY_WALK
    assert v(0.05, 0.15, (0.10, 0.01)) == cl.NOT
    assert v(0.50, 0.15, (0.10, 0.01)) == cl.ABOVE
    assert cl.rule_c6(Planted()).verdict == cl.NA


def test_c7_every_verdict():
    v = lambda t, w=None, o=None: cl.rule_c7(Planted(update=update_doc(0.2, 0.1, t, w),  # noqa: E731
                                                     null=opt("block0", t_star=o) if o else None)).verdict
    assert v(5300, None, (8000, 100)) == cl.HOLDS
    assert v(5300, None, (5500, 300)) == cl.BY_OPT
    assert v(5300, 5200, None) == cl.BY_WALK
    assert v(None) == cl.NOT and v(9000) == cl.NOT
    assert cl.rule_c7(Planted()).verdict == cl.NA


def pca_with_a(a, r_diff_corr=None, n=None, fb=None):
    dec = dict(a=a, r=list(np.ones(len(a))), f_b=fb or [0.7] * len(a), corr_r_p_ood_diff=r_diff_corr,
               corr_n=n)
    return {"snapshot_steps": STEPS[:len(a)], "results": {g: {"decomposition": dec} for g in ("block0", "block1")},
            "summary": {"block0": {"corr_r_p_ood_diff": r_diff_corr}}}


def test_c3_every_verdict_and_the_analysis_n():
    up = list(range(1, 11))
    down = [1, 2, 3, 4, 5, 6, 7, 8, 9, 8]
    assert cl.rule_c3(Planted(pca=pca_with_a(up, 0.9, 10))).verdict == cl.HOLDS  # n from the analysis
    assert cl._diff_corr(Planted(pca=pca_with_a(up, 0.9, 10)), "block0") == (0.9, 9)
    assert cl.rule_c3(Planted(pca=pca_with_a(down, 0.9, 10), null=opt("block0", a_retreat=(0.11, 0.01)))
                      ).verdict == cl.BY_OPT
    assert cl.rule_c3(Planted(pca=pca_with_a(down, 0.9, 10), null=opt("block0", a_retreat=(0.5, 0.01)))
                      ).verdict == cl.NOT
    assert cl.rule_c3(Planted(pca=pca_with_a(up, 0.1, 10))).verdict == cl.NOT
    assert cl.rule_c3(Planted()).verdict == cl.NA


def c4(fb_final, o=None, fb="final"):
    f = [0.5] * 9 + [fb_final]
    return cl.rule_c4(Planted(pca=pca_with_a(list(range(1, 11)), fb=f),
                              null=opt("block0", f_b_final=o) if o else None), fb=fb).verdict


def test_c4_every_verdict():
    assert c4(0.70, (0.95, 0.01)) == cl.HOLDS  # no walk without increment norms: beyond the optimizer null
    assert c4(0.70) == cl.NA  # the paper's value, but no null at all
    assert c4(0.70, (0.70, 0.01)) == cl.BY_OPT
    assert c4(0.99, (0.70, 0.01)) == cl.NOT
    assert c4(0.70, (0.95, 0.01), fb="mean") == cl.NOT  # the time average of this f_b is 0.52
    assert cl.rule_c4(Planted()).verdict == cl.NA


def test_c2_every_verdict():
    upd = {"u_steps": STEPS, "anchor": 0, "u_prev_steps": [0] + STEPS[:-1],
           "groups": {"block0": {"u_norm": [1.0] * len(STEPS)}}}
    walk = cl.walk_window_cos(np.ones(len(STEPS)), 5)["cos_prev_mean"]

    def v(cos_prev):
        pca = {"snapshot_steps": STEPS, "anchor": 0,
               "results": {"block0": {"stability": dict(W=5, cos_prev_mean=cos_prev, cos_global_mean=0.9)}}}
        return cl.rule_c2(Planted(pca=pca, update=upd)).verdict
    assert walk < 0.997  # a short walk: consecutive windows at 0.99-ish
    assert v(0.9975) == cl.HOLDS
    assert v(0.5) == cl.NOT
    upd2 = dict(upd, groups={"block0": {"u_norm": [1.0] * 3 + [1e-3] * 7}})  # then still: windows near 1
    pca = {"snapshot_steps": STEPS, "anchor": 0,
           "results": {"block0": {"stability": dict(W=5, cos_prev_mean=0.9975, cos_global_mean=0.9)}}}
    assert cl.rule_c2(Planted(pca=pca, update=upd2)).verdict == cl.BY_WALK
    assert cl.rule_c2(Planted()).verdict == cl.NA


def grad_doc(b0, b1, key="b_normalized", cos=0.01):
    return {"lambda": [2.0, 2.0, 4.0], "noise_floor": {"block0": 4.5e-4},
            "results": {"combined": {"block0": {key: [b0] * 3, "cos_mean": [cos] * 3},
                                     "block1": {key: [b1] * 3}}}}


def test_c5_and_c8_every_verdict():
    assert cl.rule_c5(Planted(grad=grad_doc(1, 1, cos=0.01))).verdict == cl.HOLDS
    assert cl.rule_c5(Planted(grad=grad_doc(1, 1, cos=0.004))).verdict == cl.NOT
    assert cl.rule_c5(Planted(grad={**grad_doc(1, 1, cos=0.008), "noise_floor": {"block0": 0.01}})
                      ).verdict == cl.NOT
    assert cl.rule_c8(Planted(grad=grad_doc(5.0, 1.0))).verdict == cl.HOLDS
    assert cl.rule_c8(Planted(grad=grad_doc(0.7, 1.0))).verdict == cl.NOT
    assert cl.rule_c8(Planted(grad=grad_doc(5.0, 1.0, key="b"))).verdict == cl.NA  # no normalized b
    assert cl.rule_c8(Planted(grad=grad_doc(5.0, 1.0, key="b")), b="raw").verdict == cl.HOLDS


def test_c10_every_verdict():
    def v(vb, pc2):
        rows = [dict(step=s, groups={"trunk": {"u1_overlap": {"v_b": vb, "v_PC2": pc2}}}) for s in STEPS]
        return cl.rule_c10(Planted(fisher={"table": rows})).verdict
    assert v(0.0005, 0.01) == cl.HOLDS
    assert v(0.001, 0.001) == cl.BY_NULL
    assert v(0.05, 0.01) == cl.NOT
    assert cl.rule_c10(Planted()).verdict == cl.NA


def test_c11_every_verdict(monkeypatch):
    sw = {"pairs": [{"peak": 1000, "trough": 1400}], "v_sw_pair": 0,
          "groups": {"block0": {"pairs": [{"backbone_overlap": 0.22}]}}}
    monkeypatch.setattr(cl, "span_cos", lambda rec, g, spans: [0.5])
    assert cl.rule_c11(Planted(pca={"switching": sw}, record=object())).verdict == cl.HOLDS
    monkeypatch.setattr(cl, "span_cos", lambda rec, g, spans: [0.2])
    assert cl.rule_c11(Planted(pca={"switching": sw}, record=object())).verdict == cl.BY_NULL
    assert cl.rule_c11(Planted(pca={"switching": sw})).verdict == cl.NA  # no record: no comparable spans
    far = json.loads(json.dumps(sw))
    far["groups"]["block0"]["pairs"][0]["backbone_overlap"] = 0.9
    assert cl.rule_c11(Planted(pca={"switching": far})).verdict == cl.NOT


def test_span_cos_of_a_line_is_one():
    import torch
    import geometry as geo
    steps = [0, 100, 200, 300, 400]
    t = torch.tensor(steps[1:] + [1.0], dtype=torch.float64)  # rows x(t) = t v, then theta(0) = v
    rec = geo.Record(steps, {"k": (1,)}, {"k": torch.outer(t, t)}, {"block0": ["k"]})
    assert cl.span_cos(rec, "block0", [200]) == [pytest.approx(1.0)]


def test_c16_every_verdict():
    def metrics(peak, final):
        p = [0.0, 0.2, peak, 0.1, peak, 0.1, peak * 0.9, 0.1, 0.05, final, final]
        return [dict(step=1000 * i, p_ood=x, val_loss=5 - 0.3 * i) for i, x in enumerate(p)]
    pairs = {"switching": {"pairs": [{}, {}]}}
    assert cl.rule_c16(Planted(pca=pairs, metrics=metrics(0.75, 0.01))).verdict == cl.HOLDS
    assert cl.rule_c16(Planted(pca=pairs, metrics=metrics(0.3, 0.01))).verdict == cl.NOT
    assert cl.rule_c16(Planted(seed=271, pca=pairs, metrics=metrics(0.65, 0.01))).verdict == cl.HOLDS
    assert cl.rule_c16(Planted()).verdict == cl.NA


def test_robust_names_the_definitions_that_change_a_verdict(tmp_path):
    d = tmp_path / "results" / "v9" / "seed42" / "analysis"
    d.mkdir(parents=True)
    f = [0.5] * 9 + [0.70]
    json.dump(pca_with_a(list(range(1, 11)), fb=f), open(d / "trajectory_pca_uncentered.json", "w"))
    json.dump(opt("block0", f_b_final=(0.95, 0.01)), open(d / "optimizer_null.json", "w"))
    rows = cl.robust(Results(str(tmp_path / "results"), "v9"))
    c4 = next(r for r in rows if r["claim"] == "C4")
    assert c4["verdicts"] == {"final f_b": cl.HOLDS, "time-averaged f_b": cl.NOT}
    assert c4["depends_on"] == ["time-averaged f_b"]
    assert all(r["depends_on"] == [] for r in rows if r["claim"] == "C16")


def test_c9_every_verdict_and_a_short_run_scales_its_switch_window():
    def fisher(q, alpha, steps=2000, lambda_step=800):
        rows = [dict(step=st, groups={"trunk": {"q_lm": {"v_b": q(st)}, "alpha": alpha(st)}})
                for st in range(0, steps + 1, steps // 20)]
        return {"table": rows, "config": {"steps": steps, "lambda_step": lambda_step}}
    rising, flat = (lambda st: 10.0 ** (st / 500)), (lambda st: 1.0)
    spike = lambda st: 10.0 if st == 800 else 1.0  # noqa: E731
    assert cl.rule_c9(Planted(fisher=fisher(rising, spike))).verdict == cl.HOLDS
    assert cl.rule_c9(Planted(fisher=fisher(rising, flat))).verdict == cl.NOT
    assert cl.rule_c9(Planted(fisher=fisher(flat, spike))).verdict == cl.NOT
    # before: the window was +-400 steps whatever the run's length, so in a 400-step run every
    # snapshot was "near" the switch, none was left to compare with, and the rule raised
    short = cl.rule_c9(Planted(fisher=fisher(lambda st: 10.0 ** (st / 100), lambda st: 5.0 if st == 160
                                              else 1.0, steps=400, lambda_step=160)))
    assert short.verdict == cl.HOLDS and short.numbers["alpha_spike"] == pytest.approx(5.0)
    assert "near step 160" in short.ours
    assert cl.rule_c9(Planted()).verdict == cl.NA
