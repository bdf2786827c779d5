"""Corpora, tokenizers, the key-retrieval probe task, deterministic batches and fixed eval sets.

    python dataset.py --sample 3                 # print 3 generated stories and corpus statistics
    python dataset.py --preset tiny --baseline   # n-gram baseline on the training tokens

Corpora (`--data`): `synthetic` (the embedded story generator, word-level tokenizer; default),
`tinystories` (Hugging Face `datasets` + tiktoken `gpt2`; needs the network once), or a local
.txt/.jsonl/.parquet file with a `text` field (tiktoken `gpt2`). Every corpus is tokenized once
into a uint16 stream (stories separated by an end-of-text token) cached under `cache_dir`.

Batches are a pure function of (seed, step + data_offset, micro-step): `get_batch` draws 257-token windows of
the train stream; with probability p_probe a window is replaced by a probe sequence: story text,
a key sentence stating a codeword, g tokens of story text, a query sentence whose last token is
the codeword, story text again. The probe loss is the cross-entropy at that answer position.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import queue
import threading
from dataclasses import dataclass

import numpy as np
import torch

from config import Config, UsageError, add_config_args, config_from_args, fail, Parser

# Paired key/query templates; {C} is the codeword. The query's last token is the answer.
PROBE_TEMPLATES = [
    ("the secret word is {C} .", "what is the secret word ? the secret word is {C}"),
    ("remember this magic word : {C} .", "can you say the magic word ? it was {C}"),
    ("the key to the box was called {C} .", "the name of the key to the box was {C}"),
    ("mom wrote a word on the paper . it said {C} .", "what did mom write on the paper ? she wrote {C}"),
    ("the little bird sang a name , and the name was {C} .", "the name the little bird sang was {C}"),
]
EOT = "<eot>"
SYNTHETIC_VERSION = 1  # bump when the generator or tokenizer changes (invalidates caches)


# ----------------------------------------------------------------------------- tokenizers
def invented_codewords(n: int) -> list[str]:
    """n distinct invented uppercase words (fixed, independent of the run seed)."""
    rng = np.random.default_rng(20240601)
    cons, vows = list("BDFGKLMNPRSTVZ"), list("AEIOU")
    out, seen = [], set()
    while len(out) < n:
        k = int(rng.integers(2, 4))
        w = "".join(cons[rng.integers(len(cons))] + vows[rng.integers(len(vows))] for _ in range(k))
        w += cons[rng.integers(len(cons))] if rng.random() < 0.5 else ""
        if w not in seen:
            seen.add(w)
            out.append(w)
    return out


class WordTokenizer:
    """Exact word-level tokenizer of the generated corpus: <eot>, words, then codewords."""

    def __init__(self, n_codewords: int):
        import storygen
        template_words = {w for pair in PROBE_TEMPLATES for s in pair for w in s.split() if w != "{C}"}
        self.codewords = invented_codewords(n_codewords)
        self.itos = [EOT] + sorted(set(storygen.VOCAB) | template_words) + self.codewords
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.eot = 0
        self.vocab_size = len(self.itos)
        self.codeword_ids = [self.stoi[c] for c in self.codewords]
        self.name = "word"

    def encode_tokens(self, tokens: list[str]) -> list[int]:
        return [self.stoi[t] for t in tokens]

    def encode(self, text: str) -> list[int]:
        return self.encode_tokens(text.split())

    def decode(self, ids) -> str:
        import storygen
        return storygen.detokenize([self.itos[int(i)] for i in ids])


class GPT2Tokenizer:
    """tiktoken `gpt2`; codewords are uppercase words whose space-prefixed form is one token."""

    def __init__(self, n_codewords: int, seed: int):
        try:
            import tiktoken
            self.enc = tiktoken.get_encoding("gpt2")
        except Exception as e:  # offline and no cached BPE file, or tiktoken missing
            raise UsageError(f"cannot load the tiktoken gpt2 encoding (it needs the network once): {type(e).__name__}")
        self.eot = self.enc.eot_token
        self.vocab_size = self.enc.n_vocab
        cands = []
        for i in range(self.enc.n_vocab - 1):
            s = self.enc.decode_single_token_bytes(i)
            if s.startswith(b" ") and s[1:].isalpha() and s[1:].isupper() and len(s) >= 4:
                cands.append(i)
        if len(cands) < n_codewords:
            raise UsageError(f"only {len(cands)} single-token uppercase words in gpt2, asked for {n_codewords}")
        pick = np.random.default_rng(seed).choice(len(cands), n_codewords, replace=False)
        self.codeword_ids = sorted(cands[i] for i in pick)
        self.codewords = [self.enc.decode([i]).strip() for i in self.codeword_ids]
        self.name = "gpt2"

    def encode(self, text: str) -> list[int]:
        return self.enc.encode_ordinary(text)

    def decode(self, ids) -> str:
        return self.enc.decode([int(i) for i in ids])


# ----------------------------------------------------------------------------- corpus
@dataclass
class Corpus:
    train: np.ndarray          # uint16 token stream, stories separated by eot
    val: np.ndarray
    tok: object                # WordTokenizer | GPT2Tokenizer
    templates: list            # [(key_ids_with_-1_for_codeword, query_ids_ending_in_-1)]
    description: str

    @property
    def vocab_size(self) -> int:
        return self.tok.vocab_size

    @property
    def codeword_ids(self) -> np.ndarray:
        return np.asarray(self.tok.codeword_ids, dtype=np.int64)


def _synthetic_split(args):
    seed, split, start, stop = args
    import storygen
    tok = WordTokenizer(0)  # codewords never appear in stories
    ids = []
    for i in range(start, stop):
        ids.extend(tok.encode_tokens(storygen.story_tokens(seed, split, i)))
        ids.append(tok.eot)
    return np.asarray(ids, dtype=np.uint16)


def _generate_synthetic(split: str, n: int, seed: int = 0) -> np.ndarray:
    chunks = [(seed, split, a, min(a + 2000, n)) for a in range(0, n, 2000)]
    workers = min(len(chunks), (os.cpu_count() or 1))
    if workers > 2:
        import multiprocessing as mp
        with mp.get_context("fork").Pool(workers) as pool:
            parts = pool.map(_synthetic_split, chunks)
    else:
        parts = [_synthetic_split(c) for c in chunks]
    return np.concatenate(parts)


def _load_texts(cfg: Config) -> tuple[list[str], list[str]]:
    """Raw story texts for tinystories or a local file (through `datasets`)."""
    try:
        import datasets
    except ImportError:
        raise UsageError(f"--data {cfg.data} needs the `datasets` package (pip install datasets)")
    if cfg.data == "tinystories":
        try:
            tr = datasets.load_dataset("roneneldan/TinyStories", split=f"train[:{cfg.train_stories}]")
            va = datasets.load_dataset("roneneldan/TinyStories", split=f"validation[:{cfg.n_val_stories}]")
        except Exception as e:
            raise UsageError(f"cannot load TinyStories (it needs the network once; offline?): {type(e).__name__}")
        return tr["text"], va["text"]
    path = cfg.data
    if not os.path.isfile(path):
        raise UsageError(f"data file not found: {path}")
    kind = {".txt": "text", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}.get(os.path.splitext(path)[1])
    if kind is None:
        raise UsageError(f"unsupported data file type: {path} (use .txt, .jsonl or .parquet)")
    try:
        texts = datasets.load_dataset(kind, data_files=path, split="train", cache_dir=os.path.join(cfg.cache_dir, "hf"))["text"]
    except Exception as e:
        raise UsageError(f"cannot read {path} as {kind} with a `text` field: {type(e).__name__}")
    n_val = min(cfg.n_val_stories, max(1, len(texts) // 20))
    if len(texts) < 2:
        raise UsageError(f"{path} holds fewer than 2 texts")
    return texts[n_val:][: cfg.train_stories], texts[:n_val]


def _cache_path(cfg: Config, key: str) -> str:
    return os.path.join(cfg.cache_dir, key + ".npy")


def _cached(path: str, build) -> np.ndarray:
    if os.path.exists(path):
        try:
            return np.load(path, mmap_mode="r")
        except Exception:
            pass  # a broken cache is rebuilt
    arr = build()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}.npy"
    np.save(tmp, arr)
    os.replace(tmp, path)
    return arr


def corpus_identity(cfg: Config) -> dict:
    """What fixes the token streams a run trains on, recorded in config.json and checked before any replay.
    Synthetic: generator version + sha256 of storygen's grammar and word tables (its upper-case module
    data) and of the probe templates. Text corpora: sha256 of the cached token arrays (built if needed)."""
    h = hashlib.sha256()
    if cfg.data == "synthetic":
        import storygen
        def canon(o):  # sets and dicts in a fixed order (set order changes between processes)
            if isinstance(o, dict):
                return sorted([repr(k), canon(v)] for k, v in o.items())
            if isinstance(o, (set, frozenset)):
                return sorted(map(repr, o))
            return [canon(v) for v in o] if isinstance(o, (list, tuple)) else o
        tables = {k: v for k, v in vars(storygen).items() if k.isupper() and k[0] != "_" and isinstance(v, (str, list, tuple, dict, set))}
        h.update(json.dumps(canon([tables, PROBE_TEMPLATES])).encode())
        return dict(kind="synthetic", version=SYNTHETIC_VERSION, sha256=h.hexdigest())
    corpus = load_corpus(cfg)
    for arr in (corpus.train, corpus.val):
        h.update(np.ascontiguousarray(arr).tobytes())
    return dict(kind="tokens", tokenizer=corpus.tok.name, sha256=h.hexdigest())


def load_corpus(cfg: Config) -> Corpus:
    if cfg.data == "synthetic":
        import storygen
        tok = WordTokenizer(cfg.n_codewords)
        src = hashlib.sha1(open(storygen.__file__, "rb").read()).hexdigest()[:10]  # a changed generator gets a new cache
        key = f"synthetic_v{SYNTHETIC_VERSION}_{src}_{tok.vocab_size - cfg.n_codewords}"
        train = _cached(_cache_path(cfg, f"{key}_train{cfg.train_stories}"), lambda: _generate_synthetic("train", cfg.train_stories))
        val = _cached(_cache_path(cfg, f"{key}_val{cfg.n_val_stories}"), lambda: _generate_synthetic("val", cfg.n_val_stories))
        desc = f"synthetic stories v{SYNTHETIC_VERSION} (word tokenizer)"
    else:
        if cfg.data != "tinystories" and not os.path.isfile(cfg.data):
            raise UsageError(f"data file not found: {cfg.data}")
        tok = GPT2Tokenizer(cfg.n_codewords, cfg.seed)
        if cfg.data == "tinystories":
            key = f"tinystories_gpt2_{cfg.train_stories}_{cfg.n_val_stories}"
        else:
            st = os.stat(cfg.data)
            h = hashlib.sha1(f"{os.path.abspath(cfg.data)}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]
            key = f"file_{h}_gpt2_{cfg.train_stories}_{cfg.n_val_stories}"
        paths = [_cache_path(cfg, f"{key}_{s}") for s in ("train", "val")]
        if not all(os.path.exists(p) for p in paths):
            tr_texts, va_texts = _load_texts(cfg)
            for p, texts in zip(paths, (tr_texts, va_texts)):
                ids = [i for t in texts for i in tok.encode(t) + [tok.eot]]
                _cached(p, lambda: np.asarray(ids, dtype=np.uint16))
        train, val = (np.load(p, mmap_mode="r") for p in paths)
        desc = f"{cfg.data} (tiktoken gpt2)"
    for name, arr in (("train", train), ("val", val)):
        if len(arr) < 4 * (cfg.ctx + 1):
            raise UsageError(f"the {name} split has only {len(arr)} tokens, too few for context {cfg.ctx}")
    templates = [(_encode_template(tok, k), _encode_template(tok, q)) for k, q in PROBE_TEMPLATES]
    return Corpus(np.asarray(train), np.asarray(val), tok, templates, f"{desc}, cache {key}, {len(train):,} train tokens")


def _encode_template(tok, s: str) -> list[int]:
    """Token ids of a template sentence, -1 where the codeword goes."""
    out = []
    for w in s.split():
        if w == "{C}":
            out.append(-1)
        else:
            out.extend(tok.encode(w) if tok.name == "word" else tok.encode(" " + w))
    return out


# ----------------------------------------------------------------------------- probe sequences
def probe_sequence(corpus: Corpus, stream: np.ndarray, rng: np.random.Generator, L: int, gap_lo: int, gap_hi: int):
    """One probe sequence of L tokens and the index of its answer token."""
    code = int(rng.choice(corpus.codeword_ids))
    key, query = corpus.templates[int(rng.integers(len(corpus.templates)))]
    key = [code if t == -1 else t for t in key]
    query = [code if t == -1 else t for t in query]
    g = int(rng.integers(gap_lo, gap_hi + 1))
    room = L - len(key) - g - len(query)
    P = int(rng.integers(1, min(10, room) + 1))
    o = int(rng.integers(0, len(stream) - L))
    text = stream[o : o + L].astype(np.int64)
    seq = np.concatenate([text[:P], key, text[P : P + g], query, text[P + g :]])[:L]
    return seq, P + len(key) + g + len(query) - 1


def _windows(stream: np.ndarray, offsets: np.ndarray, L: int) -> np.ndarray:
    return stream[offsets[:, None] + np.arange(L)].astype(np.int64)


def get_batch(corpus: Corpus, cfg: Config, step: int, micro: int, batch_size: int | None = None):
    """Micro-batch `micro` of step `step`: a pure function of (seed, step, micro).

    Returns x (B, ctx), y (B, ctx) int64 and probe_pos (B,): the target index whose label is the
    probe answer, or -1 for plain LM sequences."""
    B, L = batch_size or cfg.batch_size, cfg.ctx + 1
    rng = np.random.default_rng([cfg.seed, step + cfg.data_offset, micro, 1])
    is_probe = rng.random(B) < cfg.p_probe
    seqs = _windows(corpus.train, rng.integers(0, len(corpus.train) - L, B), L)
    pos = np.full(B, -1, dtype=np.int64)
    for b in np.flatnonzero(is_probe):
        seqs[b], a = probe_sequence(corpus, corpus.train, rng, L, cfg.gap_min, cfg.gap_max)
        pos[b] = a - 1
    seqs = torch.from_numpy(seqs)
    return seqs[:, :-1].contiguous(), seqs[:, 1:].contiguous(), torch.from_numpy(pos)


def process_rows(n: int, rank: int, world: int) -> slice:
    """The rows of a micro-batch of `n` rows that process `rank` of `world` trains on (equal shares)."""
    if n % world:
        raise ValueError(f"{n} rows do not split into {world} equal shares")
    return slice(rank * n // world, (rank + 1) * n // world)


class Prefetcher:
    """The batches of steps start .. stop - 1, built ahead by a background thread (a queue of `depth` steps)
    and copied to the device without blocking (pinned host memory on CUDA). The batches of step t are
    exactly [get_batch(corpus, cfg, t, m) for m < grad_accum]: a pure function of (seed, step, micro), so a
    resumed run gets the same ones. `get(t)` must be called for t = start, start + 1, ... in order.
    shard (rank, world): only this process's rows of each micro-batch (`process_rows`)."""

    def __init__(self, corpus: Corpus, cfg: Config, device: torch.device, start: int, stop: int,
                 depth: int = 3, shard: tuple[int, int] = (0, 1)):
        self.device, self.next, self.micro, self.shard = device, start, cfg.grad_accum, shard
        self.queue, self.stopped = queue.Queue(maxsize=depth), threading.Event()
        self.thread = threading.Thread(target=self._work, args=(corpus, cfg, start, stop), daemon=True)
        self.thread.start()

    def _work(self, corpus, cfg, start, stop):
        try:
            for step in range(start, stop):
                parts = [get_batch(corpus, cfg, step, m) for m in range(cfg.grad_accum)]
                if self.shard[1] > 1:
                    rows = process_rows(cfg.batch_size, *self.shard)
                    parts = [tuple(t[rows] for t in p) for p in parts]
                host = [torch.cat(t) for t in zip(*parts)]  # micro-batches stacked: one copy per tensor
                if self.device.type == "cuda":
                    host = [t.pin_memory() for t in host]
                if not self._put((step, host)):
                    return
        except BaseException as e:  # raised again by get()
            self._put((None, e))

    def _put(self, item) -> bool:
        while not self.stopped.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def get(self, step: int) -> list[tuple]:
        """The micro-batches [(x, y, probe_pos), ...] of `step`, on the device."""
        if step != self.next:
            raise RuntimeError(f"batches are prefetched in order: asked for step {step}, next is {self.next}")
        got, host = self.queue.get()
        if got is None:
            raise host
        self.next += 1
        dev = [t.to(self.device, non_blocking=True) for t in host]
        return list(zip(*(t.chunk(self.micro) for t in dev)))

    def close(self):
        self.stopped.set()
        self.thread.join()


