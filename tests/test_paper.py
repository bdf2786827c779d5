"""The report pipeline: matched-null math against closed forms and dense simulation, claim rules with planted
answers, a changed result reaching the macros, the README table and the PDF text, and every figure drawn from
the results of a tiny pipeline run in the test (CPU, about a minute in all)."""
import json
import math
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import claims as cl
import collect_results
import make_paper_figures as mpf

RESULTS = os.path.join(ROOT, "results")
PCA = "v1/seed42/analysis/trajectory_pca_uncentered.json"
UPDATE = "v1/seed42/analysis/backbone_update_analysis.json"
HAVE_TEX = all(shutil.which(t) for t in ("latexmk", "pdflatex", "pdftotext"))


# ----------------------------------------------------------------------------- matched null
def test_matched_null_equal_norms_is_the_random_walk():
    # L L^T has eigenvalues 1 / (4 sin^2((2k-1) pi / (2 (2T+1)))) and trace T (T+1) / 2
    for T in (1, 5, 50):
        lam = 1 / (4 * math.sin(math.pi / (2 * (2 * T + 1))) ** 2)
        assert cl.matched_null_pc1(np.ones(T)) == pytest.approx(lam / (T * (T + 1) / 2), rel=1e-9)
    assert cl.matched_null_pc1(np.ones(2000)) == pytest.approx(8 / math.pi**2, abs=1e-3)
    assert cl.matched_null_pc1([0, 0, 4.0, 0]) == pytest.approx(1.0)  # one step: a line


def test_matched_walk_quantities_match_a_dense_walk():
    # a walk with rising-then-falling step sizes in independent random directions of R^D, D large
    rng = np.random.default_rng(0)
    T, D = 30, 40_000
    n = np.concatenate([np.linspace(0.5, 3, 10), np.linspace(3, 0.3, 20)])
    U = rng.standard_normal((T, D))
    X = np.cumsum(n[:, None] * U / np.linalg.norm(U, axis=1, keepdims=True), axis=0)
    _, S, Vt = np.linalg.svd(X, full_matrices=False)
    vb = Vt[0] * np.sign(X[-1] @ Vt[0])
    assert (S[0] ** 2 / (S**2).sum()) == pytest.approx(cl.matched_null_pc1(n**2), abs=0.01)
    d = np.diff(np.vstack([np.zeros(D), X]), axis=0)
    C = d @ vb / np.linalg.norm(d, axis=1)
    assert np.abs(C - cl.walk_update_C(n**2)).max() < 0.03 and (cl.walk_update_C(n**2) > 0).all()
    assert (X[-1] @ vb) ** 2 / (X[-1] @ X[-1]) == pytest.approx(cl.walk_fb_final(n**2), abs=0.01)
    W, cg, cp, prev = 10, [], [], None
    for s in range(T - W + 1):
        v = np.linalg.svd(X[s : s + W], full_matrices=False)[2][0]
        cg.append(abs(v @ vb))
        cp += [abs(v @ prev)] if prev is not None else []
        prev = v
    w = cl.walk_window_cos(n**2, W)
    assert w["cos_global_mean"] == pytest.approx(np.mean(cg), abs=0.01)
    assert w["cos_prev_mean"] == pytest.approx(np.mean(cp), abs=0.005)


# ----------------------------------------------------------------------------- claim rules
def _copy_results(tmp_path):
    dst = tmp_path / "results"
    shutil.copytree(RESULTS, dst)
    return dst


def _edit(path, fn):
    d = json.load(open(path))
    fn(d)
    json.dump(d, open(path, "w"))


def _c1(res_dir) -> str:
    return next(r for r in cl.evaluate(cl.Results(str(res_dir), "v1")) if r["id"] == "C1")["verdict"]


def test_c1_verdict_follows_the_matched_null(tmp_path):
    res = _copy_results(tmp_path)
    assert _c1(res) == cl.BY_WALK  # the committed run: the paper's value, every block below its matched null

    def equal_steps(d):  # equal increment norms: the matched null becomes the random walk's 81.1%
        for g in d["groups"].values():
            g["u_norm"] = [1.0] * len(g["u_norm"])

    _edit(res / UPDATE, equal_steps)
    for pc1, verdict in ((0.84, cl.HOLDS), (0.80, cl.BY_WALK), (0.99, cl.NOT)):  # no optimizer null here
        _edit(res / PCA, lambda d: [d["summary"][b].update(pc1=pc1) for b in cl.BLOCKS])
        assert _c1(res) == verdict, pc1
    os.remove(res / UPDATE)  # without increment norms: the random-directions mean stands in (89-90%)
    _edit(res / PCA, lambda d: [d["summary"][b].update(pc1=0.92) for b in cl.BLOCKS])
    assert _c1(res) == cl.HOLDS


