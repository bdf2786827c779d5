"""finetune_geometry.py: the statistics on planted updates and gradients with known answers (projection
identity, subspace similarity, energy share, intruder dimensions, Eckart-Young ceiling, lr choice), peft
LoRA updates and gradients, the task, the study on a micro base run and on a tiny local GPT-2 (CPU)."""
import copy
import json
import math
import os

import numpy as np
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import experiments as ex
import finetune_geometry as fg
import train
from model import GPT, Evaluator, losses

pytest.importorskip("peft")
MICRO = dict(n_layer=2, steps=4, warmup=2, lambda_step=2, eval_every=4, snapshot_every=4, state_every=4)
STUDY = ["--preset", "tiny", "--steps", "6", "--batch_size", "4", "--warmup", "2", "--align_every", "3",
         "--eval_every", "3", "--n_dirs", "4", "--progress", "false", "--shift_words", "8",
         "--shift_pool", "50", "--n_eval_probe", "16", "--n_eval_lm", "8"]


@pytest.fixture(scope="module")
def base_run(tmp_path_factory, micro_cfg):
    cfg = micro_cfg(tmp_path_factory.mktemp("ft"), name="micro", **MICRO)
    train.train(cfg)
    return cfg.run_dir


# ----------------------------------------------------------------------------- math
def test_random_level_closed_forms():
    assert fg.random_level(1) == pytest.approx(1.0)
    assert fg.random_level(2) == pytest.approx(2 / math.pi)      # E|cos theta|, theta uniform on the circle
    assert fg.random_level(3) == pytest.approx(0.5)              # E|u_z| on the 2-sphere (Archimedes)
    D = 10**6
    assert fg.random_level(D) == pytest.approx(math.sqrt(2 / (math.pi * D)), rel=1e-5)


def test_projection_statistics_on_planted_gradients():
    """Gradients planted so that their projections on the group's unit directions are known numbers a_tj
    (least-norm solution plus noise orthogonal to the directions): the statistics must return them."""
    rng = np.random.default_rng(0)
    sizes, k, T = [30, 20, 25], 3, 50
    Z = [rng.standard_normal((k, n)) for n in sizes]
    znorm2 = np.stack([(z ** 2).sum(1) for z in Z])
    idx = [0, 1]                                              # a group of the first two matrices
    U = np.concatenate([Z[i] for i in idx], 1) / np.sqrt(znorm2[idx].sum(0))[:, None]
    a = rng.standard_normal((T, k)) * [1.0, 2.0, 0.5] + [0.3, 0.0, -1.0]
    sq, dots, norms = np.zeros((T, 3)), np.zeros((T, 3, k)), np.zeros(T)
    for t in range(T):
        g = U.T @ np.linalg.solve(U @ U.T, a[t])
        n = rng.standard_normal(U.shape[1])
        n -= U.T @ np.linalg.solve(U @ U.T, U @ n)           # orthogonal to every direction
        g += n * (t % 5) / np.linalg.norm(n)
        norms[t] = np.linalg.norm(g)
        parts = np.split(g, np.cumsum([sizes[i] for i in idx])[:-1])
        for i, p in zip(idx, parts):
            sq[t, i], dots[t, i] = (p ** 2).sum(), Z[i] @ p
        sq[t, 2], dots[t, 2] = 7.0, rng.standard_normal(k)    # a matrix outside the group changes nothing
    got_norms, P = fg.group_series(sq, dots, znorm2, idx)
    np.testing.assert_allclose(P, a, atol=1e-10)
    np.testing.assert_allclose(got_norms, norms, rtol=1e-10)
    s = fg.projection_stats(P, got_norms, 50)
    assert s["proj_abs_mean"] == pytest.approx(np.abs(a).mean())
    assert s["proj_var"] == pytest.approx(a.var(0, ddof=1).mean())
    assert s["grad_norm_var"] == pytest.approx(norms.var(ddof=1))


