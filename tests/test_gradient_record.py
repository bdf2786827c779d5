"""The gradient record: every number of the gradient and Fisher analyses is a function of it and the
trajectory record.

Known answers on a real 2-block run with a planted switching pair: (1) every number of
backbone_gradient_analysis.json and backbone_fisher_analysis.json computed from the records equals
the one computed the direct way (the replayed batches' float32 gradients against the directions
formed in R^D: geometry.backbone, the snapshots' difference, geometry.random_directions), and both
analyses share one replay. Both ways end in the same statistics of a Gram and projections
(geometry.fisher_stats, backbone_gradient_analysis.alignment; tested against explicit gradients in
test_geometry.py and test_analysis_grad.py): what differs, and is tested here, is where the Gram and
the projections come from; (2) --record with --gradient-record gives the JSON that --run gives; (3)
a stale record is made again; (4) bad input is one line and exit code 2.

Tolerance of (1), fixed before any comparison was run: relative 1e-5 of the larger of the two
numbers or, where a number sits in a list, of the largest number of that list, and of 1 for
cosines. Both ways take the same float32 gradients and accumulate in float64, but the direct way
forms the combined gradient g_LM + lambda g_probe in float32 and rounds its directions (v_b, v_sw,
the random ones) to float32: relative errors of about 2^-24 = 6e-8 per coordinate. 1e-5 leaves
a factor of 100 for the ratios (alpha, lambda_1 / trace) and the top eigenvector, whose error grows
as 1 / (its gap); a number that is zero up to rounding (a mean of signed projections that cancel)
is compared at its list's scale.
"""
import json
import math
import os

import pytest
import torch

import backbone_fisher_analysis as bfa
import backbone_gradient_analysis as bga
import config
import geometry as geo
import runs
import train
from model import flatten

CPU = torch.device("cpu")
REL = 1e-5
UNIT = ("cos", "b_normalized", "b_pos_frac", "u1_overlap", "lambda1_frac")  # bounded by 1 in size


@pytest.fixture(scope="module")
def run(tmp_path_factory, micro_cfg):
    """A real 40-step run of 2 blocks: snapshots every 10 steps, lambda changes at step 20, two
    micro-batches a step; p_ood planted with one switching pair (peak 20, trough 30)."""
    cfg = micro_cfg(tmp_path_factory.mktemp("gradrec"), steps=40, eval_every=10, snapshot_every=10,
                    lambda_step=20, n_layer=2, ctx=64, ood_gap_min=30, ood_gap_max=40, batch_size=4,
                    grad_accum=2, name="gr")
    assert train.train(cfg)["status"] == "complete"
    path = os.path.join(cfg.run_dir, "metrics.jsonl")
    rows = [json.loads(line) for line in open(path)]
    with open(path, "w") as f:
        for r, p in zip(rows, [0.0, 0.05, 0.5, 0.1, 0.2]):
            f.write(json.dumps(dict(r, p_ood=p)) + "\n")
    return cfg


def close(a, b, path="", scale=0.0):
    """a equals b: numbers to REL of max(|a|, |b|, scale) (the module's docstring), the rest
    exactly."""
    if isinstance(a, dict):
        assert set(a) == set(b), (path, set(a) ^ set(b))
        for k in a:
            close(a[k], b[k], f"{path}.{k}", 1.0 if any(u in k for u in UNIT) else scale)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        nums = [abs(x) for x in list(a) + list(b) if isinstance(x, float) and math.isfinite(x)]
        for i, (x, y) in enumerate(zip(a, b)):
            close(x, y, f"{path}[{i}]", max(nums + [scale]))
    elif isinstance(a, float) and not isinstance(b, bool) and isinstance(b, (float, int)):
        assert abs(a - b) <= REL * max(abs(a), abs(b), scale), (path, a, b)
    else:
        assert a == b, (path, a, b)


def analysed(cfg, K=4, anchor=0):
    """Both analyses from the run folder (the Fisher on every group) at the paper preset's numbers
    of mini-batches (16 and 32; the tiny run's defaults are half), the Fisher first (the record
    it makes serves the gradient analysis); their JSONs."""
    common = ["--run", cfg.run_dir, "--device", "cpu", "--anchor", str(anchor)]
    bfa.main(common + ["--group", "all", "--K", str(K), "--batches", "32"])
    bga.main(common + ["--batches", "16"])
    return [json.load(open(os.path.join(cfg.run_dir, "analysis", f"{n}.json")))
            for n in ("backbone_gradient_analysis", "backbone_fisher_analysis")]