def test_every_claim_gets_a_verdict_and_missing_results_are_not_measurable(tmp_path):
    res = cl.Results(RESULTS)
    rows = cl.evaluate(res)
    assert [r["id"] for r in rows if r["seed"] == 42] == [f"C{i}" for i in range(1, 17)]
    assert {r["seed"] for r in rows} == set(res.seeds()) and len({(r["id"], r["seed"]) for r in rows}) == len(rows)
    assert all(r["verdict"] in cl.VERDICTS and r["reason"] for r in rows)
    empty = tmp_path / "results" / "v1" / "seed42"
    empty.mkdir(parents=True)
    rows = cl.evaluate(cl.Results(str(tmp_path / "results")))
    assert {r["verdict"] for r in rows} == {cl.NA}


# ----------------------------------------------------------------------------- one number, end to end
def test_a_changed_number_reaches_macros_readme_and_pdf(tmp_path):
    res = _copy_results(tmp_path)

    def trunk(d):
        d["summary"]["trunk"]["pc1"] = d["results"]["trunk"]["raw"]["pc1"] = 0.9731

    _edit(res / PCA, trunk)
    out = tmp_path / "paper"
    out.mkdir()
    shutil.copy(os.path.join(ROOT, "paper", "paper.tex"), out)
    shutil.copy(os.path.join(ROOT, "paper", "references.bib"), out)
    shutil.copytree(os.path.join(ROOT, "paper", "sections"), out / "sections")
    readme = tmp_path / "README.md"
    shutil.copy(os.path.join(ROOT, "README.md"), readme)
    before = json.load(open(os.path.join(RESULTS, PCA)))["summary"]["trunk"]["pc1"]
    assert before == pytest.approx(0.816, abs=0.0005)  # the archived v1 run: below its matched null
    mpf.main(["--results", str(res), "--version", "v1", "--out", str(out), "--readme", str(readme),
              "--no-figures"])
    macros = open(out / "generated" / "macros.tex").read()
    assert "\\newcommand{\\trunkPCone}{97.3}" in macros and "\\newcommand{\\trunkVsMatched}{above}" in macros
    text = open(readme).read()
    assert "| trunk | 97.3% |" in text and "| trunk | 81.6% |" not in text
    assert text.count(mpf.README_START) == 1 and text.count(mpf.README_END) == 1
    if not HAVE_TEX:
        pytest.skip("latexmk, pdflatex or pdftotext not installed: the PDF part is not checked")
    r = subprocess.run(["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", "-quiet", "paper.tex"],
                       cwd=out, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:]
    pdf = subprocess.run(["pdftotext", "paper.pdf", "-"], cwd=out, capture_output=True, text=True).stdout
    flat = re.sub(r"\s+", " ", pdf)
    assert "the trunk 97.3%" in flat and "above the matched null" in flat


# ----------------------------------------------------------------------------- every figure from a tiny pipeline
MICRO = dict(preset="tiny", n_train_stories=200, n_val_stories=50, n_layer=1, d_model=32, n_head=2, d_ff=64, ctx=64,
             ood_gap_min=30, ood_gap_max=40, batch_size=4, grad_accum=1, n_eval_probe=8, n_eval_lm=4, progress=False)
P_OOD = [0.0, 0.1, 0.3, 0.1, 0.05, 0.3, 0.5, 0.2, 0.1, 0.2, 0.1]  # planted: peaks at 8, 24, 36; troughs 16, 32


def _args(d):
    return [a for k, v in d.items() for a in (f"--{k}", str(v))]