def test_projections_of_isotropic_gradients_sit_at_the_random_level():
    gen = torch.Generator().manual_seed(1)
    D, T, k = 2000, 400, 4
    g = torch.randn(T, D, generator=gen, dtype=torch.float64)
    g *= (3.0 / g.norm(dim=1))[:, None]                      # norm 3 at every step
    z = torch.randn(k, D, generator=gen, dtype=torch.float64)
    P = (g @ (z / z.norm(dim=1, keepdim=True)).T).numpy()
    s = fg.projection_stats(P, g.norm(dim=1).numpy(), D)
    assert s["cos_abs_mean"] == pytest.approx(fg.random_level(D), rel=0.05)
    assert s["proj_abs_mean"] == pytest.approx(s["proj_abs_mean_null"], rel=0.05)


def test_raw_projections_measure_the_gradient_norm():
    """E|<g, u>| = ||g|| sqrt(2/(pi D)): two gradient streams of norms 3 and 1 in random directions give a
    ratio of mean |projection| of 3 and normalised projections at the random level for both."""
    gen = torch.Generator().manual_seed(2)
    D, T, k = 3000, 300, 4
    z = torch.randn(k, D, generator=gen, dtype=torch.float64)
    u = (z / z.norm(dim=1, keepdim=True)).T
    stats = []
    for norm in (3.0, 1.0):
        g = torch.randn(T, D, generator=gen, dtype=torch.float64)
        g *= (norm / g.norm(dim=1))[:, None]
        stats.append(fg.projection_stats((g @ u).numpy(), g.norm(dim=1).numpy(), D))
    assert stats[0]["proj_abs_mean"] / stats[1]["proj_abs_mean"] == pytest.approx(3.0, rel=0.06)
    for s in stats:
        assert s["cos_over_null"] == pytest.approx(1.0, rel=0.06)
        assert s["proj_var"] == pytest.approx(s["grad_sq_mean"] / D, rel=0.15)   # E<g, u>^2 = ||g||^2 / D


def _spectrum_matrix(d_out, d_in, seed, decay=0.7):
    """A full-rank matrix with a known, decaying spectrum (distinct singular values)."""
    gen = torch.Generator().manual_seed(seed)
    U = torch.linalg.qr(torch.randn(d_out, d_out, generator=gen, dtype=torch.float64))[0]
    V = torch.linalg.qr(torch.randn(d_in, d_in, generator=gen, dtype=torch.float64))[0]
    n = min(d_out, d_in)
    s = decay ** torch.arange(n, dtype=torch.float64)
    return U[:, :n] @ torch.diag(s) @ V[:, :n].T, s


def test_subspace_similarity_planted_and_random():
    full, _ = _spectrum_matrix(40, 30, 0)
    r = 4
    Uf, Vf, _ = fg.top_subspaces(full, r)
    lora = -3.0 * Uf @ Uf.T @ full @ Vf @ Vf.T               # the top-r part of the full update, rescaled
    Ul, Vl, _ = fg.top_subspaces(lora, 8)                    # rank 4: cut to 4, not padded to 8
    assert Ul.shape[1] == Vl.shape[1] == r
    assert fg.subspace_similarity(Ul, Uf) == pytest.approx(1.0)
    assert fg.subspace_similarity(Vl, Vf) == pytest.approx(1.0)
    assert fg.principal_cosines(Ul, Uf) == pytest.approx([1.0] * r)
    Uo = torch.linalg.svd(full, full_matrices=False)[0][:, r:2 * r]   # orthogonal to the top-r
    assert fg.subspace_similarity(Uo, Uf) == pytest.approx(0.0, abs=1e-12)
    gen = torch.Generator().manual_seed(1)
    sims = [fg.subspace_similarity(*(fg.top_subspaces(torch.randn(40, r, generator=gen, dtype=torch.float64)
                                                      @ torch.randn(r, 30, generator=gen,
                                                                    dtype=torch.float64), r)[0]
                                     for _ in range(2))) for _ in range(400)]
    assert np.mean(sims) == pytest.approx(fg.subspace_random_level(r, r, 40), rel=0.06)   # r / d = 0.1
    assert fg.subspace_random_level(2, 6, 40) == pytest.approx(6 / 40)


