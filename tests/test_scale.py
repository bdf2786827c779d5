"""The size option (Config.size): the 3x and 8x models' shapes and trunk sizes, a run of a larger
size that resumes bitwise; the scale sweep's learning-rate rule and script."""
import os

import pytest
import torch

import scale
import train
from config import UsageError, make_config, trunk_params
from model import GPT, trunk_keys

MODEL = ("n_layer", "d_model", "n_head", "d_ff")


def shape(cfg):
    return tuple(getattr(cfg, k) for k in MODEL)


def test_sizes_of_the_paper_preset_are_gpt2_shaped():
    assert shape(make_config()) == shape(make_config(size="1x")) == (8, 512, 16, 2048)
    assert shape(make_config(size="3x")) == (12, 768, 12, 3072)
    assert shape(make_config(size="8x")) == (16, 1024, 16, 4096)
    for size in ("3x", "8x"):
        c = make_config(size=size)
        assert c.d_model // c.n_head == 64  # GPT-2's head size
        skip = MODEL + ("size",)
        rest = lambda c: {k: v for k, v in c.to_dict().items() if k not in skip}  # noqa: E731
        assert rest(c) == rest(make_config())  # everything else is the paper recipe


def test_sizes_of_the_tiny_preset_scale_its_model_the_same_way():
    assert shape(make_config(preset="tiny")) == (2, 64, 4, 256)
    assert shape(make_config(preset="tiny", size="3x")) == (3, 96, 3, 384)
    assert shape(make_config(preset="tiny", size="8x")) == (4, 128, 4, 512)
    # an explicit field wins over the size, as over the preset
    assert shape(make_config(preset="tiny", size="3x", n_layer=1)) == (1, 96, 3, 384)
    with pytest.raises(UsageError, match="unknown size '2x'"):
        make_config(size="2x")


@pytest.mark.parametrize("size,trunk",
                         [("1x", 25_165_824), ("3x", 84_934_656), ("8x", 201_326_592)])
def test_trunk_parameter_counts(size, trunk):
    cfg = make_config(size=size)
    # trunk = n_layer * (4 d^2 + 2 d d_ff): 8 * 12 * 512^2, 12 * 12 * 768^2, 16 * 12 * 1024^2
    assert trunk_params(cfg) == trunk == cfg.n_layer * 12 * cfg.d_model**2
    with torch.device("meta"):  # the shapes without the memory
        m = GPT.from_config(cfg, 3789)
    assert sum(m.get_parameter(k).numel() for k in trunk_keys(cfg.n_layer)) == trunk
    b = m.blocks[0]
    d, f = cfg.d_model, cfg.d_ff
    assert (b.attn.qkv.weight.shape, b.attn.proj.weight.shape) == ((3 * d, d), (d, d))
    assert (b.mlp.fc.weight.shape, b.mlp.proj.weight.shape) == ((f, d), (d, f))
    assert b.attn.n_head == cfg.n_head
    assert len(m.blocks) == cfg.n_layer and m.wte.weight.shape == (3840, d)


def test_run_names_carry_the_size():
    assert make_config().run_dir == os.path.join("runs", "seed42")
    assert make_config(size="3x", seed=271).run_dir == os.path.join("runs", "3x_seed271")
    assert make_config(preset="tiny", size="8x").run_dir == os.path.join("runs", "tiny_8x_seed42")


def test_a_larger_size_trains_and_resumes_bitwise(micro, tmp_path, snapshots):
    # the micro run's corpus and batch, the tiny preset's 3x model (3 blocks of width 96, 3 heads)
    kw = {k: v for k, v in micro(tmp_path).items() if k not in MODEL}
    kw.update(size="3x", steps=8, warmup=2, lambda_step=4, eval_every=4, snapshot_every=4,
              state_every=4)
    whole, cut = make_config(**kw, name="whole"), make_config(**kw, name="cut")
    assert shape(whole) == (3, 96, 3, 384)
    assert train.train(whole)["status"] == "complete"
    assert train.train(cut, stop_after=6)["status"] == "running"  # killed after 6: resumes at 4
    assert train.train(cut)["status"] == "complete"
    for s in whole.snapshot_steps():
        a, b = snapshots.read(whole.run_dir, s), snapshots.read(cut.run_dir, s)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), s
    assert a["blocks.2.mlp.fc.weight"].shape == (384, 96)


def test_sweep_takes_the_largest_stable_learning_rate():
    ok = dict(status="stopped_early", step=2000)
    assert scale.SWEEP_LRS == (1e-3, 6e-4, 3e-4)
    assert scale.pick_lr({1e-3: ok}) == 1e-3  # the paper's, when it trains stably
    assert scale.pick_lr({1e-3: dict(status="diverged", step=1800), 6e-4: ok}) == 6e-4
    bad = dict(status="diverged", step=400)
    assert scale.pick_lr({1e-3: bad, 6e-4: bad, 3e-4: ok}) == 3e-4
    assert scale.pick_lr({1e-3: bad, 6e-4: bad, 3e-4: bad}) is None
    assert scale.pick_lr({1e-3: None}) is None  # a sweep run not finished decides nothing


def test_scale_script_sweeps_then_trains(micro, tmp_path, monkeypatch, argv, usage_error):
    import json
    import experiments as ex
    monkeypatch.setitem(ex.STEP_SCALE, "tiny", 0.004)  # the sweep step 2,000 -> 8 (an eval step)
    kw = {k: v for k, v in micro(tmp_path).items() if k not in MODEL}
    kw.update(size="3x", steps=16, warmup=4, lambda_step=8, eval_every=4, snapshot_every=4,
              state_every=4)
    scale.main(argv(kw) + ["--sweep-only"])
    out = os.path.join(kw["out_dir"], "tiny_scale", "scale_sweep_3x_seed42.json")
    rec = json.load(open(out))["results"]
    assert [r["lr"] for r in rec["rows"]] == [1e-3] and rec["lr"] == 1e-3 and "run_dir" not in rec
    st = json.load(open(os.path.join(rec["rows"][0]["run_dir"], "status.json")))
    planned = "sweep run: stopped at step 8 as planned"
    assert (st["status"], st["step"], st["reason"]) == ("stopped_early", 8, planned)
    scale.main(argv(kw))
    rec = json.load(open(out))["results"]
    assert rec["run_dir"].endswith("tiny_3x_seed42")
    assert rec["decay_timescale_steps"] == 1 / (1e-3 * 0.5)
    cfg = json.load(open(os.path.join(rec["run_dir"], "config.json")))["config"]
    st = json.load(open(os.path.join(rec["run_dir"], "status.json")))
    got = (cfg["lr"], cfg["size"], cfg["n_layer"], st["status"], st["step"])
    assert got == (1e-3, "3x", 3, "complete", 16)
    usage_error(scale.main, argv(kw) + ["--lr", "3e-4"], match="--lr is fixed")
