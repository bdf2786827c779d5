"""Training foundation: model size, deterministic batches, reproducible and resumable runs, bad input."""
import os
import pickle

import pytest
import torch

import runs
import train
from config import UsageError, lr_at, make_config
from dataset import get_batch, load_corpus, make_eval_sets
from model import GPT, GPT2_VOCAB, make_optimizer, optimizer_step, trunk_keys

# 12 steps of a 2-block model, 2 micro-batches a step; evals, snapshots and resume points every 4 steps
RUN = dict(n_train_stories=300, n_val_stories=60, n_layer=2, steps=12, warmup=4, lambda_step=6, eval_every=4,
           snapshot_every=4, state_every=4, grad_accum=2)


@pytest.fixture
def micro_run(micro_cfg, tmp_path):
    return lambda **kw: micro_cfg(tmp_path, **{**RUN, **kw})


def test_paper_model_size():
    m = GPT(GPT2_VOCAB)  # paper preset defaults
    pad_rows = m.wte.weight.shape[0] - GPT2_VOCAB
    assert pad_rows == 47  # 50,257 padded to 50,304
    assert sum(p.numel() for p in m.parameters()) == 51_045_888 + pad_rows * 512
    assert sum(m.get_parameter(k).numel() for k in trunk_keys(8)) == 25_165_824
    assert sum(m.get_parameter(k).numel() for k in trunk_keys(8, block=3)) == 3_145_728


@pytest.fixture(scope="module")
def corpus_cfg(micro_cfg, tmp_path_factory):
    cfg = micro_cfg(tmp_path_factory.mktemp("batches"), **RUN, p_probe=0.5)
    return load_corpus(cfg), cfg


def test_batch_is_a_function_of_seed_step_micro(corpus_cfg):
    corpus, cfg = corpus_cfg
    a, b, c = get_batch(corpus, cfg, 7, 1), get_batch(corpus, cfg, 7, 1), get_batch(corpus, cfg, 8, 1)
    assert all(torch.equal(u, v) for u, v in zip(a, b)) and not torch.equal(a[0], c[0])
    x, y, _ = a
    assert x.shape == y.shape == (cfg.batch_size, cfg.ctx) and torch.equal(x[:, 1:], y[:, :-1])


def test_probe_answer_is_a_codeword_stated_earlier(corpus_cfg):
    corpus, cfg = corpus_cfg
    x, y, pos = get_batch(corpus, cfg, 7, 1)
    codes = set(corpus.codeword_ids.tolist())
    rows = (pos >= 0).nonzero().flatten().tolist()
    assert rows, "p_probe=0.5 should give probe rows"
    for r in rows:
        ans = int(y[r, pos[r]])
        assert ans in codes and ans in x[r, : pos[r]].tolist()


def test_eval_sets_depend_only_on_the_seed_and_ood_gaps_are_longer(corpus_cfg):
    corpus, cfg = corpus_cfg
    e1, e2 = make_eval_sets(corpus, cfg), make_eval_sets(corpus, cfg)
    assert torch.equal(e1.probe["p_ood"][0], e2.probe["p_ood"][0])
    assert e1.probe["p_ood"][1].float().mean() > e1.probe["p_in"][1].float().mean() + 20


def _equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def three_runs(micro_cfg, tmp_path_factory):
    """Runs a and b trained straight through; c "killed" after 7 updates (last state at step 4), resumed."""
    tmp = tmp_path_factory.mktemp("three")
    c1, c2, c3 = (micro_cfg(tmp, **RUN, name=n) for n in ("a", "b", "c"))
    assert train.train(c1)["status"] == "complete" and train.train(c2)["status"] == "complete"
    assert train.train(c3, stop_after=7)["status"] == "running"
    assert not os.path.exists(runs.snapshot_path(c3.run_dir, 12))
    assert train.train(c3)["status"] == "complete"
    return c1, c2, c3


def test_run_is_bitwise_reproducible(three_runs, snapshots):
    c1, c2, _ = three_runs
    assert all(_equal(*(snapshots.read(c.run_dir, s) for c in (c1, c2))) for s in c1.snapshot_steps())


def test_resumed_run_is_bitwise_the_uninterrupted_one(three_runs, snapshots):
    c1, _, c3 = three_runs
    assert all(_equal(*(snapshots.read(c.run_dir, s) for c in (c1, c3))) for s in c1.snapshot_steps())
    st = [torch.load(os.path.join(c.run_dir, "state_latest.pt"), weights_only=True) for c in (c1, c3)]
    assert _equal(st[0]["model"], st[1]["model"])


def test_resumed_run_has_the_same_metrics(three_runs):
    c1, _, c3 = three_runs
    strip = lambda rows: [{k: v for k, v in r.items() if k != "tok_per_s"} for r in rows]  # noqa: E731
    m1, m3 = runs.read_metrics(c1.run_dir), runs.read_metrics(c3.run_dir)
    assert strip(m1) == strip(m3) and [r["step"] for r in m1] == [0, 4, 8, 12]


def test_validation_loss_falls(three_runs):
    m = runs.read_metrics(three_runs[0].run_dir)
    assert m[-1]["val_loss"] < m[0]["val_loss"]


