"""Corpora, tokenizers, the key-retrieval probe task, deterministic batches and fixed eval sets.

    python dataset.py --sample 3                 # print 3 generated stories, their nats, statistics
    python dataset.py --preset tiny --baseline   # n-gram baseline on the training tokens
    # statistics and the n-gram trend, written to results/corpus/:
    python dataset.py --stats --baseline --baseline_tokens 10000000,30000000,100000000

Corpora (`--data`): `synthetic` (the embedded story generator, corpus version 2, word-level
tokenizer; default), `synthetic_v1` (the archived version 1), `tinystories` (Hugging Face
`datasets` + tiktoken `gpt2`; needs the network once), or a local .txt/.jsonl/.parquet file with a
`text` field (tiktoken `gpt2`). Every corpus is tokenized once into a uint16 stream (stories
separated by an end-of-text token) cached under `cache_dir`; a synthetic corpus also caches the
nats of every story (version 2).

Batches are a pure function of (seed, step + data_offset, micro-step): `get_batch` draws 257-token
windows of the train stream; with probability p_probe a window is replaced by a probe sequence:
story text, a key sentence stating a codeword, g tokens of story text, a query sentence whose last
token is the codeword, story text again. The probe loss is the cross-entropy at that answer
position.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import queue
import threading
import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

import storygen
from common import os_reason, write_result

from config import (SYNTHETIC_VERSION, Config, Parser, UsageError, add_config_args,
                    config_from_args, fail)

# Paired key/query templates; {C} is the codeword. The query's last token is the answer. Their
# text is part of the corpus identity (probe_sha256): an edit here is a different probe task.
PROBE_TEMPLATES = [
    ("the secret word is {C} .", "what is the secret word ? the secret word is {C}"),
    ("remember this magic word : {C} .", "can you say the magic word ? it was {C}"),
    ("the key to the box was called {C} .", "the name of the key to the box was {C}"),
    ("mom wrote a word on the paper . it said {C} .",
     "what did mom write on the paper ? she wrote {C}"),
    ("the little bird sang a name , and the name was {C} .",
     "the name the little bird sang was {C}"),
]
EOT = "<eot>"


# ----------------------------------------------------------------------------- tokenizers
def invented_codewords(n: int) -> list[str]:
    """n distinct invented uppercase words (fixed, independent of the run seed)."""
    # a fixed seed: the codewords are part of the vocabulary, which is then the same for every
    # run seed
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

    def __init__(self, n_codewords: int, version: int):
        template_words = {w for pair in PROBE_TEMPLATES for s in pair for w in s.split()
                          if w != "{C}"}
        self.codewords = invented_codewords(n_codewords)
        # sorted: the token ids must not depend on set order (hash seeds differ between processes)
        words = sorted(set(storygen.generator(version).vocab) | template_words)
        self.n_words = len(words)
        # codewords last, so the ids of the story words do not depend on n_codewords
        self.itos = [EOT] + words + self.codewords
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
        return storygen.detokenize([self.itos[int(i)] for i in ids])


class GPT2Tokenizer:
    """tiktoken `gpt2`; codewords are uppercase words whose space-prefixed form is one token."""

    def __init__(self, n_codewords: int, seed: int):
        try:
            import tiktoken  # optional: only the GPT-2 vocabulary needs it
            self.enc = tiktoken.get_encoding("gpt2")
        except Exception as e:  # offline and no cached BPE file, or tiktoken missing
            raise UsageError(f"cannot load the tiktoken gpt2 encoding (it needs the network "
                             f"once): {type(e).__name__}")
        self.eot = self.enc.eot_token
        self.vocab_size = self.enc.n_vocab
        cands = []
        for i in range(self.enc.n_vocab - 1):  # - 1: the last id is the end-of-text token
            s = self.enc.decode_single_token_bytes(i)
            # space-prefixed: the form a word takes after another word, as in the templates
            if s.startswith(b" ") and s[1:].isalpha() and s[1:].isupper() and len(s) >= 4:
                cands.append(i)
        if len(cands) < n_codewords:
            raise UsageError(f"only {len(cands)} single-token uppercase words in gpt2, asked for "
                             f"{n_codewords}")
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
    train: np.ndarray          # uint16 token stream (gpt2's ids fit), stories separated by eot
    val: np.ndarray
    tok: object                # WordTokenizer | GPT2Tokenizer
    templates: list            # [(key_ids_with_-1_for_codeword, query_ids_ending_in_-1)]
    description: str
    # synthetic: -log P of each story's choices (NaN in version 1)
    train_nats: np.ndarray | None = None
    val_nats: np.ndarray | None = None

    @property
    def vocab_size(self) -> int:
        return self.tok.vocab_size

    @property
    def codeword_ids(self) -> np.ndarray:
        return np.asarray(self.tok.codeword_ids, dtype=np.int64)


def _synthetic_split(args):
    version, seed, split, start, stop = args
    # no codewords: they never occur in stories, and the story words' ids do not depend on them
    gen, stoi = storygen.generator(version), WordTokenizer(0, version).stoi
    ids, nats = [], []
    if hasattr(gen, "ids_and_nats"):  # stories as generator ids, translated to token ids at once
        end = len(gen.vocab)  # stands for the end-of-text token
        for i in range(start, stop):
            story, n = gen.ids_and_nats(seed, split, i)
            ids += story
            ids.append(end)
            nats.append(n)
        trans = np.asarray([stoi[w] for w in gen.vocab] + [0], dtype=np.uint16)
        return trans[np.asarray(ids)], np.asarray(nats)
    for i in range(start, stop):
        tokens, n = gen.tokens_and_nats(seed, split, i)
        ids.extend(map(stoi.__getitem__, tokens))
        ids.append(0)  # eot
        nats.append(n)
    return np.asarray(ids, dtype=np.uint16), np.asarray(nats)


def _generate_synthetic(version: int, split: str, n: int, seed: int = 0, progress: bool = False):
    """Stories 0..n-1 of a split as one token stream and their nats, generated by story ranges on
    every core."""
    # each story is a function of (seed, split, index) alone, so the chunks can be generated in any
    # order on any core and concatenated: the stream does not depend on the number of workers
    chunks = [(version, seed, split, a, min(a + 2000, n)) for a in range(0, n, 2000)]
    workers = min(len(chunks), os.cpu_count() or 1)
    bar = dict(total=len(chunks), desc=f"corpus v{version} {split}", unit="chunk",
               disable=not progress or n < 50_000)
    if workers >= 2:
        with mp.get_context("fork").Pool(workers) as pool:
            # imap keeps the chunks' order
            parts = list(tqdm(pool.imap(_synthetic_split, chunks), **bar))
    else:
        parts = [_synthetic_split(c) for c in tqdm(chunks, **bar)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _synthetic_cached(cfg: Config, key: str, version: int, split: str, n: int):
    """The cached token stream and story nats of a split, generated once (a split too short for the
    context is an error before anything is cached)."""
    paths = [_cache_path(cfg, f"{key}_{split}{n}"), _cache_path(cfg, f"{key}_{split}{n}_nats")]
    try:
        return tuple(np.load(p, mmap_mode="r") for p in paths)
    except Exception:
        pass  # missing or broken: built again
    arrays = _generate_synthetic(version, split, n, progress=cfg.progress)
    _check_split(cfg, split, arrays[0])
    # the token stream last: its file means both are there
    for p, arr in zip(paths[::-1], arrays[::-1]):
        _cached(p, lambda: arr, rebuild=True)
    return arrays


def corpus_identity(cfg: Config) -> dict:
    """What the token streams of `cfg` are a function of, recorded in config.json and checked before
    a run's batches are replayed. Synthetic corpora: the generator version, the sha256 of its data
    files, the tokenizer's word count, the probe templates and a fingerprint of the first stories of
    each split (so a code change that alters stories shows; a comment edit changes nothing); text
    corpora: the data name and the sha256 of the token cache."""
    probe = hashlib.sha256(json.dumps(PROBE_TEMPLATES).encode()).hexdigest()
    if cfg.data in SYNTHETIC_VERSION:
        version = SYNTHETIC_VERSION[cfg.data]
        h = hashlib.sha256()
        for path in storygen.data_files(version):
            # each file's name and bytes, NUL-separated so that the boundaries between them count
            h.update(os.path.basename(path).encode() + b"\0" + open(path, "rb").read() + b"\0")
        # a fingerprint of the generator's code: the first 64 stories of each split (made again
        # at every load, so kept few)
        first = np.concatenate([_synthetic_split((version, 0, sp, 0, 64))[0]
                                for sp in ("train", "val")])
        return {"data": cfg.data, "generator_version": version, "data_sha256": h.hexdigest(),
                "tokenizer_words": WordTokenizer(0, version).n_words, "probe_sha256": probe,
                "stories_sha256": hashlib.sha256(first.tobytes()).hexdigest()}
    key = _text_cache_key(cfg)
    h = hashlib.sha256()
    for p in _text_cache_paths(cfg, key):
        if not os.path.exists(p):
            load_corpus(cfg)  # builds the cache
        h.update(np.ascontiguousarray(np.load(p, mmap_mode="r")).tobytes())
    return {"data": cfg.data, "tokenizer": "gpt2", "probe_sha256": probe,
            "cache_sha256": h.hexdigest()}


def _synthetic_key(ident: dict) -> str:
    # the cache file name carries the identity: a changed generator builds a new cache instead of
    # reading the old one's stories
    return (f"synthetic_v{ident['generator_version']}_{ident['data_sha256'][:10]}"
            f"_{ident['stories_sha256'][:6]}_{ident['tokenizer_words']}")


def _text_cache_key(cfg: Config) -> str:
    if cfg.data == "tinystories":
        return f"tinystories_gpt2_{cfg.train_stories}_{cfg.n_val_stories}"
    # path, size and modification time stand for the content, so that finding the cache needs no
    # pass over a large file; an edited file gets a new cache
    st = os.stat(cfg.data)
    stamp = f"{os.path.abspath(cfg.data)}:{st.st_size}:{st.st_mtime_ns}"
    h = hashlib.sha1(stamp.encode()).hexdigest()[:12]
    return f"file_{h}_gpt2_{cfg.train_stories}_{cfg.n_val_stories}"


def _text_cache_paths(cfg: Config, key: str) -> list[str]:
    return [_cache_path(cfg, f"{key}_{s}") for s in ("train", "val")]


def _load_texts(cfg: Config) -> tuple[list[str], list[str]]:
    """Raw story texts for tinystories or a local file (through `datasets`)."""
    try:
        import datasets  # optional and slow to import: only the text corpora need it
    except ImportError:
        raise UsageError(f"--data {cfg.data} needs the `datasets` package (pip install datasets)")
    if cfg.data == "tinystories":
        try:
            tr = datasets.load_dataset("roneneldan/TinyStories",
                                       split=f"train[:{cfg.train_stories}]")
            va = datasets.load_dataset("roneneldan/TinyStories",
                                       split=f"validation[:{cfg.n_val_stories}]")
        except Exception as e:
            raise UsageError(f"cannot load TinyStories (it needs the network once; offline?): "
                             f"{type(e).__name__}")
        return tr["text"], va["text"]
    path = cfg.data
    if not os.path.isfile(path):
        raise UsageError(f"data file not found: {path}")
    kinds = {".txt": "text", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
    kind = kinds.get(os.path.splitext(path)[1])
    if kind is None:
        raise UsageError(f"unsupported data file type: {path} (use .txt, .jsonl or .parquet)")
    try:
        texts = datasets.load_dataset(kind, data_files=path, split="train",
                                      cache_dir=os.path.join(cfg.cache_dir, "hf"))["text"]
    except Exception as e:
        raise UsageError(f"cannot read {path} as {kind} with a `text` field: {type(e).__name__}")
    # at most a twentieth of a small file goes to validation, at least one text
    n_val = min(cfg.n_val_stories, max(1, len(texts) // 20))
    if len(texts) < 2:
        raise UsageError(f"{path} holds fewer than 2 texts")
    return texts[n_val:][: cfg.train_stories], texts[:n_val]


def _cache_path(cfg: Config, key: str) -> str:
    return os.path.join(cfg.cache_dir, key + ".npy")


def _check_split(cfg: Config, name: str, tokens):
    # a few windows at least: the batch and eval windows are drawn from [0, len - ctx - 1)
    if len(tokens) < 4 * (cfg.ctx + 1):
        raise UsageError(f"the {name} split has only {len(tokens)} tokens, too few for context "
                         f"{cfg.ctx}")


def _check_data_file(path: str):
    """A local --data file that cannot hold texts stops before the tokenizer loads (which may need
    the network): missing, of another type, empty, or not text."""
    if not os.path.isfile(path):
        raise UsageError(f"data file not found: {path}")
    ext = os.path.splitext(path)[1]
    if ext not in (".txt", ".jsonl", ".json", ".parquet"):
        raise UsageError(f"unsupported data file type: {path} (use .txt, .jsonl or .parquet)")
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    if not head.strip():
        raise UsageError(f"data file {path} is empty")
    if ext == ".parquet":
        if head[:4] != b"PAR1":
            raise UsageError(f"data file {path} is not a parquet file")
        return
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        # not a character cut at the end of the 64 KiB read
        if e.start < len(head) - 4 or b"\0" in head:
            raise UsageError(f"data file {path} is not UTF-8 text (byte {e.start})")


def _cached(path: str, build, rebuild: bool = False) -> np.ndarray:
    if os.path.exists(path) and not rebuild:
        try:
            return np.load(path, mmap_mode="r")
        except Exception:
            pass  # a broken cache is rebuilt
    arr = build()
    # atomic as common.atomic_write (a killed build leaves no truncated cache that a later run
    # would trust); the name ends in .npy, or np.save would append it
    tmp = f"{path}.tmp{os.getpid()}.npy"
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        np.save(tmp, arr)
        os.replace(tmp, path)
    except OSError as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise UsageError(f"cannot write the corpus cache {path}: {os_reason(e)}")
    return arr


def load_corpus(cfg: Config) -> Corpus:
    if os.path.exists(cfg.cache_dir) and not os.path.isdir(cfg.cache_dir):
        raise UsageError(f"cache_dir {cfg.cache_dir} is a file, not a folder")
    if cfg.data in SYNTHETIC_VERSION:
        version = SYNTHETIC_VERSION[cfg.data]
        try:
            ident = corpus_identity(cfg)
        except (OSError, ValueError) as e:  # a missing or malformed data folder
            raise UsageError(f"story generator data: {e}")
        tok = WordTokenizer(cfg.n_codewords, version)
        key = _synthetic_key(ident)
        # the small split first: one too short stops before the train split is generated and cached
        val, val_nats = _synthetic_cached(cfg, key, version, "val", cfg.n_val_stories)
        train, train_nats = _synthetic_cached(cfg, key, version, "train", cfg.train_stories)
        desc = f"synthetic stories v{version} (word tokenizer)"
    else:
        if cfg.data != "tinystories":
            _check_data_file(cfg.data)
        tok = GPT2Tokenizer(cfg.n_codewords, cfg.seed)
        key = _text_cache_key(cfg)
        paths = _text_cache_paths(cfg, key)
        if not all(os.path.exists(p) for p in paths):
            splits = [np.asarray([i for t in texts for i in tok.encode(t) + [tok.eot]],
                                 dtype=np.uint16) for texts in _load_texts(cfg)]
            for name, ids in zip(("train", "val"), splits):
                _check_split(cfg, name, ids)  # both, before either is cached
            for p, ids in zip(paths, splits):
                _cached(p, lambda: ids)
        train, val = (np.load(p, mmap_mode="r") for p in paths)
        train_nats = val_nats = None
        desc = f"{cfg.data} (tiktoken gpt2)"
    for name, arr in (("train", train), ("val", val)):
        _check_split(cfg, name, arr)
    templates = [(_encode_template(tok, k), _encode_template(tok, q)) for k, q in PROBE_TEMPLATES]
    desc = f"{desc}, cache {key}, {len(train):,} train tokens"
    return Corpus(np.asarray(train), np.asarray(val), tok, templates, desc, train_nats, val_nats)


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
def probe_sequence(corpus: Corpus, stream: np.ndarray, rng: np.random.Generator, L: int,
                   gap_lo: int, gap_hi: int):
    """One probe sequence of L tokens and the index of its answer token."""
    # the draws below come in a fixed order from `rng`: reordering them changes every batch
    code = int(rng.choice(corpus.codeword_ids))
    key, query = corpus.templates[int(rng.integers(len(corpus.templates)))]
    key = [code if t == -1 else t for t in key]
    query = [code if t == -1 else t for t in query]
    g = int(rng.integers(gap_lo, gap_hi + 1))
    room = L - len(key) - g - len(query)
    P = int(rng.integers(1, min(10, room) + 1))  # 1-10 tokens of text before the key
    o = int(rng.integers(0, len(stream) - L))
    text = stream[o : o + L].astype(np.int64)
    # the story text runs on around the inserted sentences; [:L] drops what they pushed out
    seq = np.concatenate([text[:P], key, text[P : P + g], query, text[P + g :]])[:L]
    return seq, P + len(key) + g + len(query) - 1


def _windows(stream: np.ndarray, offsets: np.ndarray, L: int) -> np.ndarray:
    return stream[offsets[:, None] + np.arange(L)].astype(np.int64)


def get_batch(corpus: Corpus, cfg: Config, step: int, micro: int, batch_size: int | None = None):
    """Micro-batch `micro` of step `step`: a pure function of (seed, step, micro).

    Returns x (B, ctx), y (B, ctx) int64 and probe_pos (B,): the target index whose label is the
    probe answer, or -1 for plain LM sequences."""
    B, L = batch_size or cfg.batch_size, cfg.ctx + 1
    # seeded by (seed, step, micro) alone: any step's batch can be made again without replaying
    # the ones before it (resume, the gradient analyses); the last entry 1 keeps this stream apart
    # from the eval sets' (2, 3)
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
    """The rows of a micro-batch of `n` rows that process `rank` of `world` trains on (equal
    shares, so that the processes' mean of gradients is the whole micro-batch's)."""
    if n % world:
        raise ValueError(f"{n} rows do not split into {world} equal shares")
    return slice(rank * n // world, (rank + 1) * n // world)


class Prefetcher:
    """The batches of steps start .. stop - 1, built ahead by a background thread (a queue of
    `depth` steps) and copied to the device without blocking (pinned host memory on CUDA). The
    batches of step t are exactly [get_batch(corpus, cfg, t, m) for m < grad_accum]: a pure function
    of (seed, step, micro), so a resumed run gets the same ones. `get(t)` must be called for
    t = start, start + 1, ... in order. shard (rank, world): only this process's rows of each
    micro-batch (`process_rows`)."""

    def __init__(self, corpus: Corpus, cfg: Config, device: torch.device, start: int, stop: int,
                 depth: int = 3, shard: tuple[int, int] = (0, 1)):
        self.device, self.next, self.micro, self.shard = device, start, cfg.grad_accum, shard
        self.queue, self.stopped = queue.Queue(maxsize=depth), threading.Event()
        # a thread, not a process: the corpus (memory-mapped) is shared without copies; daemon, so
        # that a main thread that dies without close() does not hang the interpreter's exit
        self.thread = threading.Thread(target=self._work, args=(corpus, cfg, start, stop),
                                       daemon=True)
        self.thread.start()

    def _work(self, corpus, cfg, start, stop):
        try:
            for step in range(start, stop):
                parts = [get_batch(corpus, cfg, step, m) for m in range(cfg.grad_accum)]
                if self.shard[1] > 1:
                    rows = process_rows(cfg.batch_size, *self.shard)
                    parts = [tuple(t[rows] for t in p) for p in parts]
                # micro-batches stacked: one copy per tensor
                host = [torch.cat(t) for t in zip(*parts)]
                if self.device.type == "cuda":
                    host = [t.pin_memory() for t in host]
                if not self._put((step, host)):
                    return
        except BaseException as e:  # raised again by get(), so the main thread never waits forever
            self._put((None, e))

    def _put(self, item) -> bool:
        # a short timeout in a loop, not a blocking put: close() must be able to stop a worker
        # that waits on a full queue
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
            raise RuntimeError(f"batches are prefetched in order: asked for step {step}, next is "
                               f"{self.next}")
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
    # 10**6 stands where get_batch has the step, far beyond any run's; the last entries keep the
    # LM windows (2) and probe sets (3) apart from the training stream (1) and from each other
    rng = np.random.default_rng([cfg.seed, 10**6, 2])
    offsets = rng.integers(0, len(corpus.val) - L, cfg.n_eval_lm)
    lm = torch.from_numpy(_windows(corpus.val, offsets, L))
    probe = {}
    gaps = (("p_in", cfg.gap_min, cfg.gap_max), ("p_ood", cfg.ood_gap_min, cfg.ood_gap_max))
    for name, lo, hi in gaps:
        # each set seeded by its own gap range, so that one set does not change with the other's
        r = np.random.default_rng([cfg.seed, 10**6, 3, lo, hi])
        seqs, pos = zip(*(probe_sequence(corpus, corpus.val, r, L, lo, hi)
                          for _ in range(cfg.n_eval_probe)))
        seqs, pos = torch.from_numpy(np.stack(seqs)), torch.tensor(pos)
        probe[name] = (seqs[:, :-1].contiguous(), pos - 1, seqs[torch.arange(len(pos)), pos])
    return EvalSets(lm[:, :-1].contiguous(), lm[:, 1:].contiguous(), probe)


# ----------------------------------------------------------------------------- n-gram baseline
def ngram_baseline(train: np.ndarray, val: np.ndarray, V: int,
                   max_n: int = 4) -> dict[int, float]:
    """Validation cross-entropy (nats/token) of interpolated Witten-Bell n-gram models,
    n = 1..max_n, fitted on the training tokens. Tokens are packed into int64 keys (needs
    V**max_n < 2**63)."""
    assert V ** max_n < 2**63
    tr, va = train.astype(np.int64), val.astype(np.int64)
    # every order is scored on the same positions (those with a full max_n - 1 history), so the
    # numbers of different n compare
    p = np.full(len(va) - (max_n - 1), 1.0 / V)  # order-0: uniform
    out = {}
    for n in range(1, max_n + 1):
        def keys(a, m):  # pack each m-gram ending at positions max_n-1 .. into one int64
            k = np.zeros(len(a) - m + 1, dtype=np.int64)
            for j in range(m):
                k = k * V + a[j : len(a) - m + 1 + j]
            return k
        # sorted unique keys: a lookup is a binary search (searchsorted), no dict of millions
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
        # Witten-Bell: P(w|h) = (c(h w) + N1+(h .) P_lower(w)) / (c(h) + N1+(h .)); an unseen
        # history falls back to the lower order as it is
        p = np.where(denom > 0, (c_hw + t_h * p) / np.maximum(denom, 1), p)
        out[n] = float(-np.log(p).mean())
    return out


# ----------------------------------------------------------------------------- corpus statistics
# token distances between consecutive mentions of one entity
GAP_BINS = (1, 10, 40, 80, 150, 300, 601)


def mention_gaps(version: int, split: str, n: int, seed: int = 0) -> dict:
    """Distances (tokens) between consecutive mentions of the same entity (names, the favourite toy,
    the pet, places and things a thread sets up: the slots storygen marks) in stories 0..n-1: a
    histogram over GAP_BINS, the share of gaps in [80, 300] and of stories with at least one."""
    gen, gaps, hit = storygen.generator(version), [], 0
    for i in range(n):
        long = False
        for pos in gen.story(seed, split, i)[1]["mentions"].values():
            d = np.diff(pos)
            gaps.extend(d.tolist())
            long = long or bool(((d >= 80) & (d <= 300)).any())
        hit += long
    gaps = np.asarray(gaps)
    hist = np.histogram(gaps, bins=GAP_BINS)[0]
    share = float(((gaps >= 80) & (gaps <= 300)).mean())
    return {"bins": list(GAP_BINS), "count": hist.tolist(), "share_80_300": round(share, 4),
            "stories_with_gap_80_300": round(hit / n, 4), "stories": n}


def context_cost(version: int, split: str, n: int, ctx: int, windows: int = 4000,
                 seed: int = 0) -> float:
    """A rough estimate (nats/token) of what a model that sees `ctx` tokens cannot know of stories
    0..n-1: over random windows of ctx tokens, the nats of the slot draws made before the window's
    start and written again inside it, charged once per window (partial guesses of a value from the
    window itself are ignored, and so is the plan of sections)."""
    gen = storygen.generator(version)
    stories = [gen.story(seed, split, i) for i in range(n)]
    starts = np.cumsum([0] + [len(t) + 1 for t, _ in stories])
    cost = 0.0
    for s in np.random.default_rng(seed).integers(0, starts[-1] - ctx, windows):
        k = int(np.searchsorted(starts, s, side="right")) - 1
        at = s - starts[k]
        for nats, pos in stories[k][1]["draws"].values():
            if pos and pos[0] < at and any(at <= p < at + ctx for p in pos):
                cost += nats
    return cost / windows / ctx


def corpus_stats(corpus: Corpus, cfg: Config, baseline_tokens: tuple = ()) -> dict:
    """Types, tokens, story lengths, H_choice (nats per token of the generator's choices, the
    end-of-text token included) and n-gram baselines fitted on the first N training tokens for each
    N in baseline_tokens."""
    tr = corpus.train
    eot = np.flatnonzero(tr == corpus.tok.eot)
    lens = eot - np.concatenate([[0], eot[:-1] + 1])
    q = np.percentile(lens, [5, 50, 95])
    counts = np.bincount(tr, minlength=corpus.vocab_size)
    ranked = np.sort(counts[counts > 0])[::-1]
    zipf = None
    # ranks 11-1000: the first ten (function words, punctuation) bend away from a power law
    if len(ranked) > 1000:
        zipf = np.polyfit(np.log(np.arange(10, 1000) + 1), np.log(ranked[10:1000]), 1)[0]
    out = dict(corpus=corpus.description, vocab=corpus.vocab_size,
               codewords=len(corpus.codeword_ids), train_stories=int(len(eot)),
               train_tokens=int(len(tr)), val_tokens=int(len(corpus.val)),
               distinct_train_types=int(len(ranked)),
               zipf_slope=None if zipf is None else round(float(zipf), 3),
               story_tokens=dict(mean=round(float(lens.mean()), 1), std=round(float(lens.std()), 1),
                                 min=int(lens.min()), p5=int(q[0]), p50=int(q[1]), p95=int(q[2]),
                                 max=int(lens.max())))
    nats = corpus.train_nats
    if nats is not None and not np.isnan(nats).any():  # version 1 has no nats (NaN)
        splits = (("train", nats, tr), ("val", corpus.val_nats, corpus.val))
        out["h_choice"] = {split: round(float(np.sum(n) / len(stream)), 4)
                           for split, n, stream in splits}
        out["story_nats"] = dict(mean=round(float(np.mean(nats)), 1),
                                 std=round(float(np.std(nats)), 1))
    # fitted on the first N training tokens, for each N: the trend with more data
    if baseline_tokens:
        trend = {}
        for n in sorted(baseline_tokens):
            fit = ngram_baseline(tr[:n], corpus.val, corpus.vocab_size)
            trend[str(len(tr[:n]))] = {str(k): round(v, 4) for k, v in fit.items()}
        out["ngram_train_tokens"] = int(max(map(int, trend)))
        out["ngram_val_nats"] = trend[str(out["ngram_train_tokens"])]
        if len(trend) > 1:
            out["ngram_trend"] = trend
    return out


# ----------------------------------------------------------------------------- command line
def main(argv=None):
    ap = add_config_args(Parser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter))
    ap.add_argument("--sample", type=int, default=0,
                    help="print this many training stories (and their nats)")
    ap.add_argument("--baseline", action="store_true",
                    help="fit n-gram baselines (n=1..4): val nats/token")
    ap.add_argument("--baseline_tokens", default="0",
                    help="fit them on the first N training tokens, N comma-separated (0: all; "
                         "default 0)")
    ap.add_argument("--stats", action="store_true",
                    help="with mention distances; write "
                         "results/corpus/synthetic_v<version>_stats.json")
    ap.add_argument("--gap_stories", type=int, default=2000,
                    help="validation stories for mention distances")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        cfg = config_from_args(args)
        try:
            sizes = [int(x) for x in args.baseline_tokens.split(",")]
        except ValueError:
            raise UsageError(f"--baseline_tokens expects comma-separated integers: "
                             f"{args.baseline_tokens!r}")
        if min(sizes) < 0 or args.gap_stories < 1 or args.sample < 0:
            raise UsageError("--baseline_tokens and --sample must be >= 0, --gap_stories >= 1")
        if args.stats and cfg.data not in SYNTHETIC_VERSION:
            raise UsageError(f"--stats needs a synthetic corpus ({', '.join(SYNTHETIC_VERSION)}): "
                             f"{cfg.data}")
        corpus = load_corpus(cfg)
    except UsageError as e:
        fail(str(e))
    tr = corpus.train
    # story ends searched in the head of the stream only: the stories printed are the first ones,
    # and the whole (memory-mapped) corpus would be read for nothing
    eot = np.flatnonzero(tr[: 700 * (args.sample + 1)] == corpus.tok.eot)
    for i, (s, e) in enumerate(list(zip(np.concatenate([[0], eot[:-1] + 1]), eot))[: args.sample]):
        nats = corpus.train_nats[i] if corpus.train_nats is not None else float("nan")
        rate = "" if np.isnan(nats) else f", {nats:.1f} nats ({nats / (e - s + 1):.3f} per token)"
        print(f"--- story {i}: {e - s} tokens{rate}")
        print(corpus.tok.decode(tr[s:e]), end="\n\n")
    stats = corpus_stats(corpus, cfg, tuple(n or len(tr) for n in sizes) if args.baseline else ())
    if args.stats:
        n, version = min(args.gap_stories, cfg.n_val_stories), SYNTHETIC_VERSION[cfg.data]
        stats["mention_gaps"] = mention_gaps(version, "val", n)
        if version >= 2:
            stats[f"context_cost_{cfg.ctx}"] = round(context_cost(version, "val", n, cfg.ctx), 4)
    print(json.dumps(stats, indent=1))
    if args.stats:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "corpus",
                            f"synthetic_v{SYNTHETIC_VERSION[cfg.data]}_stats.json")
        keys = ("data", "train_stories", "n_val_stories", "n_codewords")
        config = {k: getattr(cfg, k) for k in keys}
        write_result(path, "corpus_statistics", config, STATS_DEFINITIONS, stats, t0, argv=argv)
        print(f"wrote {os.path.relpath(path)}")


STATS_DEFINITIONS = {
    "h_choice": "sum over a split's stories of -log P(the generator's choices), divided by the "
                "split's tokens (end-of-text tokens included): an upper bound on the entropy rate, "
                "equal to it where the choices can be read back from the text "
                "(storygen.StoriesV2.parse)",
    "ngram_val_nats": "{n: validation cross-entropy (nats/token)} of interpolated Witten-Bell "
                      "n-gram models of order n fitted on the first ngram_train_tokens training "
                      "tokens; ngram_trend: the same for each number of training tokens fitted",
    "mention_gaps": "token distances between consecutive mentions of one entity in validation "
                    "stories",
    "context_cost_256": "rough estimate (nats/token) of what 256 tokens of context cannot know: "
                        "over random 256-token windows of validation stories, the nats of the slot "
                        "draws made before the window and written again inside it "
                        "(dataset.context_cost); H_choice + this is a rough floor for a model with "
                        "that context",
    "story_tokens": "tokens per story, end-of-text excluded",
    "zipf_slope": "slope of log(count) against log(rank) of the training tokens' types, ranks 11 "
                  "to 1000 (about -1 in natural text)",
}


if __name__ == "__main__":
    main()
