"""SGD-family controls: Table 8 configs, run C' (SGDW + Nesterov, stop rule), plateau search, table assembly, scripts."""
import json
import math
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

import experiments as ex
import runs
import sgd_control as sc
import sgd_matched_valloss as mv
import sgd_nesterov_run as nr
import train
from common import write_csv
from config import UsageError, lr_at
from model import GPT, make_optimizer, optimizer_step, trunk_keys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCALE = 0.005  # paper steps -> micro steps: 4,000 -> 20, window [600, 2000] -> [3, 10], eval every 1


@pytest.fixture
def small(tmp_path_factory, monkeypatch, micro):
    """Overrides for a micro run in a fresh out_dir (shared corpus cache), with the experiment shrunk to 20 steps."""
    monkeypatch.setitem(ex.STEP_SCALE, "tiny", SCALE)
    return micro(tmp_path_factory.mktemp("sgd"), ctx=64, ood_gap_min=30, ood_gap_max=40, n_eval_probe=8, n_eval_lm=4)


def test_run_configs_match_table8():
    cfg = {r: ex.control_config(r) for r in ex.TABLE8}
    want = {"A": ("adamw", 1e-3, 0.5, "decoupled"), "B": ("sgd", 1e-3, 0.5, "l2"), "C": ("sgd", 1e-2, 0.05, "l2"),
            "C'": ("sgd", 1e-2, 0.5, "decoupled")}
    for r, (opt, lr, wd, mode) in want.items():
        c = cfg[r]
        assert (c.optimizer, c.lr, c.weight_decay, c.wd_mode) == (opt, lr, wd, mode), r
        assert (c.steps, c.warmup, c.min_lr_frac, c.grad_clip, c.batch_size * c.grad_accum, c.seed) == (4000, 1500, 0.1, 1.0, 128, 42)
        assert (c.n_layer, c.d_model, c.eval_every) == (8, 512, 200)
        steps = c.snapshot_steps()
        assert {0, 200, 400, 600, 650, 1950, 2000, 2100, 3900, 4000} <= set(steps) and 550 not in steps and 2050 not in steps
    assert (cfg["B"].momentum, cfg["C"].momentum, cfg["C'"].momentum) == (0.0, 0.9, 0.9)
    assert [cfg[r].nesterov for r in ("B", "C", "C'")] == [False, False, True]
    assert cfg["A"].beta1 == 0.9 and cfg["A"].beta2 == 0.95
    assert [cfg[r].stop_rule for r in ex.TABLE8] == ["", "", "", "2000:5.1:0.02"]
    assert [cfg[r].name for r in ex.TABLE8] == ["sgd_A_seed42", "sgd_B_seed42", "sgd_C_seed42", "sgd_Cp_seed42"]
    # C' follows run C's learning rate at every step (same 4,000-step schedule; the rule ends it at 2,000)
    assert all(lr_at(cfg["C'"], s) == lr_at(cfg["C"], s) for s in range(0, 4000, 25))
    tiny = ex.control_config("C", {"preset": "tiny", "seed": 7})
    assert (tiny.name, tiny.steps, tiny.warmup, tiny.lr, tiny.momentum, tiny.d_model) == ("tiny_sgd_C_seed7", 160, 60, 1e-2, 0.9, 64)
    assert ex.window("tiny") == (24, 80) and ex.control_config("C'", {"preset": "tiny"}).stop_rule == "80:5.1:0.02"
    with pytest.raises(UsageError, match="--lr is fixed"):
        ex.control_config("A", {"lr": 3e-3})
    with pytest.raises(UsageError, match="unknown run"):
        ex.control_config("D")
    with pytest.raises(UsageError):
        sc.parse_runs("A,D")
    assert sc.parse_runs("c, a,A") == ["C", "A"]