def _tiny_pipeline(tmp, monkeypatch) -> str:
    """Train a micro run and run the four analyses, the SGD controls, beta2 and reheating on it; returns runs/."""
    import backbone_fisher_analysis as bfa
    import backbone_gradient_analysis as bga
    import backbone_update_analysis as bua
    import beta2_analysis
    import experiments
    import reheat
    import sgd_control as sc
    import sgd_matched_valloss as mv
    import sgd_nesterov_run as nr
    import train
    import trajectory_pca_uncentered as tpu

    monkeypatch.setitem(experiments.STEP_SCALE, "tiny", 0.005)  # experiments: 4,000 paper steps -> 20
    monkeypatch.setattr(experiments, "NULL_DRAWS", 50)
    base = {**MICRO, "out_dir": str(tmp / "runs"), "cache_dir": str(tmp / "cache")}
    train.main(_args({**base, "steps": 40, "warmup": 8, "lambda_step": 16, "eval_every": 4, "snapshot_every": 4}))
    run = str(tmp / "runs" / "tiny_seed42")
    rows = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl"))]
    with open(os.path.join(run, "metrics.jsonl"), "w") as f:  # an oscillating p_ood, so that switching has pairs
        for r, p in zip(rows, P_OOD):
            f.write(json.dumps({**r, "p_ood": p}) + "\n")
    tpu.main(["--run", run])
    bua.main(["--run", run])
    bga.main(["--run", run, "--batches", "2", "--batch_size", "2"])
    bfa.main(["--run", run, "--batches", "4", "--batch_size", "2"])
    nr.main(_args(base))
    sc.main(_args(base) + ["--runs", "A,B,C"])
    mv.main(_args(base))
    beta2_analysis.main(_args(base) + ["--betas", "0.99,0.8", "--null_draws", "20"])
    reheat.main(["--run", run, "--lrs", "1e-3,3e-4", "--steps", "6", "--warmup", "2", "--eval_every", "2",
                 "--progress", "false"])
    return str(tmp / "runs")


def test_every_figure_from_a_tiny_pipeline(tmp_path, monkeypatch, capsys):
    runs = _tiny_pipeline(tmp_path, monkeypatch)
    res = tmp_path / "results"
    folders = collect_results.collect(runs, str(res / "v1"), {"seed42": [{"command": "train.py", "wall_s": 1.0}]},
                                      "2026-12-01")
    assert set(folders) == {"seed42", "sgd_control", "beta2", "reheat/seed42"}
    prov = json.load(open(res / "v1" / "seed42" / "provenance.json"))
    assert prov["git_commit"] is not None and prov["stages"][0]["command"] == "train.py"
    copied = [os.path.join(d, f) for d, _, fs in os.walk(res) for f in fs]
    snaps = [f for f in copied if f.endswith((".safetensors", ".pt")) and not collect_results.RECORDS.match(
        os.path.basename(f))]
    assert not snaps, snaps  # never snapshots or states (the small trajectory records travel)
    assert os.path.exists(res / "v1" / "sgd_control" / "runs" / "tiny_sgd_A_seed42" / "metrics.jsonl")
    capsys.readouterr()
    out = tmp_path / "paper"
    made = mpf.make_figures(cl.Results(str(res)), cl.Seed(cl.Results(str(res)), 42), str(out / "figures"))
    log = capsys.readouterr().out
    new_keys = {"fig_decay_share": "share_e0", "fig_fisher_split": "q_lm"}  # figures of the newer analyses
    every = [n for n, _ in mpf.seed_figs(None)] + ["fig_windows"]
    for name in every:
        if name in made:
            assert os.path.getsize(out / "figures" / f"{name}.pdf") > 0 and (out / "figures" / f"{name}.png").exists()
        else:  # skipped with one line that names what is missing
            assert name in new_keys and f"skip {name}: missing {new_keys[name]}" in log, log
    assert len(made) >= 11
    mpf.generate(cl.Results(str(res)), cl.Seed(cl.Results(str(res)), 42), str(out), None)
    assert "\\newcommand{\\trunkPCone}" in open(out / "generated" / "macros.tex").read()


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("argv", [["make_paper_figures.py", "--results", "no/such/dir"],
                                  ["make_paper_figures.py", "--seed", "7"],
                                  ["claims.py", "--results", "no/such/dir"],
                                  ["collect_results.py", "--version", "x1"],
                                  ["collect_results.py", "--version", "v1", "--runs", "no/such/dir"]])
def test_bad_input_is_one_line_and_exit_2(argv, tmp_path):
    r = subprocess.run([sys.executable, os.path.join(ROOT, argv[0])] + argv[1:], cwd=tmp_path if argv[0] ==
                       "collect_results.py" else ROOT, capture_output=True, text=True, timeout=120)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    assert not os.listdir(tmp_path)  # nothing created