def direct(cfg, steps, n_grad, n_fisher, K, anchor):
    """The numbers of both analyses the direct way: per step the replayed float32 gradients, the
    combined one formed in float32, directions formed in R^D; per loss and group the gradient
    analysis's statistics and geometry.fisher_summary."""
    traj, _, corpus, _ = runs.load_run(cfg.run_dir, anchor, device="cpu")
    groups = list(traj.groups)
    slices = geo.group_slices(traj)
    _, pcs = geo.backbone(traj, groups, k=2)
    dirs = {g: {"v_b": pcs[g][0], "v_PC2": pcs[g][1]} for g in groups}
    keys = traj.groups["trunk"]
    a, b = traj.load(20, keys), traj.load(30, keys)  # the planted pair
    for g in groups:
        d = {k: a[k] - b[k] for k in traj.groups[g]}
        dirs[g]["v_sw"] = {k: v / math.sqrt(geo.dot(d, d)) for k, v in d.items()}
    rand = {g: geo.random_directions(dirs[g]["v_b"], K, [dirs[g]["v_b"]], 0) for g in groups}
    grad, fisher = {}, {}
    for t in steps:
        lam = cfg.lambda_at(t)
        model = runs.load_model(traj, cfg, corpus, t)
        batches, used = runs.replay_batches(corpus, cfg, t, n_fisher, cfg.batch_size)
        G_lm, G_pr = geo.batch_gradients(model, batches, runs.loss_fn((1, 2), lam, CPU, True), keys)
        mats = dict(lm=G_lm, probe=G_pr, combined=G_lm + lam * G_pr)  # float32, as the old script
        grad[t] = {name: {} for name in mats}
        for name, G in mats.items():
            for g in groups:
                cols = G[:n_grad, slices[g]].double()
                vb = flatten(dirs[g]["v_b"], traj.groups[g]).double()
                grad[t][name][g] = bga.alignment(cols @ vb, (cols * cols).sum(1))
        excluded = geo.replays_switch(range(used[0][0], used[-1][0] + 1), 20, 30)
        fisher[t] = dict(excluded=excluded, groups={}, counts=[
            runs.probe_answers(model, x, CPU, True) for x in batches])
        for g in groups:
            named = {k: v for k, v in dirs[g].items() if not (excluded and k == "v_sw")}
            s = {}
            for name, G in mats.items():
                s[name] = geo.fisher_summary(G[:, slices[g]], traj.groups[g], named, rand=rand[g])
                s[name]["q_random_mean"] = sum(s[name]["q_random"]) / K
                for k in ("q", "q_median", "u1_overlap") if excluded else ():
                    s[name][k]["v_sw"] = None
            fisher[t]["groups"][g] = dict(s["combined"], q_lm=s["lm"]["q"], q_probe=s["probe"]["q"],
                                          lm=s["lm"], probe=s["probe"])
        fisher[t]["cos_vb"] = {g: geo.cos(dirs[g]["v_sw"], dirs[g]["v_b"]) for g in groups}
    return grad, fisher