def test_cprime_is_sgdw_with_nesterov():
    cfg = ex.control_config("C'", {"preset": "tiny"})
    assert (cfg.optimizer, cfg.nesterov, cfg.momentum, cfg.wd_mode, cfg.weight_decay) == ("sgd", True, 0.9, "decoupled", 0.5)
    model = GPT(50, 1, 8, 2, 16, 8)
    opt = make_optimizer(model, cfg, torch.device("cpu"))
    assert all(g["weight_decay"] == 0.0 and g["nesterov"] for g in opt.param_groups)  # no L2 term inside SGD
    w0, ln0 = model.blocks[0].attn.qkv.weight.detach().clone(), model.blocks[0].ln1.weight.detach().clone()
    for p in model.parameters():
        p.grad = torch.full_like(p, 2.0)
    lr = 0.01
    optimizer_step(opt, cfg, lr)
    step = lr * (1 + 0.9) * 2.0  # first Nesterov step: buf = g, update g + momentum * buf
    assert torch.allclose(model.blocks[0].attn.qkv.weight, (w0 - step) * (1 - lr * 0.5))
    assert torch.allclose(model.blocks[0].ln1.weight, ln0 - step)  # LayerNorm: no decay


def _metrics(run_dir):
    return [json.loads(l) for l in open(os.path.join(run_dir, "metrics.jsonl"))]


def test_stop_rule_fires_or_lets_the_run_continue(small, monkeypatch):
    # a rule every run meets: stopped at the rule step (paper 2,000 -> 10), nothing after it
    monkeypatch.setattr(ex, "STOP_RULE", (2000, -1.0, 2.0))
    cfg = ex.control_config("C'", small)
    assert cfg.stop_rule == "10:-1.0:2.0" and cfg.steps == 20
    st = train.train(cfg)
    assert (st["status"], st["step"]) == ("stopped_early", 10)
    m = _metrics(cfg.run_dir)
    assert m[-1]["step"] == 10
    snaps = os.listdir(os.path.join(cfg.run_dir, "snapshots"))
    assert "step_000010.safetensors" in snaps and "step_000011.safetensors" not in snaps
    rec = nr.rule_record(m, st, 10, -1.0, 2.0, cfg.steps)
    assert rec["fired"] and rec["consistent"] and rec["ended_at"] == 10
    assert train.train(cfg)["status"] == "stopped_early"  # a stopped run is left alone
    # a rule no run meets: the run goes on to the end of its schedule
    monkeypatch.setattr(ex, "STOP_RULE", (2000, 1e9, 2.0))
    cfg2 = ex.control_config("C'", {**small, "out_dir": small["out_dir"] + "2"})
    st2 = train.train(cfg2)
    assert (st2["status"], st2["step"]) == ("complete", 20)
    m2 = _metrics(cfg2.run_dir)
    rec2 = nr.rule_record(m2, st2, 10, 1e9, 2.0, cfg2.steps)
    assert not rec2["fired"] and rec2["evaluated"] and rec2["consistent"]
    assert rec2["best_p_ood"] == max(r["p_ood"] for r in m2 if r["step"] <= 10)
    # the same weights up to the rule step: the rule only decides whether the run goes on
    assert [r["val_loss"] for r in m2 if r["step"] <= 10] == [r["val_loss"] for r in m]
    d = nr.compare_with_c(m, m2, 10)
    assert d["val_diff"] == 0 and d["p_ood_diff"] == 0 and nr.compare_with_c(m, None, 10) is None
    # a run that ended before the rule step: not evaluated
    rec3 = nr.rule_record(m[:3], {"status": "diverged", "step": 2}, 10, -1.0, 2.0, 20)
    assert not rec3["evaluated"] and not rec3["fired"]


