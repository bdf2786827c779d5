"""Corpus, probe sequences, local files and the n-gram baseline."""
import hashlib
import json
import os

import numpy as np
import pytest

import dataset
from config import UsageError, make_config
from dataset import PROBE_TEMPLATES, _load_texts, load_corpus, ngram_baseline, probe_sequence


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("c")
    return load_corpus(make_config(preset="tiny", n_train_stories=200, n_val_stories=50, cache_dir=str(tmp)))


def test_word_tokenizer_is_exact_and_codewords_are_single_tokens(corpus):
    tok = corpus.tok
    assert len(set(tok.itos)) == tok.vocab_size and tok.itos[tok.eot] == "<eot>"
    assert len(tok.codewords) == 512 and all(c.isupper() for c in tok.codewords)
    story = corpus.train[: int(np.argmax(corpus.train == tok.eot))]
    assert tok.encode(" ".join(tok.itos[i] for i in story)) == story.tolist()
    assert not np.isin(corpus.train, corpus.codeword_ids).any()  # codewords appear only in probes
    assert corpus.train.max() < tok.vocab_size


def test_probe_sequence_layout(corpus):
    rng = np.random.default_rng(0)
    for _ in range(50):
        seq, a = probe_sequence(corpus, corpus.val, rng, 257, 80, 200)
        assert len(seq) == 257 and seq[a] in corpus.codeword_ids
        occ = np.flatnonzero(seq == seq[a])
        assert len(occ) == 2 and occ[1] == a  # stated once in the key, asked once at the end of the query
        key_lens = [len(k.split()) for k, _ in PROBE_TEMPLATES]
        query_lens = [len(q.split()) for _, q in PROBE_TEMPLATES]
        # distance between the two occurrences = rest of key + gap + query, with gap in [80, 200]
        d = occ[1] - occ[0]
        assert any(80 + ql <= d <= 200 + ql + max(key_lens) for ql in query_lens)