@pytest.mark.parametrize("anchor", [0, 10])
def test_every_number_from_the_records_equals_the_direct_one(run, anchor, monkeypatch):
    cfg = run
    made, real = [], runs.make_gradient_record
    monkeypatch.setattr(runs, "make_gradient_record",
                        lambda *a, **k: made.append(a[4]) or real(*a, **k))  # a[4]: its steps
    if os.path.exists(runs.gradient_record_path(cfg.run_dir)):
        os.remove(runs.gradient_record_path(cfg.run_dir))
    out_g, out_f = analysed(cfg, anchor=anchor)
    steps = [0, 10, 20, 30, 40][anchor // 10:]
    assert made == [steps] and out_g["steps"] == out_f["steps"] == steps  # one replay for both
    grec = runs.load_gradient_record(runs.gradient_record_path(cfg.run_dir))
    assert grec.M == 32 and grec.K == 10 and grec.meta["batch_size"] == cfg.batch_size
    assert out_g["batches"]["n"] == 16 and out_f["batches"]["n"] == 32
    assert out_f["switching"]["peak_step"] == 20 and out_f["switching"]["trough_step"] == 30
    # 32 mini-batches of 4 replay 16 steps: from steps 10 and 20 they reach into [20, 30)
    excluded = {0: False, 10: True, 20: True, 30: False, 40: False}
    assert [r["v_sw_excluded"] for r in out_f["table"]] == [excluded[t] for t in steps]

    grad, fisher = direct(cfg, out_g["steps"], 16, 32, 4, anchor)
    for name, by_group in out_g["results"].items():
        for g, col in by_group.items():
            for key, ref in grad[out_g["steps"][0]][name][g].items():
                want = [grad[t][name][g][key] for t in out_g["steps"]]
                close(col[key], want, f"{name}.{g}.{key}")
            close(col["B"], torch.tensor(col["b"]).cumsum(0).tolist(), f"{name}.{g}.B")
    for row in out_f["table"]:
        want = fisher[row["step"]]
        assert row["v_sw_excluded"] == want["excluded"]
        assert row["per_batch"] == dict(n_probe=[c[0] for c in want["counts"]],
                                        n_wrong=[c[1] for c in want["counts"]])
        close(row["groups"], want["groups"], f"table[{row['step']}]")
    close(out_f["switching"]["cos_vb"], fisher[anchor]["cos_vb"], "cos_vb", 1.0)


def test_tiny_runs_replay_half_the_mini_batches():
    """Left out, --batches is the analysis's paper number, halved for the tiny preset; the record
    holds at least the Fisher's."""
    tiny, paper = config.make_config(preset="tiny").preset, config.make_config().preset
    assert config.default_batches(paper, 32) == 32 and config.default_batches(paper, 16) == 16
    assert config.default_batches(tiny, 32) == 16 and config.default_batches(tiny, 16) == 8


def test_the_record_files_give_the_run_folders_json(run, tmp_path):
    cfg = run
    a = analysed(cfg, K=3)
    files = ["--record", runs.record_path(cfg.run_dir), "--gradient-record",
             runs.gradient_record_path(cfg.run_dir)]
    bga.main(files + ["--out", str(tmp_path / "g.json"), "--batches", "16"])
    bfa.main(files + ["--out", str(tmp_path / "f.json"), "--group", "all", "--K", "3",
                      "--batches", "32"])
    for x, path in zip(a, ("g.json", "f.json")):
        y = json.load(open(tmp_path / path))
        for k in set(x) | set(y):
            if k not in ("provenance", "run_state"):
                assert x.get(k) == y.get(k), k


def test_a_stale_gradient_record_is_made_again(run):
    cfg = run
    path = runs.gradient_record_path(cfg.run_dir)
    bga.main(["--run", cfg.run_dir, "--device", "cpu", "--batches", "2", "--batch-size", "2",
              "--every", "2"])
    grec = runs.load_gradient_record(path)
    # at least the Fisher's default mini-batches (16 for this tiny-preset run): one record for both
    assert grec.meta["batch_size"] == 2 and grec.grad_steps == [0, 20, 40] and grec.M == 16
    # more steps than it holds: made again with its old steps as well
    bfa.main(["--run", cfg.run_dir, "--device", "cpu", "--batch-size", "2", "--steps", "10"])
    assert runs.load_gradient_record(path).grad_steps == [0, 10, 20, 40]
    # made from other snapshots (a retrained run): made again
    grec = runs.load_gradient_record(path)
    grec.meta["snapshots"] = grec.meta["snapshots"][:-1]
    runs.save_gradient_record(path, grec)
    bga.main(["--run", cfg.run_dir, "--device", "cpu", "--batches", "2", "--batch-size", "2",
              "--every", "2"])
    again = runs.load_gradient_record(path)
    assert again.meta["snapshots"] == runs.snapshot_fingerprint(cfg.run_dir)
    assert again.grad_steps == [0, 20, 40]


def test_bad_record_input_is_one_line(run, tmp_path, usage_error):
    cfg = run
    bfa.main(["--run", cfg.run_dir, "--device", "cpu", "--steps", "10,20", "--K", "2"])
    rec, grec = runs.record_path(cfg.run_dir), runs.gradient_record_path(cfg.run_dir)
    files = ["--record", rec, "--gradient-record", grec, "--out", str(tmp_path / "x.json")]
    usage_error(bga.main, ["--record", rec], match="--record and --gradient-record go together")
    usage_error(bfa.main, ["--record", rec, "--gradient-record", rec],
                match="is not a gradient record")
    usage_error(bfa.main, files + ["--steps", "10", "--batches", "64"],
                match="16 mini-batches per step, 64 asked")
    usage_error(bfa.main, files + ["--steps", "10", "--K", "11"],
                match="10 random draws per step, 11 asked")
    usage_error(bfa.main, files + ["--steps", "30"], match="--steps step 30 has no gradients")
    # --every 1 asks for every snapshot
    usage_error(bga.main, files, match="step 0 has no gradients")
    usage_error(bfa.main, files + ["--steps", "10", "--batch-size", "3"],
                match="--batch-size 4, not 3")
    usage_error(bfa.main, files + ["--steps", "10", "--seed", "1"], match="--seed 0, not 1")
    r = runs.load_record(rec)  # a trajectory record of other rows: its last snapshot left out
    short = geo.Record(r.steps[:-1], r.shapes, {k: g[:-1, :-1] for k, g in r.grams.items()},
                       r.groups, r.config, r.metrics, r.meta)
    runs.save_record(str(tmp_path / "short.safetensors"), short)
    usage_error(bfa.main, ["--record", str(tmp_path / "short.safetensors"), "--gradient-record",
                           grec, "--steps", "10"], match="was not made on the rows")