# ----------------------------------------------------------------------------- controls' and beta2 curves
def _run_folder(root, name, vals, status="complete", **config):
    """A run record: config.json, status.json, metrics.jsonl with a validation loss at each step of `vals`."""
    d = root / name
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"config": config}))
    (d / "status.json").write_text(json.dumps({"status": status, "step": max(vals)}))
    (d / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "val_loss": v}) + "\n" for s, v in vals.items()))


def test_controls_sweep_and_beta2_runs_reach_the_macros(tmp_path):
    """D's sweep is read from its runs' last evals (lowest loss named, grid edge or not); two runs of D give
    their spread and the step they part; a diverged beta2 run is named, not averaged in."""
    v = tmp_path / "results" / "v9"
    runs = v / "sgd_control" / "runs"
    _run_folder(runs, "sgd_Dsweep_lr0.1_seed42", {0: 8.0, 1000: 5.0})
    _run_folder(runs, "sgd_Dsweep_lr1_seed42", {0: 8.0, 1000: 4.5})
    _run_folder(runs, "sgd_Dsweep_lr3_seed42", {0: 8.0, 1000: 6.0})
    _run_folder(runs, "sgd_D_seed42", {0: 8.0, 1000: 4.0, 2000: 3.5, 4000: 3.0}, lr=1.0, momentum=0.9)
    _run_folder(v / "sgd_control" / "earlier", "sgd_D_seed42_bf633bf", {0: 8.0, 1000: 4.02, 2000: 3.0, 4000: 2.2})
    _run_folder(runs, "sgd_A_seed42", {0: 8.0, 1000: 2.5, 4000: 1.1})
    _run_folder(runs, "sgd_A0_seed42", {0: 8.0, 1000: 2.4, 4000: 1.08})
    for b, vals, st in ((0.0, {0: 8.0, 200: 1e4}, "diverged"), (0.8, {0: 8.0, 4000: 1.3}, "complete"),
                        (0.99, {0: 8.0, 4000: 1.07}, "complete")):
        _run_folder(v / "beta2" / "runs", f"beta2_{b:g}_seed42", vals, st, beta2=b)
    res = cl.Results(str(tmp_path / "results"), "v9")
    m = {}
    mpf._numbers_controls(res, m)
    mpf._numbers_missing(res, m)
    mpf._numbers_beta2_curves(res, m)
    assert m["ctrlSweep"] == "5.000, 4.500, 6.000 at learning rates 0.1, 1, 3"
    assert m["ctrlSweepBest"] == "1" and m["ctrlSweepEdge"] == "inside the range"
    assert m["ctrlDSpread"] == "0.80" and m["ctrlDPartStep"] == "2{,}000" and m["ctrlDEarlierValFourK"] == "2.200"
    assert m["ctrlAZeroVsA"] == "below" and m["ctrlDLr"] == "1" and m["haveBetaTwo"] == "0"
    assert m["betaTwoFinal"] == "1.070 ($\\beta_2$ = 0.99), 1.300 ($\\beta_2$ = 0.8)"
    assert m["betaTwoDiverged"] == "; $\\beta_2$ = 0 diverged (stopped at step 200)"


def test_c12_reads_the_new_controls_table(tmp_path):
    """C12 reads D (SGD + momentum that learns) from backbone_controls.json when Table 9's file is absent: a
    learning D far from colinear gives 'does not hold'; with no learning SGD run the reason says so."""
    v = tmp_path / "results" / "v9"
    (v / "sgd_control").mkdir(parents=True)
    (v / "corpus").mkdir()
    (v / "corpus" / "stats.json").write_text(json.dumps({"ngram_val_nats": {"1": 5.8}}))
    row = lambda run, pc1, val: dict(run=run, pc1_pct=pc1, k95=3, final_val=val, null_shuffle_pc1_pct=70.0)  # noqa: E731
    path = v / "sgd_control" / "backbone_controls.json"
    path.write_text(json.dumps({"rows": [row("A", 80.0, 1.1), row("D", 85.0, 2.2), row("A0", 81.0, 1.08)]}))
    res = cl.Results(str(tmp_path / "results"), "v9")
    assert cl.unigram(res) == 5.8
    v12 = cl.rule_c12(res)
    assert v12.verdict == cl.NOT and "D 85.0%" in v12.ours and "not colinear" in v12.reason
    path.write_text(json.dumps({"rows": [row("A", 80.0, 1.1), row("D", 100.0, 5.7)]}))  # D does not learn
    v12 = cl.rule_c12(cl.Results(str(tmp_path / "results"), "v9"))
    assert v12.verdict == cl.NOT and "no SGD run learns" in v12.reason