@dataclass
class EvalSets:
    lm_x: torch.Tensor        # (n_eval_lm, ctx) validation windows
    lm_y: torch.Tensor
    probe: dict               # name -> (x (N, ctx), answer_pos (N,), answer (N,))


def make_eval_sets(corpus: Corpus, cfg: Config) -> EvalSets:
    """Fixed validation windows and probe sets (p_in, p_ood); depend only on the seed."""
    L = cfg.ctx + 1
    rng = np.random.default_rng([cfg.seed, 10**6, 2])
    lm = torch.from_numpy(_windows(corpus.val, rng.integers(0, len(corpus.val) - L, cfg.n_eval_lm), L))
    probe = {}
    for name, lo, hi in (("p_in", cfg.gap_min, cfg.gap_max), ("p_ood", cfg.ood_gap_min, cfg.ood_gap_max)):
        r = np.random.default_rng([cfg.seed, 10**6, 3, lo, hi])
        seqs, pos = zip(*(probe_sequence(corpus, corpus.val, r, L, lo, hi) for _ in range(cfg.n_eval_probe)))
        seqs, pos = torch.from_numpy(np.stack(seqs)), torch.tensor(pos)
        probe[name] = (seqs[:, :-1].contiguous(), pos - 1, seqs[torch.arange(len(pos)), pos])
    return EvalSets(lm[:, :-1].contiguous(), lm[:, 1:].contiguous(), probe)


