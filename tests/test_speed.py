"""The fast paths compute what the plain ones do: prefetched batches, fused micro-batches, the chunked loss,
the batched evaluation; bench.py runs on a CPU."""
import copy
import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from dataset import Prefetcher, get_batch, load_corpus, make_eval_sets
from model import GPT, Evaluator, evaluate, losses, make_optimizer, training_loss, trunk_keys
import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def setup(tmp_path_factory, micro_cfg):
    cfg = micro_cfg(tmp_path_factory.mktemp("speed"), grad_accum=2, p_probe=0.5)
    return cfg, load_corpus(cfg)


def test_prefetched_batches_are_get_batch_bitwise(setup):
    cfg, corpus = setup
    feed = Prefetcher(corpus, cfg, torch.device("cpu"), start=3, stop=9, depth=2)  # a resume at step 3
    try:
        for step in range(3, 9):
            got = feed.get(step)
            want = [get_batch(corpus, cfg, step, m) for m in range(cfg.grad_accum)]
            assert len(got) == cfg.grad_accum
            for g, w in zip(got, want):
                assert all(a.dtype == b.dtype and torch.equal(a, b) for a, b in zip(g, w)), step
        with pytest.raises(RuntimeError):
            feed.get(3)  # out of order
    finally:
        feed.close()


def _batches(cfg, corpus, step=0):
    return [get_batch(corpus, cfg, step, m) for m in range(cfg.grad_accum)]


def test_fused_step_equals_accumulated(setup):
    cfg, corpus = setup
    # a step whose micro-batches hold different numbers of probe rows: a global mean over the stacked rows
    # would differ from the mean of the micro-batch means
    step = next(s for s in range(50) if len({int((b[2] >= 0).sum()) for b in _batches(cfg, corpus, s)}) > 1)
    torch.manual_seed(0)
    base = GPT.from_config(cfg, corpus.vocab_size)
    out = {}
    for fuse in (True, False):
        # plain SGD with lr 1 and no decay: the update is minus the clipped gradient
        c = dataclasses.replace(cfg, fuse_micro=fuse, optimizer="sgd", lr=1.0, weight_decay=0.0, momentum=0.0)
        model = copy.deepcopy(base)
        opt = make_optimizer(model, c, torch.device("cpu"))
        sums, norm = train.train_step(model, opt, _batches(c, corpus, step), c, 1.0, 2.0)
        out[fuse] = sums, norm, {k: v - base.state_dict()[k] for k, v in model.state_dict().items()}
    (s1, n1, d1), (s0, n0, d0) = out[True], out[False]
    assert torch.allclose(s1, s0, rtol=1e-6) and torch.allclose(n1, n0, rtol=1e-5)
    assert max((d1[k] - d0[k]).abs().max().item() for k in d1) < 1e-6
    assert max(v.abs().max().item() for v in d1.values()) > 1e-3  # the step moved the weights


def test_chunked_loss_equals_plain(setup):
    cfg, corpus = setup
    torch.manual_seed(1)
    model = GPT.from_config(cfg, corpus.vocab_size)
    x, y, pos = (torch.cat(t) for t in zip(*_batches(cfg, corpus, 5)))
    assert (pos >= 0).any()
    res = {}
    for chunks in (0, 3):  # 3 does not divide the tokens: a short last chunk
        model.zero_grad()
        loss, lm, probe = losses(model, x, y, pos, 2.0, n_micro=2, ce_chunks=chunks)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        res[chunks] = torch.stack([loss, lm, probe]).detach(), grads
    (v0, g0), (v3, g3) = res[0], res[3]
    assert torch.allclose(v0, v3, rtol=1e-6)
    assert all(torch.allclose(g0[k], g3[k], rtol=1e-4, atol=1e-7) for k in g0)
    assert torch.allclose(v0[0], v0[1] + 2.0 * v0[2])