# ----------------------------------------------------------------------------- the report from a planted tree
def _ms(mean, sd=0.0):
    return {"mean": mean, "sd": sd, "n": 5}


MECHANICS = {"results": {"setup": {"seeds": 5, "sample": 64}, "rows": [  # optimizer_null.py --mechanics
    {"ingredient": "as configured", "trunk": {"pc1": _ms(0.731, 0.004), "null_matched_pc1": _ms(0.90),
                                              "coherence": _ms(0.23, 0.01), "cos_vb_theta0": _ms(0.63, 0.01),
                                              "t_star": _ms(5140, 329), "a_retreat": _ms(0.123, 0.003)}},
    {"ingredient": "no weight decay", "trunk": {"pc1": _ms(0.899, 0.002), "null_matched_pc1": _ms(0.90),
                                                "coherence": _ms(1.05), "cos_vb_theta0": _ms(-0.01, 0.02),
                                                "t_star": _ms(None), "a_retreat": _ms(0.001)}}]}}
ROBUST = {"results": {"rows": [  # claims.py --robust
    {"claim": "C1", "seed": 42, "verdicts": {"both nulls": cl.BY_WALK, "optimizer null only": cl.NA},
     "depends_on": ["optimizer null only"]},
    {"claim": "C7", "seed": 42, "verdicts": {"midpoint labels": cl.BY_OPT, "end labels": cl.BY_OPT},
     "depends_on": []}]}}


def _series_of(fig) -> list[tuple[str, int]]:
    """(what, number of finite points) of every series a figure draws: lines, markers, bars, bands."""
    import matplotlib.collections as mc

    out = []
    for ax in fig.axes:
        for ln in ax.get_lines():
            x, y = (np.asarray(v, float) for v in ln.get_data())
            if len(x) == 2 and ln.get_label().startswith("_") and (np.ptp(x) == 0 or np.ptp(y) == 0):
                continue  # axhline / axvline: a reference, not a series
            out.append((f"{ax.get_title()}: line {ln.get_label()}", int(np.isfinite(x * y).sum())))
        for c in ax.collections:
            if isinstance(c, (mc.PolyCollection, mc.PathCollection, mc.LineCollection)) and not c.get_label().startswith("_"):
                out.append((f"{ax.get_title()}: {type(c).__name__} {c.get_label()}", len(c.get_paths())))
        for b in ax.containers:
            h = [p.get_height() for p in getattr(b, "patches", [])]
            if h:
                out.append((f"{ax.get_title()}: bars {b.get_label()}", int(np.isfinite(h).sum())))
    return out


def _rows(tex: str) -> list[list[str]]:
    """The data rows of a generated tabular (between \\midrule and \\bottomrule, seed headers left out)."""
    body = tex.split("\\midrule", 1)[1].split("\\bottomrule")[0]
    return [[c.strip() for c in r.split(" & ")] for r in body.split("\\\\") if " & " in r]