# ----------------------------------------------------------------------------- n-gram baseline
def ngram_baseline(train: np.ndarray, val: np.ndarray, V: int, max_n: int = 4) -> dict[int, float]:
    """Validation cross-entropy (nats/token) of interpolated Witten-Bell n-gram models, n = 1..max_n,
    fitted on the training tokens. Tokens are packed into int64 keys (needs V**max_n < 2**63)."""
    assert V ** max_n < 2**63
    tr, va = train.astype(np.int64), val.astype(np.int64)
    p = np.full(len(va) - (max_n - 1), 1.0 / V)  # order-0: uniform
    out = {}
    for n in range(1, max_n + 1):
        def keys(a, m):  # pack each m-gram ending at positions max_n-1 .. into one int64
            k = np.zeros(len(a) - m + 1, dtype=np.int64)
            for j in range(m):
                k = k * V + a[j : len(a) - m + 1 + j]
            return k
        grams, cnt = np.unique(keys(tr, n), return_counts=True)
        hist = grams // V                     # history (n-1)-gram of each distinct n-gram
        h_u, h_idx = np.unique(hist, return_inverse=True)
        h_cnt = np.bincount(h_idx, weights=cnt)          # c(h)
        h_types = np.bincount(h_idx)                     # N1+(h .)
        qk = keys(va, n)[max_n - n :]
        i = np.clip(np.searchsorted(grams, qk), 0, len(grams) - 1)
        c_hw = np.where(grams[i] == qk, cnt[i], 0)
        j = np.clip(np.searchsorted(h_u, qk // V), 0, len(h_u) - 1)
        seen_h = h_u[j] == qk // V
        c_h, t_h = np.where(seen_h, h_cnt[j], 0), np.where(seen_h, h_types[j], 0)
        denom = c_h + t_h
        p = np.where(denom > 0, (c_hw + t_h * p) / np.maximum(denom, 1), p)
        out[n] = float(-np.log(p).mean())
    return out


# ----------------------------------------------------------------------------- command line
def main(argv=None):
    ap = add_config_args(Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    ap.add_argument("--sample", type=int, default=0, help="print this many training stories")
    ap.add_argument("--baseline", action="store_true", help="fit n-gram baselines (n=1..4) and report val nats/token")
    args = ap.parse_args(argv)
    try:
        cfg = config_from_args(args)
        corpus = load_corpus(cfg)
    except UsageError as e:
        fail(str(e))
    tr = corpus.train
    eot = np.flatnonzero(tr == corpus.tok.eot)
    starts = np.concatenate([[0], eot[:-1] + 1])
    for s, e in list(zip(starts, eot))[: args.sample]:
        print(corpus.tok.decode(tr[s:e]), end="\n\n")
    lens = eot - starts
    stats = dict(corpus=corpus.description, vocab=corpus.vocab_size, codewords=len(corpus.codeword_ids),
                 train_stories=int(len(eot)), train_tokens=int(len(tr)), val_tokens=int(len(corpus.val)),
                 mean_story_tokens=round(float(lens.mean()), 1), min_story_tokens=int(lens.min()), max_story_tokens=int(lens.max()),
                 distinct_train_types=int(len(np.unique(tr))))
    if args.baseline:
        stats["ngram_val_nats"] = {str(k): round(v, 4) for k, v in ngram_baseline(tr, corpus.val, corpus.vocab_size).items()}
    print(json.dumps(stats, indent=1))


if __name__ == "__main__":
    main()