def test_energy_share_planted_and_random():
    full, _ = _spectrum_matrix(50, 36, 3)
    k = 5
    U, V, _ = fg.top_subspaces(full, k)
    gen = torch.Generator().manual_seed(4)
    inside = U @ torch.randn(k, k, generator=gen, dtype=torch.float64) @ V.T   # in both top-k spaces
    left, right = fg.energy_share(inside, U, V)
    assert float(left) == pytest.approx(float(inside.square().sum()))
    assert float(right) == pytest.approx(float(inside.square().sum()))
    col_only = U @ torch.randn(k, 36, generator=gen, dtype=torch.float64)       # column space only
    left, right = fg.energy_share(col_only, U, V)
    assert float(left) / float(col_only.square().sum()) == pytest.approx(1.0)
    assert float(right) / float(col_only.square().sum()) < 0.5
    shares = []
    for _ in range(300):
        G = torch.randn(50, 36, generator=gen, dtype=torch.float64)
        shares.append([float(x) / float(G.square().sum()) for x in fg.energy_share(G, U, V)])
    np.testing.assert_allclose(np.mean(shares, 0), [k / 50, k / 36], rtol=0.05)


def test_intruder_dimensions_known_answers():
    gen = torch.Generator().manual_seed(5)
    W0 = torch.randn(40, 30, generator=gen, dtype=torch.float64)
    n, best = fg.intruders(W0, W0.clone(), 10, 0.5)
    assert n == 0 and best == pytest.approx([1.0] * 10)      # dW = 0: every top vector is one of W0's
    D = torch.diag(torch.linspace(2.0, 1.0, 30, dtype=torch.float64))
    u = torch.zeros(30, dtype=torch.float64)
    u[10:19] = 1 / 3                                          # |cos| 1/3 with every singular vector e_j of D
    spike = 100 * torch.outer(u, torch.eye(30, dtype=torch.float64)[0])
    assert fg.intruders(D, D + spike, 3, 0.5)[0] == 1       # the new top direction is an intruder
    along = 100 * torch.outer(torch.eye(30, dtype=torch.float64)[12], torch.eye(30, dtype=torch.float64)[0])
    assert fg.intruders(D, D + along, 3, 0.5)[0] == 0       # a spike along e_12 is not


def test_rank_ceiling_equals_the_svd_energy():
    M, s = _spectrum_matrix(20, 12, 6, decay=0.8)
    sv2 = [torch.linalg.svdvals(M).square().numpy()]
    for r in (1, 3, 12, 20):
        U, S, Vh = torch.linalg.svd(M, full_matrices=False)
        Mr = U[:, :r] @ torch.diag(S[:r]) @ Vh[:r]           # best rank-r approximation
        want = float(s[:r].square().sum().sqrt() / s.square().sum().sqrt())
        cos = float((M * Mr).sum() / (M.norm() * Mr.norm()))
        assert fg.rank_ceiling(sv2, r, [0]) == pytest.approx(want)
        assert cos == pytest.approx(want)
    assert fg.rank_ceiling(sv2, 12, [0]) == pytest.approx(1.0)


def test_lr_choice_and_target_step():
    evals = [dict(step=0, val_loss=3.0), dict(step=10, val_loss=2.2), dict(step=20, val_loss=1.9)]
    assert fg.first_at_or_below(evals, 2.2) == 10 and fg.first_at_or_below(evals, 1.0) is None
    row = lambda lr, s, v, div=None: dict(lr=lr, steps_to_target=s, val_loss=v, diverged_at=div)  # noqa: E731
    assert fg.pick_lr([row(1e-4, 40, 1.5), row(1e-3, 20, 1.8), row(1e-2, None, 9.0, 3)])[0] == 1e-3
    assert fg.pick_lr([row(1e-4, 20, 1.5), row(1e-3, 20, 1.4)])[0] == 1e-3       # tie: lower val loss
    lr, rule = fg.pick_lr([row(1e-4, None, 2.5), row(1e-3, None, 2.1)])
    assert lr == 1e-3 and "not reached" in rule
    with pytest.raises(fg.UsageError):
        fg.pick_lr([row(1e-2, None, float("nan"), 2)])