def test_plateau_windows_known_answers():
    steps = list(range(0, 4001, 200))
    # the paper's run C, roughly: falls to 5.25 at 2000, within 0.1 of its best (5.10) from 2200
    vals = [10.8, 9.0, 8.0, 7.2, 6.6, 6.2, 5.9, 5.7, 5.5, 5.35, 5.25, 5.19, 5.17, 5.15, 5.14, 5.13, 5.12, 5.11, 5.11, 5.10, 5.10]
    p = mv.plateau_windows(steps, vals, band=0.1)
    assert (p["best_val"], p["best_step"], p["entry_step"]) == (5.10, 3800, 2200)
    assert p["windows"] == [(2000, 2400), (1800, 2600)]
    # entry at the last evaluation: windows shifted left, not cut
    p = mv.plateau_windows([0, 10, 20, 30, 40, 50], [9, 8, 7, 6, 5.5, 5.0], band=0.1)
    assert p["entry_step"] == 50 and p["windows"] == [(30, 50), (10, 50)]
    # entry at the first: shifted right; a series shorter than the window: all of it
    assert mv.plateau_windows([0, 5, 10, 15, 20], [1.0, 1.05, 0.98, 2, 3], band=0.1)["windows"] == [(0, 10), (0, 20)]
    assert mv.plateau_windows([0, 5, 10], [3, 2, 1], band=0.0)["windows"] == [(0, 10), (0, 10)]
    for bad in (([0, 5], [1.0]), ([0, 0, 5], [1, 2, 3]), ([0, 5], [1, math.nan]), ([0], [1.0])):
        with pytest.raises(UsageError):
            mv.plateau_windows(*bad)
    assert mv.first_crossing([0, 200, 400], [10.8, 4.3, 3.0], 5.2) == (0, 200)
    assert mv.first_crossing([0, 200], [5.0, 4.0], 5.2) == (None, 0)
    assert mv.first_crossing([0, 200], [9.0, 8.0], 5.2) is None


def _colinear_run(cfg, f, write_snapshot, seed=0):
    """Snapshots theta(t) = theta0 + f(t) v at every step of cfg's schedule (the rows are colinear)."""
    g = torch.Generator().manual_seed(seed)
    model = GPT(40, cfg.n_layer, cfg.d_model, cfg.n_head, cfg.d_ff, cfg.ctx)
    theta0 = {k: v.detach().clone() for k, v in model.state_dict().items()}
    v = {k: torch.randn(theta0[k].shape, generator=g) for k in trunk_keys(cfg.n_layer)}
    for s in cfg.snapshot_steps():
        write_snapshot(cfg.run_dir, s, {k: t + f(s) * v[k] if k in v else t for k, t in theta0.items()})
    json.dump({"config": cfg.to_dict()}, open(os.path.join(cfg.run_dir, "config.json"), "w"))
    return math.sqrt(sum(float((x ** 2).sum()) for x in v.values()))


def test_table_assembly_from_window_summaries(small, tmp_path, snapshots):
    cfg = ex.control_config("C", small)
    w0, w1 = ex.window("tiny")
    assert (w0, w1) == (3, 10)
    vnorm = _colinear_run(cfg, lambda s: 0.1 * s, snapshots.write)
    ws = ex.control_window(cfg, w0, w1, groups=["trunk", "block0"], null_draws=200)
    metrics = [dict(step=0, val_loss=7.7, p_ood=0.0), dict(step=10, val_loss=6.0, p_ood=0.02),
               dict(step=20, val_loss=5.5, p_ood=0.02)]
    row = ex.table9_row("C", cfg.to_dict(), metrics, {"status": "complete", "step": 20}, ws)
    assert (row["optimizer"], row["final_val"], row["best_p_ood"], row["best_p_ood_step"]) == ("SGD+momentum", 5.5, 0.02, 10)
    assert row["pc1_pct"] == pytest.approx(100.0) and row["k95"] == row["k99"] == 1
    assert row["drift"] == pytest.approx(0.1 * (w1 - w0) * vnorm, rel=1e-5)
    assert row["update_abs_C_mean"] == pytest.approx(1.0) and row["window"] == "[3, 10]" and row["n_rows"] == 7
    assert row["null_theory_pc1_pct"] < 100 and row["block_pc1_pct"] == {"block0": pytest.approx(100.0)}
    assert (row["momentum"], row["weight_decay"], row["wd_mode"]) == (0.9, 0.05, "l2")
    # a run that ended before the window end: its outcome, no geometry
    row_b = ex.table9_row("B", ex.control_config("B", small).to_dict(), metrics[:1], {"status": "diverged", "step": 4}, None)
    assert row_b["pc1_pct"] is None and row_b["status"] == "diverged" and row_b["final_val"] == 7.7
    text = ex.format_table9([row, row_b])
    assert "100.0" in text and "diverged@4" in text
    write_csv(tmp_path / "t.csv", [row, row_b], ex.TABLE9_COLUMNS)
    lines = open(tmp_path / "t.csv").read().splitlines()
    assert lines[0].split(",") == ex.TABLE9_COLUMNS and len(lines) == 3
    # a missing snapshot inside the window is an error, not a shorter window
    os.remove(runs.snapshot_path(cfg.run_dir, 6))
    with pytest.raises(UsageError, match="no snapshot at step 6"):
        ex.control_window(cfg, w0, w1)


