"""Training foundation: model size, deterministic batches, reproducible and resumable runs, bad input."""
import json
import os
import pickle
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from config import UsageError, make_config  # noqa: E402
from dataset import get_batch, load_corpus, make_eval_sets  # noqa: E402
from model import GPT, GPT2_VOCAB, trunk_keys  # noqa: E402
import runs  # noqa: E402
import train  # noqa: E402

MICRO = dict(preset="tiny", n_train_stories=300, n_val_stories=60, n_layer=2, d_model=32, n_head=2, d_ff=64,
             steps=12, warmup=4, lambda_step=6, eval_every=4, snapshot_every=4, state_every=4, batch_size=4,
             grad_accum=2, n_eval_probe=16, n_eval_lm=8, progress=False)


def micro_cfg(tmp, **kw):
    return make_config(**{**MICRO, "out_dir": str(tmp / "runs"), "cache_dir": str(tmp / "cache"), **kw})


def test_paper_model_size():
    m = GPT(GPT2_VOCAB)  # paper preset defaults
    pad_rows = m.wte.weight.shape[0] - GPT2_VOCAB
    assert pad_rows == 47  # 50,257 padded to 50,304
    assert sum(p.numel() for p in m.parameters()) == 51_045_888 + pad_rows * 512
    assert sum(m.get_parameter(k).numel() for k in trunk_keys(8)) == 25_165_824
    assert sum(m.get_parameter(k).numel() for k in trunk_keys(8, block=3)) == 3_145_728


def test_batch_is_a_function_of_seed_step_micro(tmp_path):
    cfg = micro_cfg(tmp_path, p_probe=0.5)
    corpus = load_corpus(cfg)
    a, b = get_batch(corpus, cfg, 7, 1), get_batch(corpus, cfg, 7, 1)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    c = get_batch(corpus, cfg, 8, 1)
    assert not torch.equal(a[0], c[0])
    x, y, pos = a
    assert x.shape == y.shape == (cfg.batch_size, cfg.ctx) and torch.equal(x[:, 1:], y[:, :-1])
    # every probe answer is a codeword that also appears earlier in the sequence (the key sentence)
    codes = set(corpus.codeword_ids.tolist())
    rows = (pos >= 0).nonzero().flatten().tolist()
    assert rows, "p_probe=0.5 should give probe rows"
    for r in rows:
        ans = int(y[r, pos[r]])
        assert ans in codes and ans in x[r, : pos[r]].tolist()
    # eval sets depend only on the seed, and OOD gaps are longer than in-distribution ones
    e1, e2 = make_eval_sets(corpus, cfg), make_eval_sets(corpus, cfg)
    assert torch.equal(e1.probe["p_ood"][0], e2.probe["p_ood"][0])
    assert e1.probe["p_ood"][1].float().mean() > e1.probe["p_in"][1].float().mean() + 20


def _snap(run, step):
    from safetensors.torch import load_file
    return load_file(os.path.join(run, "snapshots", f"step_{step:06d}.safetensors"))


def _equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_run_is_bitwise_reproducible_and_resumable(tmp_path):
    c1, c2, c3 = (micro_cfg(tmp_path, name=n) for n in ("a", "b", "c"))
    assert train.train(c1)["status"] == "complete"
    train.train(c2)
    # c3 is "killed" after 7 updates (last state at step 4), then the same command resumes it
    assert train.train(c3, stop_after=7)["status"] == "running"
    assert not os.path.exists(os.path.join(c3.run_dir, "snapshots", "step_000012.safetensors"))
    assert train.train(c3)["status"] == "complete"
    for step in c1.snapshot_steps():
        s1 = _snap(c1.run_dir, step)
        assert _equal(s1, _snap(c2.run_dir, step)) and _equal(s1, _snap(c3.run_dir, step)), step
    st = [torch.load(os.path.join(c.run_dir, "state_latest.pt"), weights_only=True) for c in (c1, c3)]
    assert _equal(st[0]["model"], st[1]["model"])
    m = [[json.loads(l) for l in open(os.path.join(c.run_dir, "metrics.jsonl"))] for c in (c1, c3)]
    strip = lambda rows: [{k: v for k, v in r.items() if k != "tok_per_s"} for r in rows]
    assert strip(m[0]) == strip(m[1]) and [r["step"] for r in m[0]] == [0, 4, 8, 12]
    assert m[0][-1]["val_loss"] < m[0][0]["val_loss"]
    # a finished run is left alone
    assert train.train(c1)["status"] == "complete"


