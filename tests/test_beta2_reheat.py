"""beta2 sweep and reheating: divergence handling, backbone projection against a dense computation,
peak/first-crossing extraction, bad input (CPU, well under a minute)."""
import json
import os

import pytest
import torch

import beta2_analysis
import reheat
import train
from config import make_config
from model import flatten, trunk_keys



# ----------------------------------------------------------------------------- beta2
def test_diverging_run_is_recorded_and_the_sweep_goes_on(tmp_path, capsys, micro, argv):
    # beta2 = 0: Adam divides by the current |g|, so rows of tokens absent from a batch (g = 0, m != 0)
    # take steps of lr * m / eps and the loss explodes within a few steps; beta2 = 0.95 trains normally.
    sweep = micro(tmp_path, steps=20, eval_every=4, snapshot_every=4)
    out = tmp_path / "exp"
    beta2_analysis.main(argv(sweep) + ["--betas", "0.0,0.95", "--window", "4:12", "--null_draws", "20", "--out", str(out)])
    rec = json.load(open(out / "beta2_seed42.json"))
    runs = {r["beta2"]: r for r in rec["runs"]}
    assert [r["beta2"] for r in rec["table"]] == [0.95, 0.0]
    bad, good = runs[0.0], runs[0.95]
    assert bad["status"] == "diverged" and bad["step"] < 20
    snaps = sorted(os.listdir(os.path.join(bad["run"], "snapshots")))
    assert snaps[0] == "step_000000.safetensors" and len(snaps) >= 2  # it keeps what it has
    trunk = bad["geometry"]["primary"]["groups"]["trunk"]
    assert bad["geometry"]["last_step"] > 0 and 0 < trunk["pc1"] <= 1 and trunk["drift"] > 0
    assert good["status"] == "complete" and good["step"] == 20  # trained after the diverged one
    prim = good["geometry"]["primary"]
    assert prim["row_steps"] == [4, 8, 12, 16, 20] and prim["groups"]["trunk"]["k95"] >= 1
    assert set(prim["groups"]) == {"block0", "trunk"} and len(prim["groups"]["trunk"]["update_C"]) == 5
    assert good["geometry"]["window"]["anchor"] == 4 and good["geometry"]["window"]["end"] == 12
    row = {r["beta2"]: r for r in rec["table"]}
    assert row[0.0]["final_val"] is None and row[0.0]["pc1"] is not None and row[0.95]["final_val"] > 0
    assert (out / "beta2_seed42.csv").exists() and (out / "beta2_seed42.png").exists()
    # a subset reuses the finished runs (nothing retrained) and the table keeps the other finished run
    mtime = os.path.getmtime(os.path.join(good["run"], "status.json"))
    capsys.readouterr()
    beta2_analysis.main(argv(sweep) + ["--betas", "0.95", "--window", "4:12", "--null_draws", "20", "--out", str(out)])
    assert "already complete" in capsys.readouterr().out
    assert os.path.getmtime(os.path.join(good["run"], "status.json")) == mtime
    assert [r["beta2"] for r in json.load(open(out / "beta2_seed42.json"))["table"]] == [0.95, 0.0]


def walk(write_snapshot, run, steps, sd, seed, scale=0.01):
    """Snapshots of a drift along one random direction plus noise, from `sd`; returns the last state."""
    g = torch.Generator().manual_seed(seed)
    drift = {k: torch.randn(v.shape, generator=g) for k, v in sd.items()}
    for i, s in enumerate(steps):
        if i:
            sd = {k: v + scale * (drift[k] * (1 + i % 3) + torch.randn(v.shape, generator=g)) for k, v in sd.items()}
        write_snapshot(run, s, sd)
    return sd


def test_geometry_uses_the_finite_snapshots(tmp_path, snapshots, tiny_model):
    run = str(tmp_path / "run")
    sd = walk(snapshots.write, run, range(0, 100, 10), tiny_model(), 0)
    sd = {k: torch.full_like(v, float("nan")) for k, v in sd.items()}
    snapshots.write(run, 100, sd)
    g = beta2_analysis.run_geometry(run, 20, (20, 60), "cpu", 10)
    assert g["last_step"] == 90
    assert g["primary"]["row_steps"] == [20, 40, 60, 80, 90]  # the 20-step grid plus the last usable snapshot
    assert g["window"]["row_steps"] == [30, 40, 50, 60]