def _one_error_line(capsys, fn):
    with pytest.raises(SystemExit) as e:
        fn()
    err = [l for l in capsys.readouterr().err.splitlines() if l.strip() and not l.startswith("\r")]
    assert e.value.code == 2 and len(err) == 1 and err[0].startswith("error:"), err


def test_scripts_end_to_end(small, capsys, monkeypatch, argv):
    monkeypatch.setattr(ex, "NULL_DRAWS", 100)
    args = argv(small)
    out = os.path.join(small["out_dir"], "tiny_sgd_control")
    _one_error_line(capsys, lambda: mv.main(args))  # runs A and C not trained yet
    nr.main(args)
    cp = json.load(open(os.path.join(out, "sgd_nesterov.json")))
    assert cp["rule"]["evaluated"] and cp["rule"]["consistent"] and cp["rule"]["step"] == 10
    assert cp["compare_with_C"] is None and cp["row"]["pc1_pct"] is not None  # run C does not exist yet
    assert os.path.exists(os.path.join(small["out_dir"], "tiny_sgd_Cp_seed42", "analysis", "sgd_nesterov.json"))
    sc.main(args + ["--runs", "A,C"])
    rec = json.load(open(os.path.join(out, "sgd_control.json")))
    assert [r["run"] for r in rec["rows"]] == ["A", "C", "C'"] and rec["window"] == [3, 10]  # C' from its run folder
    assert all(r["pc1_pct"] is not None for r in rec["rows"]) and rec["rows"][0]["status"] == "complete"
    assert set(rec["window_summaries"]["A"]["groups"]) == {"trunk", "block0"}
    assert os.path.exists(os.path.join(small["out_dir"], "tiny_sgd_A_seed42", "analysis", "sgd_window.json"))
    assert os.path.getsize(os.path.join(out, "sgd_control.png")) > 0
    capsys.readouterr()
    mv.main(args)
    m = json.load(open(os.path.join(out, "sgd_matched_valloss.json")))
    kinds = [(r["run"], r["kind"], r["start"], r["end"]) for r in m["rows"]]
    assert kinds[:3] == [("A", "matched", 0, 2), ("A", "matched", 0, 3), ("A", "matched", 1, 3)]
    assert kinds[-3:] == [("A", "reference", 1, 5), ("A", "reference", 3, 10), ("C", "reference", 3, 10)]
    assert [k[0:2] for k in kinds[3:5]] == [("C", "matched")] * 2
    assert all(0 < r["pc1_pct"] <= 100 + 1e-9 and r["drift"] > 0 for r in m["rows"])
    # bad input: one line, exit 2, nothing overwritten
    files = [os.path.join(out, f) for f in ("sgd_matched_valloss.json", "sgd_control.json", "sgd_control.csv")]
    before = [open(f, "rb").read() for f in files]
    # a snapshot that is not the one training wrote (a removed one is rewritten by training again)
    path = runs.snapshot_path(os.path.join(small["out_dir"], "tiny_sgd_A_seed42"), 3)
    sd = load_file(path)
    save_file({k: v + 1e-3 for k, v in sd.items()}, path)
    _one_error_line(capsys, lambda: mv.main(args))
    _one_error_line(capsys, lambda: sc.main(args + ["--runs", "A"]))
    _one_error_line(capsys, lambda: sc.main(args + ["--runs", "A,D"]))
    _one_error_line(capsys, lambda: nr.main(args + ["--lr", "0.1"]))
    assert [open(f, "rb").read() for f in files] == before


def test_help_shows_the_tiny_command():
    for script in ("sgd_control.py", "sgd_nesterov_run.py", "sgd_matched_valloss.py"):
        r = subprocess.run([sys.executable, os.path.join(ROOT, script), "--help"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and f"python {script} --preset tiny" in r.stdout