def test_probe_rows_loss_and_split_gradients_equal_plain(setup):
    """L_probe from the answer rows alone (probe_rows) has the plain value and gradient, and the LM and probe
    gradients of one forward (a tuple loss_fn) equal those of two separate forwards."""
    import geometry
    import runs
    cfg, corpus = setup
    torch.manual_seed(3)
    model = GPT.from_config(cfg, corpus.vocab_size)
    batches = _batches(cfg, corpus, 5)
    x, y, pos = (torch.cat(t) for t in zip(*batches))
    assert (pos >= 0).any() and (pos < 0).any()  # rows with and without a probe
    res = {}
    for rows in (False, True):
        model.zero_grad()
        vals = losses(model, x, y, pos, 2.0, n_micro=2, probe_rows=rows)
        vals[2].backward()
        res[rows] = torch.stack(vals).detach(), {n: p.grad.clone() for n, p in model.named_parameters()}
    (v0, g0), (v1, g1) = res[False], res[True]
    assert torch.allclose(v0, v1, rtol=1e-6) and v0[2] > 0
    assert all(torch.allclose(g0[k], g1[k], rtol=1e-4, atol=1e-8) for k in g0)
    keys = trunk_keys(cfg.n_layer)
    cpu = torch.device("cpu")
    G_lm, G_pr = geometry.batch_gradients(model, batches, runs.loss_fn((1, 2), 2.0, cpu, True), keys)
    for G, which in ((G_lm, 1), (G_pr, 2)):
        want = geometry.batch_gradients(model, batches, runs.loss_fn(which, 2.0, cpu, True), keys)
        assert G.shape == want.shape == (len(batches), sum(dict(model.named_parameters())[k].numel() for k in keys))
        # float32 rounding: one forward for both losses sums in another order (seen: 4e-8 on a max of 0.13)
        scale = float(want.abs().max())
        assert torch.allclose(G, want, rtol=1e-4, atol=1e-6 * scale) and scale > 0


def test_evaluator_equals_direct_computation(setup):
    cfg, corpus = setup
    torch.manual_seed(2)
    model = GPT.from_config(cfg, corpus.vocab_size)
    ev = make_eval_sets(corpus, cfg)
    got = Evaluator(ev, torch.device("cpu"), corpus.vocab_size, rows=5)(model)  # padded last batches
    with torch.no_grad():
        want = dict(val_loss=F.cross_entropy(model(ev.lm_x).flatten(0, 1), ev.lm_y.flatten()).item())
        for name, (xs, pos, ans) in ev.probe.items():  # whole sequences, one batch
            want[name] = (model(xs, positions=pos).argmax(-1) == ans).float().mean().item()
    assert got.keys() == want.keys() and got["val_loss"] == pytest.approx(want["val_loss"], rel=1e-5)
    assert all(got[k] == pytest.approx(want[k]) for k in ("p_in", "p_ood"))
    again = evaluate(model, ev, torch.device("cpu"), batch_size=7)
    assert all(again[k] == pytest.approx(want[k], rel=1e-5) for k in want)


def test_bench_runs_on_cpu(tmp_path, micro, argv):
    over = micro(tmp_path, grad_accum=2)
    over.pop("out_dir"), over.pop("progress")
    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, os.path.join(ROOT, "bench.py"), *argv(over), "--vocab", "corpus",
                        "--bench-steps", "2", "--warmup-steps", "0", "--stretch", "--stretch-steps", "3",
                        "--stretch-stories", "200", "--profile", "--variant", "fuse_micro=false",
                        "--json", str(out)],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    rec = json.load(open(out))
    res = rec["results"]
    assert [r["vocab"] for r in rec["rows"]] == [res["rows"][0]["vocab"]]  # the earlier schema: project rows
    assert [row["kind"] for row in res["rows"]] == ["project", "project fuse_micro=false", "reference"]
    assert res["rows"][0]["top_kernels"] and res["stretch"]["steps"] == 3
    assert "speedup" in r.stdout and "stretch" in r.stdout