# ----------------------------------------------------------------------------- peft LoRA
def _tiny_models():
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(0)
    ours = GPT(50, n_layer=2, d_model=16, n_head=2, d_ff=32, ctx=8)
    hf = fg.HFLM(GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=8, n_embd=16, n_layer=2, n_head=2,
                                                       bos_token_id=0, eos_token_id=0)))
    names_ours = [f"blocks.{l}.{n}" for l in range(2) for n in fg.OURS]
    names_hf = [f"hf.transformer.h.{l}.{n}" for l in range(2) for n in fg.HF]
    return [(ours, names_ours, False), (hf, names_hf, True)]


@pytest.mark.parametrize("which", [0, 1], ids=["ours", "hf_conv1d"])
def test_lora_update_equals_change_of_merged_weights(which):
    pytest.importorskip("transformers")
    model, names, fan = _tiny_models()[which]
    W0 = {n: fg._weight(model.get_submodule(n)).detach().clone() for n in names}
    pm = fg.add_lora(model, names, 3, 6.0, fan, seed=0)
    with torch.no_grad():
        for n in names:  # B = 0 at the start; give it values so the update is not trivially zero
            A, B, s, _ = fg._lora(model.get_submodule(n))
            B.normal_()
            assert s == 2.0
    deltas = {n: fg.lora_delta(model.get_submodule(n)).detach().clone() for n in names}
    merged = pm.merge_and_unload()
    for n in names:
        assert deltas[n].shape == W0[n].shape and deltas[n].abs().max() > 0
        torch.testing.assert_close(merged.get_submodule(n).weight - W0[n], deltas[n], rtol=1e-5, atol=1e-6)