def test_report_figures_draw_every_series_and_tables_have_their_numbers(tmp_path):
    """From a copy of the committed results with the nulls' files planted: every series of every figure has
    points (Figure 10's random directions included), every table row of a result that exists has its
    numbers, both seeds appear in the per-seed tables, and the planted mechanics and robustness numbers
    reach their tables; without those files the tables say 'Not yet run'."""
    res_dir = _copy_results(tmp_path)
    (res_dir / "v2" / "nulls").mkdir(exist_ok=True)
    (res_dir / "v2" / "nulls" / "mechanics.json").write_text(json.dumps(MECHANICS))
    (res_dir / "v2" / "claims_robust.json").write_text(json.dumps(ROBUST))
    res = cl.Results(str(res_dir), "v2")
    seen = {}
    made = mpf.make_figures(res, cl.Seed(res, 42), str(tmp_path / "paper" / "figures"),
                            inspect=lambda n, f: seen.update({n: _series_of(f)}))
    assert set(made) == set(seen) and {"fig_fisher_split", "fig_windows", "fig4_reheat", "fig_controls"} <= set(made)
    stale_ft = mpf.finetune(res) is None  # the fine-tuning study's files predate its subspace file
    assert len(made) == 15 - stale_ft, made  # every figure of v2, Tables 9-11's and Figure 4's included
    empty = [(n, what) for n, series in seen.items() for what, k in series if k == 0]
    assert not empty, empty
    assert any("mean $q(w_k)$" in what for what, _ in seen["fig_fisher_split"])
    mpf.generate(res, cl.Seed(res, 42), str(tmp_path / "paper"), None, log=lambda *_: None)
    gen = tmp_path / "paper" / "generated"
    tabs = {f.stem: f.read_text() for f in gen.glob("tab_*.tex")}
    assert not [k for k, t in tabs.items() if "not in results" in t and not (stale_ft and k == "tab_finetune")]
    for name in ("tab_pc1", "tab_fisher", "tab_update"):
        assert "seed 42" in tabs[name] and "seed 271" in tabs[name], name
    for name in ("tab_pc1", "tab_fisher", "tab_switch", "tab_hparams", "tab_sgd", "tab_reheat", "tab_mechanics"):
        rows = _rows(tabs[name])
        ours = [r for r in rows if r[0] != "paper"]  # the paper's reference row has dashes by design
        assert ours and all(c not in ("--", "", "None") for r in ours for c in r[:2]), (name, rows)
    assert all(c != "--" for r in _rows(tabs["tab_pc1"]) for c in r), "a PC1 row lacks a number"
    assert [r[0] for r in _rows(tabs["tab_switch"])] == ["42", "271", "paper"]
    pm = " \\ensuremath{\\pm} "
    assert _rows(tabs["tab_mechanics"]) == [
        ["as configured", f"73.1{pm}0.4", "90.0", f"0.23{pm}0.01", f"0.63{pm}0.01", f"5,140{pm}329", f"12.3{pm}0.3"],
        ["no weight decay", f"89.9{pm}0.2", "90.0", "1.05", f"-0.01{pm}0.02", "--", "0.1"]]
    assert _rows(tabs["tab_robust"]) == [
        ["C1 (s42)", "both nulls: walk; optimizer null only: n/m", "\\textbf{no}: optimizer null only"],
        ["C7 (s42)", "midpoint labels: optimizer; end labels: optimizer", "yes"]]
    prov = tabs["tab_provenance"]  # every stage of every provenance file, the failed ones with their exit status
    # the two failed controls calls (their runs stay, under "earlier"); beta2's failed call was run again
    assert prov.count("\\textbf{1}") == 2 and "bench.py" in prov and "seed271 &" in prov
    assert "-{}-" in prov and not re.search(r"\\texttt\{[^}]*[^{]--", prov)  # never an en dash in a command
    macros = (gen / "macros.tex").read_text()
    # Tables 9-11 and Figure 4 come from v2 itself now, not the v1 archive
    for name in ("sgd", "matched", "betaTwoGeo", "reheat"):
        assert f"\\newcommand{{\\{name}Version}}{{v2}}" in macros and f"\\newcommand{{\\{name}Archived}}{{0}}" in macros
        assert f"\\newcommand{{\\{name}Here}}{{1}}" in macros
    os.remove(res_dir / "v2" / "claims_robust.json")
    shutil.rmtree(res_dir / "v2" / "nulls")
    res = cl.Results(str(res_dir), "v2")
    assert "Not yet run" in mpf.tab_mechanics(res) and "Not yet run" in mpf.tab_robust(res)
    # without v2's own Table 9 and reheating, the report falls back to the v1 archive and says so
    shutil.rmtree(res_dir / "v2" / "sgd_control")
    shutil.rmtree(res_dir / "v2" / "reheat")
    m = mpf.archive_numbers(cl.Results(str(res_dir), "v2"))
    assert (m["sgdVersion"], m["sgdArchived"], m["sgdHere"]) == ("v1", "1", "0")
    assert (m["reheatVersion"], m["reheatArchived"], m["reheatHere"]) == ("v1", "1", "0")
    assert m["betaTwoGeoHere"] == "1" and "reheatPeakSixE" in m