def test_corpus_generated_beside_compilation(tmp_path, micro_cfg, monkeypatch):
    from types import SimpleNamespace
    cfg = micro_cfg(tmp_path, compile=True, cache_dir=str(tmp_path / "fresh"))
    calls = []
    monkeypatch.setattr(train, "warm_compile", lambda c, vocab, device: calls.append(vocab))
    got = train.load_corpus_while_compiling(cfg, SimpleNamespace(type="cuda"), wait=0.0)
    want = load_corpus(dataclasses.replace(cfg, cache_dir=str(tmp_path / "direct")))  # built in this process
    assert (got.train == want.train).all() and (got.val == want.val).all() and len(got.train) > 1000
    assert calls in ([], [want.vocab_size])  # warm-up only while the child was still generating


def test_fused_loss_path_computes_the_plain_loss(setup, monkeypatch):
    """losses(fused_ce=...) with the library's kernels replaced by plain_head_ce (what they compute):
    the per-token cross-entropy gets the LM and probe weights of each micro-batch, so values and
    gradients are the plain path's (the library itself: model.fused_ce_works, on a GPU)."""
    import model
    cfg, corpus = setup
    torch.manual_seed(2)
    net = GPT.from_config(cfg, corpus.vocab_size)
    x, y, pos = (torch.cat(t) for t in zip(*_batches(cfg, corpus, 5)))
    calls = []

    def plain(h, w, t, library):
        calls.append((library, tuple(w.shape)))
        return model.plain_head_ce(h, w, t)
    monkeypatch.setattr(model, "fused_head_ce", plain)
    res = {}
    for lib in (None, "cce"):
        net.zero_grad()
        vals = losses(net, x, y, pos, 2.0, n_micro=2, fused_ce=lib)
        vals[0].backward()
        grads = {n: p.grad.clone() for n, p in net.named_parameters()}
        res[lib] = torch.stack(vals).detach(), grads
    assert calls == [("cce", (corpus.vocab_size, cfg.d_model))]  # the real vocabulary's rows only
    (v0, g0), (v1, g1) = res[None], res["cce"]
    assert torch.allclose(v0, v1, rtol=1e-6) and v0[2] > 0  # a probe loss: its weights are used
    assert max(((g0[k] - g1[k]).norm() / g0[k].norm()).item() for k in g0) < 1e-5


def test_fused_loss_switch(monkeypatch, micro_cfg, tmp_path):
    import model
    from config import diff_configs, make_config
    from config import UsageError
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert all(model.fused_ce_library(c, cpu) is None for c in ("auto", "cce", "liger", "off"))
    have, works = {"cce": True, "liger": True}, {"cce": "", "liger": ""}
    monkeypatch.setattr(model, "installed", lambda lib: have[lib])
    monkeypatch.setattr(model, "fused_ce_works", lambda lib, index: works[lib])
    pick = lambda c: model.fused_ce_library(c, gpu)  # noqa: E731
    assert (pick("auto"), pick("cce"), pick("liger"), pick("off")) == ("cce", "cce", "liger", None)
    works["cce"] = "RuntimeError: no kernel image"
    assert pick("auto") is None  # auto falls back to plain PyTorch
    with pytest.raises(ValueError, match="fused_ce=cce: RuntimeError: no kernel image"):
        pick("cce")
    have["liger"] = False
    with pytest.raises(ValueError, match="not installed"):
        pick("liger")
    # training_loss: the plain loss on a CPU whatever the config says; the library's on CUDA
    cfg = micro_cfg(tmp_path, fused_ce="liger")
    assert training_loss(cfg, cpu) is losses
    with pytest.raises(UsageError, match="fused_ce=liger: not installed"):
        training_loss(cfg, gpu)
    works["cce"] = ""
    fwd = training_loss(dataclasses.replace(cfg, fused_ce="auto"), gpu)  # tiny: compile off
    assert fwd.func is losses and fwd.keywords == {"fused_ce": "cce"}
    # a run may resume with another setting (same numbers up to rounding); a bad one is one error
    assert diff_configs(make_config(fused_ce="off"), make_config()) == []
    with pytest.raises(UsageError, match="fused_ce must be"):
        make_config(fused_ce="triton")