def test_lora_effective_gradient_closed_form():
    """With W = W0 + s B A: dL/dB = s G A^T and dL/dA = s B^T G (G = dL/dW), so the effective gradient
    s (dL/dB A + B dL/dA) = s^2 (G A^T A + B B^T G); G from an unmodified model carrying the merged
    weights."""
    model, names, _ = _tiny_models()[0]
    twin = copy.deepcopy(model)
    fg.add_lora(model, names, 3, 3.0, False, seed=0)
    with torch.no_grad():
        for n in names:
            fg._lora(model.get_submodule(n))[1].normal_(0, 0.1)
            twin.get_submodule(n).weight += fg.lora_delta(model.get_submodule(n))
    x = torch.randint(0, 50, (2, 8), generator=torch.Generator().manual_seed(0))
    model(x).square().mean().backward()
    twin(x).square().mean().backward()
    for n in names:
        layer = model.get_submodule(n)
        A, B, s, _ = fg._lora(layer)
        G = twin.get_submodule(n).weight.grad
        want = s * s * (G @ A.T @ A + B @ B.T @ G)
        torch.testing.assert_close(fg.lora_grad(layer), want, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("rank", [5, 1])
def test_lora_aligns_with_full_fine_tuning_on_a_convex_toy(rank):
    """Loss 0.5 ||W - W*||_F^2 (strictly convex, isotropic). Full gradient descent goes straight to W*.
    LoRA's gradient flow on (B, A) decreases the same loss; at full rank (r = 5 = min(5, 6)) it can reach
    any W, so with a small enough lr both runs end at the unique minimiser and their cumulative updates
    coincide: cos -> 1. At rank 1 it ends at the best rank-1 approximation of W* - W0 (Eckart-Young), so
    cos -> sigma_1 / ||sigma||, which is the rank-1 ceiling: the measure is not 1 by construction."""
    class Toy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(6, 5, bias=False)

        def forward(self):
            return self.fc(torch.eye(6))  # = W^T

    torch.manual_seed(0)
    toy, W_star = Toy(), torch.randn(5, 6)
    W0 = toy.fc.weight.detach().clone()

    def fit(m, params, steps):
        opt = torch.optim.SGD(params, lr=0.2)
        for _ in range(steps):
            opt.zero_grad()
            (0.5 * (m() - W_star.T).square().sum()).backward()
            opt.step()
    full = copy.deepcopy(toy)
    fit(full, list(full.parameters()), 200)
    dW = (full.fc.weight - W0).detach()
    lora = copy.deepcopy(toy)
    fg.add_lora(lora, ["fc"], rank, float(rank), False, seed=0)
    fit(lora, [p for p in lora.parameters() if p.requires_grad], 600)
    d = fg.lora_delta(lora.fc).detach()
    cos = float(fg.group_cos(np.array([float((d * dW).sum())]), np.array([float(dW.square().sum())]),
                             np.array([float(d.square().sum())]), [0]))
    ceiling = fg.rank_ceiling([torch.linalg.svdvals(dW).square().double().numpy()], rank, [0])
    assert cos == pytest.approx(ceiling, abs=1e-4)
    assert (cos > 0.9999) if rank == 5 else (cos < 0.95)




# ----------------------------------------------------------------------------- the task and the study on a micro base run
def test_task_is_a_cipher_with_new_codewords(base_run):
    ft = fg.ft_config(preset="tiny", steps=3, batch_size=8, p_task=1.0, shift_words=8, shift_pool=50)
    base = fg.our_base(base_run, ft, torch.device("cpu"))
    task = fg.make_task(base.corpus, base.cfg.seed, ft)
    words, c = task.words, task.cipher
    assert len(set(words)) == 8 and sorted(c[words].tolist()) == sorted(words)   # a permutation of them
    assert all(c[w] != w for w in words)                                          # with no fixed point
    others = torch.ones(len(c), dtype=torch.bool)
    others[words] = False
    assert (c[others] == torch.arange(len(c))[others]).all()                     # identity elsewhere
    itos = base.corpus.tok.itos
    assert not set(task.codewords) & (set(base.corpus.codeword_ids.tolist()) | set(words))
    assert all(itos[i].isalpha() for i in task.codewords + words)                 # ordinary words
    assert len(task.codewords) == len(base.corpus.codeword_ids)
    x, y, pos = fg.task_batches(base, task, ft, 0, torch.device("cpu"))
    from dataset import get_batch
    x0, y0, p0 = get_batch(task.corpus, base.cfg, 0, 0)
    assert torch.equal(x[0], c[x0]) and torch.equal(pos[0], p0)
    assert (pos >= base.cfg.ood_gap_min).all()                # every row a probe, its answer past a long gap
    ans = y[torch.arange(3)[:, None], torch.arange(8)[None], pos]
    assert set(ans.flatten().tolist()) <= set(task.codewords)  # the answers are the new codewords
    x1 = fg.task_batches(base, task, ft, 1, torch.device("cpu"))[0]
    assert not torch.equal(x[0], x1[0])                       # order 1: other batches


def test_run_records_true_gradients_and_energy(base_run):
    ft = fg.ft_config(preset="tiny", steps=2, batch_size=4, n_dirs=3, shift_words=8, shift_pool=50,
                      n_eval_probe=8, n_eval_lm=4)
    dev = torch.device("cpu")
    base = fg.our_base(base_run, ft, dev)
    task = fg.make_task(base.corpus, base.cfg.seed, ft)
    plain, ev = fg.task_eval_sets(base, task)
    import train
    evs = (Evaluator(ev, dev, base.model.vocab_size), Evaluator(ev, dev, base.model.vocab_size))
    x, y, pos = data = fg.task_batches(base, task, ft, 0, dev)
    Z, _ = fg.random_dirs(base, 3, 0, dev)
    energy = [fg.top_subspaces(torch.randn(*base.shape(m), dtype=torch.float64), 2)[:2]
              for m in range(len(base.names))]
    energy = [(U.float(), V.float()) for U, V in energy]
    run = fg.finetune(base, data, evs, Z, ft, "full", 1e-3, energy=energy, keep="end", target=-1.0)
    model = copy.deepcopy(base.model)
    losses(model, x[0], y[0], pos[0], ft.lambda_task)[0].backward()
    G = [model.get_submodule(n).weight.grad for n in base.names]
    np.testing.assert_allclose(run["grad_sq"][0], [float(g.square().sum()) for g in G], rtol=1e-5)
    dots = torch.stack([z @ g.reshape(-1) for z, g in zip(Z, G)]).numpy()
    np.testing.assert_allclose(run["grad_dots"][0], dots, rtol=1e-4, atol=1e-7)
    want = [[float(v) for v in fg.energy_share(g, *e)] for g, e in zip(G, energy)]
    np.testing.assert_allclose(run["energy"][0], want, rtol=1e-4, atol=1e-9)
    assert run["matched"]["reached"] is False and run["steps_to_target"] is None   # target -1: never


def test_study_end_to_end_on_our_base(base_run, tmp_path):
    out = tmp_path / "out"
    fg.main(["--base", base_run, *STUDY, "--ranks", "1,32", "--lrs", "1e-4,1e-3,1e-2", "--out", str(out)])
    recs = {e: json.load(open(out / f"finetune_{e}.json")) for e in fg.EXPERIMENTS}
    for r in recs.values():
        assert {"experiment", "config", "definitions", "results", "provenance"} <= set(r)
        assert r["provenance"]["command"].startswith("python ")
    res = {e: r["results"] for e, r in recs.items()}
    task = recs["baseline"]["config"]["task"]
    L_in, L0 = task["base_val_loss_plain"], task["base_eval_task"]["val_loss"]
    assert task["target_val_loss"] == pytest.approx(L_in + 0.5 * (L0 - L_in))
    assert res["baseline"]["target_val_loss"] == task["target_val_loss"]
    assert "identity" in " ".join(recs["full_vs_lora"]["definitions"]) or \
        "sqrt(2/(pi D))" in recs["full_vs_lora"]["definitions"]["projection_identity"]
    lr = res["lr"]
    assert [r["lr"] for r in lr["rows"]["full"]] == [1e-4, 1e-3, 1e-2]
    for m in ("full", "lora"):
        assert lr["chosen"][m]["lr"] in lr["lrs"] and res["baseline"][f"lr_{m}"] == lr["chosen"][m]["lr"]
    for r in res["rank"]["rows"]:                          # no rank-r update beats its Eckart-Young ceiling
        assert abs(r["align_final"]) <= r["ceiling_final"] + 1e-6
    assert res["rank"]["rows"][1]["ceiling_final"] == pytest.approx(1.0)   # rank 32: full rank everywhere
    for pair in fg.PAIRS:
        for g in res["subspace"]["matched"][pair]["groups"].values():
            assert 0 <= g["sim"] <= 1 + 1e-9 and 0 < g["random"] <= 1
        c = res["alignment"]["matched"][pair]["groups"]["overall"]["cos"]
        assert abs(c) <= 1 + 1e-9
    for e in res["energy"]["runs"].values():
        assert all(0 <= g["share"] <= 1 + 1e-9 for g in e["groups"].values())
    for n, it in res["intruders"]["runs"].items():
        assert 0 <= it["counts"]["overall"] <= it["examined"]
    assert len(res["activity"]["lora"]["matched"]) == 2 and res["activity"]["full"]["overall"] > 0
    rows = res["table"]["rows"]
    assert len(rows) >= 9 and all(r["reading"] and r["reference_is"] for r in rows)
    csv_rows = (out / "finetune_table.csv").read_text().strip().splitlines()
    assert len(csv_rows) == len(rows) + 1
    assert (out / "finetune_table.md").read_text().count("\n|") >= len(rows) + 1
    for f in ("gradients", "alignment", "subspace", "activity", "lr", "rank"):
        assert (out / f"finetune_{f}.png").stat().st_size > 0
    s = ex.finetune_summary(str(out))
    assert s["alignment"]["rank"] == 4 and len(s["rank"]) == 2 and s["table"]["rows"]


def test_table_sentences_follow_the_numbers():
    """The readings are made from the numbers: a planted result whose projection ratio equals the norm
    ratio says 'at', one twice as large says 'above'."""
    assert fg._cmp(2.0, 2.0, 0.01) == "at" and fg._cmp(4.0, 2.0, 0.01) == "above"
    assert fg._cmp(1.0, 2.0, 0.01) == "below"


def test_hf_corpus_maps_words_to_the_tokenizer(base_run):
    """A fake tokenizer that spells every word in characters: the mapped stream is the words' spellings
    side by side, the codewords are its single-token uppercase words, the templates keep their slot."""
    class CharTok:
        codes = [f" {a}{b}{c}" for a in "ABCDEFGH" for b in "ABCDEFGH" for c in "ABCDEFGHIJ"]  # 640 tokens
        eos_token_id = 0

        def encode(self, s, add_special_tokens=False):
            return [ord(c) for c in s]

        def decode(self, ids):
            i = ids[0]
            return chr(i) if i < 256 else self.codes[i - 256]
    tok, V = CharTok(), 256 + len(CharTok.codes)
    from dataset import load_corpus
    from runs import run_config
    cfg = run_config(base_run)
    words = load_corpus(cfg)
    c = fg.hf_corpus(cfg, tok, V)
    def spelled(w):  # the fake tokenizer's ids of word id w (end of text: the eos id 0)
        if w == words.tok.eot:
            return [0]
        word = words.tok.itos[w]
        return tok.encode(word if not word[0].isalnum() else " " + word)
    spell = [spelled(w) for w in words.val[:300].tolist()]
    flat = [i for s in spell for i in s]
    assert c.val[: len(flat)].tolist() == flat
    assert len(c.codeword_ids) == cfg.n_codewords and min(c.codeword_ids) >= 256
    assert all(-1 in k and q[-1] == -1 for k, q in c.templates)
    assert ord("a") in c.tok.word_ids and ord(".") not in c.tok.word_ids   # the cipher's candidates


def test_hf_path_on_a_tiny_local_gpt2(base_run, tmp_path):
    transformers = pytest.importorskip("transformers")
    from dataset import SYNTHETIC_VERSION, WordTokenizer
    V = WordTokenizer(512, SYNTHETIC_VERSION["synthetic"]).vocab_size  # no tokenizer in the folder: word ids
    config = transformers.GPT2Config(vocab_size=V, n_positions=128, n_embd=32, n_layer=2, n_head=2,
                                     bos_token_id=0, eos_token_id=0)
    transformers.GPT2LMHeadModel(config).save_pretrained(tmp_path / "gpt2")
    cache = json.load(open(os.path.join(base_run, "config.json")))["config"]["cache_dir"]
    out = tmp_path / "out"
    fg.main(["--hf_model", str(tmp_path / "gpt2"), *STUDY, "--ranks", "2", "--lrs", "1e-3",
             "--hf_stories", "300", "--cache_dir", cache, "--out", str(out)])
    r = json.load(open(out / "finetune_alignment.json"))
    assert r["config"]["base"]["kind"] == "hf" and r["config"]["trunk_numel"] == 2 * 12 * 32 * 32
    assert len(r["results"]["alignment"]["matrices"]) == 8
    sub = json.load(open(out / "finetune_subspace.json"))["results"]["matched"]["lora_vs_full"]
    assert set(sub["matrices"]["layer0.mlp_up"]["dims"]) <= {4} and len(sub["matrices"]) == 8   # rank 4


@pytest.mark.parametrize("args", [["--base", "no/such/run"], ["--hf_model", "no-such-model-here"],
                                  ["--lrs", "1e-3,x"], ["--preset", "huge"], ["--rank", "0"],
                                  ["--shift_words", "1"], ["--lrs", ""], ["--new_codewords", "maybe"]])
def test_bad_input_is_one_line(args, tmp_path, usage_error, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no network in tests: the cache only, at once
    usage_error(fg.main, [*args, "--out", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()