def test_sgdw_decay_is_applied_after_the_step(tmp_path):
    cfg = micro_cfg(tmp_path, optimizer="sgd", momentum=0.0, wd_mode="decoupled", weight_decay=0.5, lr=0.1)
    model = GPT(50, 1, 8, 2, 16, 8)
    opt = train.make_optimizer(model, cfg, torch.device("cpu"))
    w0 = model.blocks[0].mlp.fc.weight.detach().clone()
    ln0 = model.ln_f.weight.detach().clone()
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    train.optimizer_step(opt, cfg, lr=0.1)
    expected = (w0 - 0.1 * 1.0) * (1 - 0.1 * 0.5)  # gradient step, then theta <- (1 - lr*wd) theta
    assert torch.allclose(model.blocks[0].mlp.fc.weight, expected)
    assert torch.allclose(model.ln_f.weight, ln0 - 0.1)  # LayerNorm is not decayed


def test_lr_schedule():
    cfg = make_config(steps=10_000)
    assert train.lr_at(cfg, 0) == pytest.approx(1e-3 / 1500)
    assert train.lr_at(cfg, 1499) == pytest.approx(1e-3)
    assert train.lr_at(cfg, 9999) == pytest.approx(1e-4)  # 10% floor
    assert cfg.lambda_at(3999) == 2.0 and cfg.lambda_at(4000) == 4.0
    assert len(cfg.snapshot_steps()) == 51


def _cli(args, cwd, env=None):
    e = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), *args], cwd=cwd, capture_output=True, text=True, env=e, timeout=300)


def _one_line_exit2(r):
    assert r.returncode == 2, r.stderr
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in r.stderr, r.stderr


def _micro_args(tmp, **kw):
    d = {**MICRO, "out_dir": str(tmp / "runs"), "cache_dir": str(tmp / "cache"), **kw}
    return [a for k, v in d.items() for a in (f"--{k}", str(v))]


def test_bad_config_inputs(tmp_path):
    _one_line_exit2(_cli(["--no_such_field", "1"], tmp_path))
    _one_line_exit2(_cli(["--steps", "1.5"], tmp_path))
    _one_line_exit2(_cli(["--preset", "huge"], tmp_path))
    _one_line_exit2(_cli(_micro_args(tmp_path, data=str(tmp_path / "missing.jsonl")), tmp_path))
    assert not os.path.exists(tmp_path / "runs")


def test_tinystories_offline_is_one_line(tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TIKTOKEN_CACHE_DIR": str(tmp_path / "tk"),
           "HF_HOME": str(tmp_path / "hf"), "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"}
    _one_line_exit2(_cli(_micro_args(tmp_path, data="tinystories"), tmp_path, env))


def test_corrupt_state_and_foreign_run_folder(tmp_path):
    cfg = micro_cfg(tmp_path, steps=4, name="r")
    train.train(cfg)
    run = cfg.run_dir
    before = {f: open(os.path.join(run, f), "rb").read() for f in ("config.json", "metrics.jsonl")}
    # another config on the same folder
    r = _cli(_micro_args(tmp_path, steps=4, name="r", lr=1e-2), tmp_path)
    _one_line_exit2(r)
    assert "lr" in r.stderr
    # a corrupt state file (and the run not finished, so it would be loaded)
    os.remove(os.path.join(run, "status.json"))
    with open(os.path.join(run, "state_latest.pt"), "wb") as f:
        f.write(b"not a checkpoint")
    _one_line_exit2(_cli(_micro_args(tmp_path, steps=4, name="r"), tmp_path))
    assert {f: open(os.path.join(run, f), "rb").read() for f in before} == before
    assert open(os.path.join(run, "state_latest.pt"), "rb").read() == b"not a checkpoint"


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))  # would create the marker file when unpickled


def test_malicious_state_pickle_executes_nothing(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "state_latest.pt"
    torch.save({"model": _Evil(str(marker)), "optimizer": {}, "step": 1}, path)
    with pytest.raises(UsageError):
        runs.load_state(str(path))
    assert not marker.exists()
    with open(path, "wb") as f:  # a raw pickle stream, not a torch zip file
        pickle.dump(_Evil(str(marker)), f)
    with pytest.raises(UsageError):
        runs.load_state(str(path))
    assert not marker.exists()