def test_finished_run_is_left_alone(three_runs):
    c1 = three_runs[0]
    before = os.path.getmtime(os.path.join(c1.run_dir, "status.json"))
    assert train.train(c1)["status"] == "complete"
    assert os.path.getmtime(os.path.join(c1.run_dir, "status.json")) == before


def test_run_records_the_corpus_identity(three_runs):
    from dataset import corpus_identity
    c1 = three_runs[0]
    assert runs.read_record(c1.run_dir)["corpus_identity"] == corpus_identity(c1)


def test_sgdw_decay_is_applied_after_the_step(micro_run):
    cfg = micro_run(optimizer="sgd", momentum=0.0, wd_mode="decoupled", weight_decay=0.5, lr=0.1)
    model = GPT(50, 1, 8, 2, 16, 8)
    opt = make_optimizer(model, cfg, torch.device("cpu"))
    w0 = model.blocks[0].mlp.fc.weight.detach().clone()
    ln0 = model.ln_f.weight.detach().clone()
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    optimizer_step(opt, cfg, lr=0.1)
    expected = (w0 - 0.1 * 1.0) * (1 - 0.1 * 0.5)  # gradient step, then theta <- (1 - lr*wd) theta
    assert torch.allclose(model.blocks[0].mlp.fc.weight, expected)
    assert torch.allclose(model.ln_f.weight, ln0 - 0.1)  # LayerNorm is not decayed


@pytest.mark.parametrize("clip", [0.0, 1e-4])
def test_train_step_clips_only_when_asked(micro_run, clip):
    """Plain SGD: the update is -lr g, scaled to norm lr * clip when clipping; grad_clip 0 is no clipping."""
    cfg = micro_run(optimizer="sgd", momentum=0.0, weight_decay=0.0, grad_clip=clip)
    torch.manual_seed(0)
    model = GPT(50, 1, 8, 2, 16, 8)
    opt = make_optimizer(model, cfg, torch.device("cpu"))
    batches = [(torch.randint(0, 50, (2, 8)), torch.randint(0, 50, (2, 8)), torch.tensor([3, -1]))] * 2
    before = torch.cat([p.detach().reshape(-1).clone() for p in model.parameters()])
    sums, norm = train.train_step(model, opt, batches, cfg, lr=0.5, lam=2.0)
    step = torch.cat([p.detach().reshape(-1) for p in model.parameters()]) - before
    want = 0.5 * (min(clip, float(norm)) if clip else float(norm))
    assert float(step.norm()) == pytest.approx(want, rel=1e-4) and sums.shape == (3,)


def test_bench_times_the_training_step_itself():
    import bench
    assert bench.train_step is train.train_step


def test_lr_schedule():
    cfg = make_config(steps=10_000)
    assert lr_at(cfg, 0) == pytest.approx(1e-3 / 1500)
    assert lr_at(cfg, 1499) == pytest.approx(1e-3)
    assert lr_at(cfg, 9999) == pytest.approx(1e-4)  # 10% floor
    assert cfg.lambda_at(3999) == 2.0 and cfg.lambda_at(4000) == 4.0
    assert len(cfg.snapshot_steps()) == 51


def test_tinystories_offline_is_one_line(micro, argv, tmp_path, cli_error):
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TIKTOKEN_CACHE_DIR": str(tmp_path / "tk"),
           "HF_HOME": str(tmp_path / "hf"), "https_proxy": "http://127.0.0.1:9",
           "http_proxy": "http://127.0.0.1:9"}
    cli_error("train.py", argv(micro(tmp_path, **RUN, data="tinystories")), env=dict(os.environ, **env))


@pytest.fixture
def short_run(micro, tmp_path):
    """A finished 4-step run "r" and the command-line overrides that made it."""
    overrides = micro(tmp_path, **{**RUN, "steps": 4, "name": "r"})
    cfg = make_config(**overrides)
    train.train(cfg)
    files = {f: open(os.path.join(cfg.run_dir, f), "rb").read() for f in ("config.json", "metrics.jsonl")}
    return cfg, overrides, files


def test_another_config_on_a_run_folder_is_one_line(short_run, argv, cli_error):
    cfg, overrides, files = short_run
    assert "lr" in cli_error("train.py", argv({**overrides, "lr": 1e-2}))
    assert {f: open(os.path.join(cfg.run_dir, f), "rb").read() for f in files} == files


def test_corrupt_state_is_one_line_and_left_alone(short_run, argv, cli_error):
    cfg, overrides, files = short_run
    os.remove(os.path.join(cfg.run_dir, "status.json"))  # not finished, so the state would be loaded
    with open(os.path.join(cfg.run_dir, "state_latest.pt"), "wb") as f:
        f.write(b"not a checkpoint")
    cli_error("train.py", argv(overrides), match="corrupt")
    assert {f: open(os.path.join(cfg.run_dir, f), "rb").read() for f in files} == files
    assert open(os.path.join(cfg.run_dir, "state_latest.pt"), "rb").read() == b"not a checkpoint"


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