def test_local_files_are_read_through_datasets(tmp_path):
    texts = [f"once upon a time there was story number {i} ." for i in range(40)]
    (tmp_path / "s.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in texts))
    (tmp_path / "s.txt").write_text("\n".join(texts))
    for name in ("s.jsonl", "s.txt"):
        cfg = make_config(data=str(tmp_path / name), cache_dir=str(tmp_path / "c"))
        tr, va = _load_texts(cfg)
        assert len(tr) + len(va) == 40 and set(tr) | set(va) == set(texts) and not set(tr) & set(va)
    with pytest.raises(UsageError, match="not found"):
        _load_texts(make_config(data=str(tmp_path / "nope.parquet")))
    with pytest.raises(UsageError, match="not found"):
        load_corpus(make_config(data=str(tmp_path / "nope.jsonl")))


def test_ngram_baseline_known_answers():
    rng = np.random.default_rng(0)
    V = 50
    iid = rng.integers(0, V, 200_000)
    res = ngram_baseline(iid[:150_000], iid[150_000:], V, max_n=3)
    assert abs(res[1] - np.log(V)) < 0.01  # nothing to learn beyond the unigram
    assert res[3] > res[1]                 # sparse trigram counts only add noise
    cyc = np.tile(np.arange(V), 2_000)     # deterministic given one previous token
    res = ngram_baseline(cyc[:80_000], cyc[80_000:], V, max_n=2)
    assert abs(res[1] - np.log(V)) < 0.01 and res[2] < 0.01


def test_v1_token_ids_unchanged():
    """The first 1,000 stories of each split of corpus v1, as token ids, and the v1 tokenizer (with 512
    codewords), hashed with the code as it was before the generator's data moved to files."""
    ids = [dataset._synthetic_split((1, 0, split, 0, 1000))[0] for split in ("train", "val")]
    assert hashlib.sha256(ids[0].tobytes() + ids[1].tobytes()).hexdigest() == \
        "44c39c794159eb4dc350e4cd4454eb61910c8e61724619a605dfe4a8be39fe8f"
    itos = dataset.WordTokenizer(512, 1).itos
    assert hashlib.sha256("\n".join(itos).encode()).hexdigest() == \
        "b5f5d648b1eb00620198d464a66cfc2605cb6dcbf6d298da4e2ce3360bf32a39"


def test_synthetic_is_version_2_and_synthetic_v1_the_archived_one(corpus, tmp_path):
    import storygen
    assert dataset.SYNTHETIC_VERSION == {"synthetic": 2, "synthetic_v1": 1}
    v1 = load_corpus(make_config(preset="tiny", data="synthetic_v1", n_train_stories=100, n_val_stories=50,
                                 cache_dir=str(tmp_path), progress=False))
    assert "v2" in corpus.description and "v1" in v1.description
    probe_words = {w for pair in PROBE_TEMPLATES for t in pair for w in t.split() if w != "{C}"}
    assert corpus.tok.n_words == len(set(storygen.generator(2).vocab) | probe_words)
    assert v1.tok.n_words == 1930
    assert np.isnan(v1.train_nats).all() and (corpus.train_nats > 0).all()


def test_v2_tokenizer_round_trip_and_cached_nats(corpus):
    """Stories -> ids -> tokens is exact, the cached stream is the generator's stories back to back, and
    the cached nats are the generator's."""
    import storygen
    gen, tok = storygen.generator(2), corpus.tok
    at = 0
    for i in range(50):
        tokens, nats = gen.tokens_and_nats(0, "train", i)
        ids = tok.encode_tokens(tokens)
        assert [tok.itos[j] for j in ids] == tokens and tok.decode(ids) == storygen.detokenize(tokens)
        assert corpus.train[at:at + len(ids)].tolist() == ids and corpus.train[at + len(ids)] == tok.eot
        assert corpus.train_nats[i] == nats
        at += len(ids) + 1


def test_an_edited_template_stops_the_gradient_analysis(tmp_path, micro_cfg, monkeypatch, cli_error):
    """A tiny run trains on a copy of the generator's data files; one word of one template is then
    changed in the copy, and the gradient analysis of the run stops with one line and exit code 2
    instead of replaying batches the run never trained on."""
    import shutil
    import runs
    import storygen
    import train
    data = tmp_path / "data"
    shutil.copytree(os.path.join(os.path.dirname(storygen.__file__), "storygen_data"), data)
    monkeypatch.setenv(storygen.DATA_ENV, str(data))
    cfg = micro_cfg(tmp_path, steps=20, eval_every=10, snapshot_every=10, cache_dir=str(tmp_path / "cache"))
    assert train.train(cfg)["status"] == "complete"
    record = runs.read_record(cfg.run_dir)
    assert record["corpus_identity"] == dataset.corpus_identity(cfg)
    runs.check_corpus(record, cfg)  # unchanged data: the check passes
    path = data / "v2" / "templates_cast.txt"
    text = path.read_text()
    line = "once upon a time , there lived a {trait} little {kid} called {N} ."
    assert text.count(line) == 1
    path.write_text(text.replace(line, line.replace("called", "named")))
    assert dataset.corpus_identity(cfg)["data_sha256"] != record["corpus_identity"]["data_sha256"]
    cli_error("backbone_gradient_analysis.py", ["--run", cfg.run_dir, "--device", "cpu"],
              match="not the one it trained on", env={**os.environ, storygen.DATA_ENV: str(data)})


def test_a_run_recorded_before_corpus_v2_reads_as_version_1(tmp_path):
    """config.json of the archived v1 runs says data = synthetic (then version 1) and has no corpus
    identity: its Config is the version-1 corpus, so analyses rebuild the batches it trained on."""
    import runs
    archived = os.path.join(os.path.dirname(dataset.__file__), "results", "v1", "seed42", "config.json")
    rec = json.load(open(archived))
    (tmp_path / "config.json").write_text(json.dumps(rec))
    assert rec["config"]["data"] == "synthetic" and runs.run_config(str(tmp_path)).data == "synthetic_v1"
    rec["corpus_identity"] = {"data": "synthetic"}
    (tmp_path / "config.json").write_text(json.dumps(rec))
    assert runs.run_config(str(tmp_path)).data == "synthetic"


def test_context_cost_with_one_token_of_context_is_the_nats_of_every_repeated_mention():
    """With a context of one token, every mention of a slot but its first is paid again: the expected
    cost per token is the sum, over repeated mentions, of their draw's nats, over the tokens."""
    import storygen
    gen = storygen.generator(2)
    stories = [gen.story(0, "val", i) for i in range(40)]
    exact = sum(n * len(set(p) - {p[0]}) for _, m in stories for n, p in m["draws"].values())
    exact /= sum(len(t) + 1 for t, _ in stories)
    estimate = dataset.context_cost(2, "val", 40, 1, windows=60_000)
    assert abs(estimate - exact) < 0.06 * exact