# ----------------------------------------------------------------------------- reheat
def test_projection_on_the_original_backbone_matches_dense(tmp_path, snapshots, tiny_model):
    src, hot = str(tmp_path / "src"), str(tmp_path / "hot")
    _flat = lambda run, step, keys: flatten(snapshots.read(run, step), keys).double()  # noqa: E731
    sd = walk(snapshots.write, src, range(0, 220, 20), tiny_model(), 1)
    walk(snapshots.write, hot, range(0, 60, 5), sd, 2, scale=0.03)  # reheat: starts at the source's last weights
    snapshots.write(hot, 60, {k: torch.full_like(v, float("inf")) for k, v in sd.items()})  # not usable: skipped
    out = reheat.backbone_projection(src, {"hot": hot}, "cpu")
    got = out["runs"]["hot"]
    assert got["steps"] == list(range(0, 60, 5))
    groups = {"block0": trunk_keys(2, 0), "block1": trunk_keys(2, 1), "trunk": trunk_keys(2)}
    for g, keys in groups.items():
        x0 = _flat(src, 0, keys)
        X = torch.stack([_flat(src, s, keys) - x0 for s in range(20, 220, 20)])
        v = torch.linalg.svd(X, full_matrices=False).Vh[0]
        v = v * torch.sign(X[-1] @ v)  # a(T) > 0 on the original run
        Y = torch.stack([_flat(hot, s, keys) - x0 for s in got["steps"]])
        a = Y @ v
        r = (Y.pow(2).sum(1) - a**2).clamp(min=0).sqrt()
        assert torch.allclose(torch.tensor(got["groups"][g]["a"], dtype=torch.float64), a, rtol=1e-8, atol=1e-9), g
        assert torch.allclose(torch.tensor(got["groups"][g]["r"], dtype=torch.float64), r, rtol=1e-6, atol=1e-7), g
        assert torch.allclose(torch.tensor(out["source"]["groups"][g]["a"], dtype=torch.float64), X @ v, rtol=1e-8, atol=1e-9)
        # the reheat run starts where the original ended
        assert got["groups"][g]["a"][0] == pytest.approx(out["source"]["groups"][g]["a"][-1], rel=1e-9)


def test_peak_and_first_crossing():
    steps = list(range(0, 1100, 100))
    p = [0.16, 0.2, 0.35, 0.59, 0.60, 0.72, 0.78, 0.78, 0.5, 0.3, 0.28]
    s = reheat.reheat_summary(steps, p, 0.60)
    assert s == dict(start=0.16, peak=0.78, peak_step=600, first_at_threshold=400, final=0.28, final_step=1000)
    s = reheat.reheat_summary(steps, [0.2, 0.4, 0.578, 0.5, 0.42] + [0.42] * 6, 0.60)
    assert s["peak"] == 0.578 and s["peak_step"] == 200 and s["first_at_threshold"] is None and s["final"] == 0.42
    assert reheat.lr_tag(6e-4) == "6e-4" and reheat.lr_tag(1e-3) == "1e-3" and reheat.lr_tag(2.5e-4) == "2.5e-4"


def test_reheat_end_to_end(tmp_path, micro):
    cfg = make_config(**micro(tmp_path, steps=12, eval_every=4, snapshot_every=4))
    assert train.train(cfg)["status"] == "complete"
    out = tmp_path / "exp"
    reheat.main(["--run", cfg.run_dir, "--lrs", "1e-3,3e-4", "--steps", "6", "--warmup", "2", "--eval_every", "2",
                 "--snapshot_every", "2", "--out", str(out)])
    rec = json.load(open(out / "reheat.json"))
    assert [r["name"] for r in rec["runs"]] == ["tiny_seed42_reheat_lr1e-3", "tiny_seed42_reheat_lr3e-4"]
    for r in rec["runs"]:
        rc = json.load(open(os.path.join(r["run"], "config.json")))["config"]
        assert rc["init_from"].endswith("step_000012.safetensors") and rc["lambda_step"] == 0
        assert rc["lambda_probe"] == rc["lambda_probe_late"] == cfg.lambda_probe_late  # the doubled weight throughout
        assert [m["step"] for m in r["metrics"]] == [0, 2, 4, 6] and r["summary"]["final_step"] == 6
        proj = rec["projection"]["runs"][r["name"]]
        assert proj["steps"] == [0, 2, 4, 6]
        src_a = rec["projection"]["source"]["groups"]["trunk"]["a"][-1]
        assert proj["groups"]["trunk"]["a"][0] == pytest.approx(src_a, rel=1e-6)
    # the start is the source's final model: same p_ood at reheat step 0
    last = [json.loads(l) for l in open(os.path.join(cfg.run_dir, "metrics.jsonl"))][-1]
    assert rec["table"][0]["start_p_ood"] == last["p_ood"]
    assert (out / "reheat.png").exists() and (out / "reheat.csv").exists()
    # one learning rate again: reused, not retrained, and the table keeps the other finished run
    mtime = os.path.getmtime(os.path.join(rec["runs"][1]["run"], "status.json"))
    reheat.main(["--run", cfg.run_dir, "--lrs", "3e-4", "--steps", "6", "--warmup", "2", "--eval_every", "2",
                 "--snapshot_every", "2", "--out", str(out)])
    assert os.path.getmtime(os.path.join(rec["runs"][1]["run"], "status.json")) == mtime
    assert [r["lr"] for r in json.load(open(out / "reheat.json"))["table"]] == [1e-3, 3e-4]