def test_defect2_other_out_leaves_the_readme_alone_and_writes_are_atomic(tmp_path, monkeypatch):
    """--out elsewhere never rewrites the repository's README (an explicit --readme does); a write that dies
    before its rename leaves the old file whole; a killed figure write's temp files are removed next run."""
    readme = os.path.join(ROOT, "README.md")
    before = open(readme, "rb").read()
    out = tmp_path / "out"
    mpf.main(["--out", str(out), "--no-figures"])
    assert open(readme, "rb").read() == before and (out / "generated" / "numbers.json").exists()
    mine = tmp_path / "README.md"
    mine.write_text(f"intro\n{mpf.README_START}\nOLD BLOCK\n{mpf.README_END}\n")
    mpf.main(["--out", str(out), "--no-figures", "--readme", str(mine)])
    text = mine.read_text()
    assert "OLD BLOCK" not in text and "Claims of the paper" in text
    numbers = (out / "generated" / "numbers.json").read_text()

    def killed(src, dst):  # the process dies after writing the temp file, before the rename
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(Exception):
        mpf.main(["--out", str(out), "--no-figures", "--readme", str(mine)])
    assert (out / "generated" / "numbers.json").read_text() == numbers and mine.read_text() == text
    assert not list((out / "generated").glob("*.tmp*"))
    monkeypatch.undo()
    figs = out / "figures"
    figs.mkdir()
    (figs / "fig_controls.png.tmp999.png").write_bytes(b"half")
    mpf.make_figures(cl.Results(RESULTS, "v2"), None, str(figs), log=lambda *_: None)
    assert not list(figs.glob("*.tmp*")) and (figs / "fig_controls.pdf").exists()


# ----------------------------------------------------------------------------- the verdict words and the nulls in the text
def test_verdict_lists_and_the_optimizer_null_reach_the_macros(tmp_path):
    """Every verdict has its words; a claim whose seeds disagree is listed under each verdict with its seed;
    a planted optimizer null that flips where the paper's t* is and has the paper's PC1 makes C7 and C1
    'explained by the optimizer's mechanics' in the counts and lists, and its numbers reach the macros;
    without it the flag is 0."""
    assert list(mpf.VERDICT_TEXT) == list(cl.VERDICTS)
    rows = [dict(id="C1", seed=42, verdict=cl.BY_WALK, claim="pc1", reason="walk"),
            dict(id="C1", seed=271, verdict=cl.BY_WALK, claim="pc1", reason="walk"),
            dict(id="C11", seed=42, verdict=cl.NOT, claim="switch", reason="out of range"),
            dict(id="C11", seed=271, verdict=cl.NA, claim="switch", reason="no record")]
    assert mpf.claims_with(rows, cl.BY_WALK) == ["C1"] and mpf.claims_with(rows, cl.NA) == ["C11 (seed 271)"]
    summary = mpf.verdict_summary(rows)
    assert "\\textbf{Reproduced, explained by a random walk} (1). C1, pc1: \\emph{walk}." in summary
    assert "\\textbf{Not measurable here} (1). C11 (seed 271), switch: \\emph{no record}." in summary
    assert "explained by the optimizer" not in summary  # no claim has that verdict here
    res_dir = _copy_results(tmp_path)
    for f in res_dir.glob("v2/seed*/analysis/optimizer_null*"):  # start from results without the null
        f.unlink()
    res = cl.Results(str(res_dir), "v2")
    m = mpf.seed_numbers(cl.Seed(res, 42), log=lambda *_: None)
    assert m["haveOptNull"] == "0" and "optNullTStar" not in m
    n = mpf.global_numbers(res, log=lambda *_: None)
    before = int(n["nByOpt"])
    null = {"results": {"summary": {"block0": {"t_star": {"mean": 5100.0, "sd": 100.0, "n": 5},
                                               "pc1": {"mean": 0.73, "sd": 0.004, "n": 5}}}}}
    (res_dir / "v2" / "seed42" / "analysis" / "optimizer_null.json").write_text(json.dumps(null))
    res = cl.Results(str(res_dir), "v2")
    m = mpf.seed_numbers(cl.Seed(res, 42), log=lambda *_: None)
    assert m["haveOptNull"] == "1" and m["optNullTStar"] == "5{,}100 \\ensuremath{\\pm} 100"
    assert m["optNullPCone"] == "73.0 \\ensuremath{\\pm} 0.4" and m["optNullSeeds"] == "5"
    n = mpf.global_numbers(res, log=lambda *_: None)
    # its t* (C7) and its PC1 (C1) are both within the paper's range (the tolerance rule): both explained by it
    assert int(n["nByOpt"]) == before + 2 and n["claimsByOpt"] == "C1 (seed 42), C7 (seed 42)"
    assert sum(int(n["n" + name]) for name, _, _ in mpf.VERDICT_TEXT.values()) == 16
