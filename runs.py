"""Run folders: reading config/metrics/status/codewords/snapshots, the one-writer lock, the corpus check.

    python runs.py --run runs/tiny_seed42 --fresh trajectory_pca_uncentered   # exit 0 when up to date
    python runs.py --run runs/tiny_seed42 --fresh NAME NAME ...                # a line each; 0: all up to date

A run folder runs/<name>/ holds config.json, metrics.jsonl, status.json, codewords.json, log.txt,
snapshots/step_XXXXXX.safetensors, snapshot_hashes.json, state_latest.pt and analysis/. Every
reader here
tolerates the leftovers of a kill: an empty or cut JSON file reads as missing, a cut last line of
metrics.jsonl is left out. Every reader validates what it reads: a config must make a valid Config,
a
metrics row must hold numbers, and a snapshot must be the file training wrote (its sha256 in
snapshot_hashes.json, with the hash of the config it trained with; `check_snapshots`). `--fresh
NAME` answers whether <run>/analysis/NAME.json was made by this commit (clean
tree), from the run's current config, on its finished trajectory (run_seed.sh reruns it otherwise).
"""
from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import math
import os
import re
import sys
import threading
import time
from contextlib import nullcontext

import torch
from safetensors import safe_open
from safetensors.torch import save
from tqdm import tqdm

import geometry as geo
from common import (autocast, environment, exact_fp32, finite, pick_device, provenance, write_bytes,
                    write_json)
from config import (RUNTIME_FIELDS, Config, Parser, UsageError, config_from_dict, default_batches,
                    diff_configs, fail)
from dataset import SYNTHETIC_VERSION, corpus_identity, get_batch, load_corpus
from model import GPT, flatten, losses, trunk_keys

SNAPSHOT = re.compile(r"^step_(\d+)\.safetensors$")
HASHES = "snapshot_hashes.json"
RUN_FILES = {"config.json", "metrics.jsonl", "status.json", "codewords.json", "log.txt", "snapshots",
             "state_latest.pt", "training_curves.png", ".lock", "analysis", HASHES}


# ----------------------------------------------------------------------------- readers
def read_json(path: str):
    """The JSON in `path`; None when the file is missing, empty or cut (a write killed half-way)."""
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}")
    try:
        return json.loads(text) if text.strip() else None
    except ValueError:
        return None


def read_metrics(run_dir: str) -> list[dict]:
    """Rows of metrics.jsonl in step order, one per step (the last written); a cut last line is left out."""
    path = os.path.join(run_dir, "metrics.jsonl")
    try:
        with open(path) as f:
            lines = [l for l in f.read().splitlines() if l.strip()]
    except FileNotFoundError:
        return []
    rows = {}
    for i, line in enumerate(lines):
        try:
            r = json.loads(line)
            if not _metrics_row(r):
                raise ValueError
            rows[r["step"]] = r
        except ValueError:
            if i == len(lines) - 1:
                break  # the line a kill cut short
            raise UsageError(f"{path} line {i + 1} is not a metrics row")
    return [rows[s] for s in sorted(rows)]


def _metrics_row(r) -> bool:
    """A row train.py writes: a step >= 0, then numbers (NaN for a diverged loss) or null."""
    number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
    return (isinstance(r, dict) and number(r.get("step")) and isinstance(r["step"], int)
            and r["step"] >= 0 and all(v is None or number(v) for v in r.values()))


def read_status(run_dir: str) -> dict | None:
    st = read_json(os.path.join(run_dir, "status.json"))
    return st if isinstance(st, dict) and "status" in st and "step" in st else None


def read_record(run_dir: str) -> dict | None:
    """config.json of a run: {"config", "env", "corpus", "corpus_identity", "resumes"}; None if unreadable."""
    rec = read_json(os.path.join(run_dir, "config.json"))
    return rec if isinstance(rec, dict) and isinstance(rec.get("config"), dict) else None


def run_config(run_dir: str, **override) -> Config:
    """The Config a run was trained with (with `override`, e.g. cache_dir), validated."""
    if not os.path.isdir(run_dir):
        raise UsageError(f"run folder not found: {run_dir}")
    rec = read_record(run_dir)
    if rec is None:
        raise UsageError(f"no readable config.json in {run_dir} (not a training run folder?)")
    config = dict(rec["config"])
    if (config.get("data") == "synthetic" and "corpus_identity" not in rec
            and str(rec.get("corpus", "")).startswith("synthetic stories v1")):
        config["data"] = "synthetic_v1"  # a run from before corpus version 2 became `synthetic`
    try:
        return config_from_dict({**config, **override}).validate()
    except (TypeError, ValueError) as e:
        raise UsageError(f"{run_dir}/config.json does not hold a valid config ({e})")


def read_codewords(run_dir: str) -> list[int] | None:
    cw = read_json(os.path.join(run_dir, "codewords.json"))
    return cw.get("ids") if isinstance(cw, dict) else None


def config_sha(config: dict) -> str:
    """Short hash of a config dict (what an analysis records of the run it read)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- snapshots
def snapshot_path(run_dir: str, step: int) -> str:
    return os.path.join(run_dir, "snapshots", f"step_{step:06d}.safetensors")


def list_snapshots(run_dir: str) -> dict[int, str]:
    """{step: path} of the snapshot files on disk."""
    d = os.path.join(run_dir, "snapshots")
    if not os.path.isdir(d):
        return {}
    return {int(m.group(1)): os.path.join(d, f) for f in sorted(os.listdir(d)) if (m := SNAPSHOT.match(f))}


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            h.update(chunk)
    return h.hexdigest()


def trained_config_sha(config: dict) -> str:
    """Hash of what a run trained (RUNTIME_FIELDS left out: a resume may change them)."""
    return config_sha({k: v for k, v in config.items() if k not in RUNTIME_FIELDS})


def snapshot_hashes(run_dir: str) -> dict | None:
    """snapshot_hashes.json: {"config_sha": trained_config_sha, "snapshots": {file name: sha256}},
    written by train.py; None for a run folder from before hashes were recorded."""
    rec = read_json(os.path.join(run_dir, HASHES))
    if rec is None:
        return None
    if not (isinstance(rec, dict) and isinstance(rec.get("snapshots"), dict)):
        raise UsageError(f"{run_dir}/{HASHES} is not a hash record of train.py")
    return rec


_RECORDING = threading.Lock()  # snapshot writer threads update one record


def record_hashes(run_dir: str, config: dict | None = None, snapshot: str | None = None,
                  sha: str | None = None):
    """Record the run's trained config (at a start) or the sha256 of a snapshot file (before the
    file is renamed into place, so a snapshot on disk always has its hash)."""
    with _RECORDING:
        rec = snapshot_hashes(run_dir) or {"config_sha": None, "snapshots": {}}
        if config is not None:
            rec["config_sha"] = trained_config_sha(config)
        if snapshot is not None:
            rec["snapshots"][os.path.basename(snapshot)] = sha
        write_json(os.path.join(run_dir, HASHES), rec)


_VERIFIED: dict = {}  # (file identity) -> sha256 already checked in this process


def check_snapshot(path: str, want: str | None, step: int):
    """UsageError unless the snapshot file `path` has the sha256 `want` (hashed once per process
    and file)."""
    if want is None:
        raise UsageError(f"snapshot step {step} ({path}) has no recorded hash in {HASHES}: it was "
                         f"not written by this run's training")
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if _VERIFIED.get(key) != want:
        if file_sha256(path) != want:
            raise UsageError(f"snapshot step {step} ({path}) is not the file training wrote (its "
                             f"sha256 differs from {HASHES}); remove it and rerun train.py to "
                             f"rewrite it")
        _VERIFIED[key] = want


def check_snapshots(run_dir: str, paths: dict[int, str] | None = None) -> str | None:
    """Check the snapshots `paths` ({step: path}; default all on disk) against the run's hash
    record, and config.json against the config recorded with them: a UsageError for a changed,
    replaced or foreign snapshot or an edited config. Returns a short hash of the checked snapshots'
    hashes (what an analysis records), None for a run folder from before hashes were recorded
    (nothing to check)."""
    rec = snapshot_hashes(run_dir)
    if rec is None:
        return None
    cfg = read_record(run_dir)
    recorded = rec.get("config_sha")
    if cfg is not None and recorded and trained_config_sha(cfg["config"]) != recorded:
        raise UsageError(f"{run_dir}/config.json is not the config the run trained with (its hash "
                         f"differs from {HASHES}: edited after training?); restore it")
    paths = list_snapshots(run_dir) if paths is None else paths
    names = {}
    for step, path in sorted(paths.items()):
        names[os.path.basename(path)] = rec["snapshots"].get(os.path.basename(path))
        check_snapshot(path, names[os.path.basename(path)], step)
    return config_sha(names)


def _is_temp(name: str) -> bool:
    """A temp file of a write that a kill cut short."""
    return name.startswith(".tmp") or ".tmp" in name


def remove_leftovers(run_dir: str) -> list[str]:
    """Delete the temp files a kill leaves behind (half-written snapshots, state or JSON files)."""
    gone = []
    for d in (run_dir, os.path.join(run_dir, "snapshots")):
        if os.path.isdir(d):
            for f in os.listdir(d):
                if _is_temp(f):
                    os.remove(os.path.join(d, f))
                    gone.append(f)
    return gone


def trajectory_state(run_dir: str, cfg: Config) -> dict:
    """Where a run stands: status, the snapshot steps its schedule wants, those missing on disk."""
    st = read_status(run_dir)
    have = set(list_snapshots(run_dir))
    end = st["step"] if st and st["status"] != "running" else cfg.steps
    want = [s for s in cfg.snapshot_steps() if s <= end]  # a diverged or stopped run ends between snapshots
    missing = [s for s in want if s not in have]
    finished = bool(st) and st["status"] != "running"
    return dict(status=st["status"] if st else "running", step=st["step"] if st else None, finished=finished,
                complete=finished and not missing, missing=missing, snapshots=len(have))


def check_trajectory(run_dir: str, cfg: Config, partial: bool = False) -> dict:
    """trajectory_state; UsageError for an unfinished run or one with missing snapshots unless `partial`."""
    ts = trajectory_state(run_dir, cfg)
    if partial:
        return dict(ts, partial=not ts["complete"])
    if not ts["finished"]:
        raise UsageError(f"{run_dir} has not finished training (resume it with train.py, or pass --partial "
                         f"to analyse the snapshots it has)")
    if ts["missing"]:
        missing = ts["missing"]
        raise UsageError(f"{run_dir} lacks {len(missing)} of its snapshots (first: step {missing[0]}); "
                         f"resume it with train.py to rewrite them, or pass --partial")
    return dict(ts, partial=False)


# ----------------------------------------------------------------------------- the run folder as a whole
def check_run_dir(cfg: Config) -> Config | None:
    """The config that made cfg.run_dir (None when there is no run yet, or only a killed start);
    a folder made with another config, or one that is not a run folder, is an error."""
    run_dir = cfg.run_dir
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise UsageError(f"{run_dir} is a file, not a run folder")
    if not os.path.isdir(run_dir) or not os.listdir(run_dir):
        return None
    rec = read_record(run_dir)
    if rec is None:
        # a kill's temp files
        if not {f for f in os.listdir(run_dir) if not _is_temp(f)} <= RUN_FILES:
            raise UsageError(f"{run_dir} exists but is not a run folder (no config.json); use another --name")
        state = os.path.join(run_dir, "state_latest.pt")
        if not os.path.exists(state):
            return None  # killed before the first resume point: a fresh start redoes it all, bitwise
        rec = {"config": load_state(state).get("config") or {}}
    try:
        old = config_from_dict(rec["config"])
    except (TypeError, ValueError):
        raise UsageError(f"{run_dir}/config.json does not hold a valid config; use another --name")
    changed = diff_configs(old, cfg)
    if changed:
        raise UsageError(f"{run_dir} was made with another config (differs in: {', '.join(changed)}); "
                         f"use another --name")
    return old


STATE_KEYS = {"model", "optimizer", "step", "rng", "train_sum", "n_sum"}


def load_state(path: str) -> dict:
    """Load state_latest.pt safely (weights_only: a malicious pickle executes nothing) and check its keys."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UsageError(f"{path} is corrupt or not a state file ({type(e).__name__}); "
                         f"remove it to restart the run")
    missing = sorted(STATE_KEYS - set(state)) if isinstance(state, dict) else ["all"]
    if missing:
        raise UsageError(f"{path} is not a state file of train.py (missing: {', '.join(missing)}); "
                         f"remove it to restart the run")
    return state


class RunLock:
    """One writer per run folder: an exclusive flock on <run>/.lock, held while training."""

    def __init__(self, run_dir: str):
        self.path, self.f = os.path.join(run_dir, ".lock"), None

    def __enter__(self):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self.f = open(self.path, "a+")
        try:
            fcntl.flock(self.f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.f.seek(0)
            pid = self.f.read().strip() or "?"
            self.f.close()
            raise UsageError(f"{os.path.dirname(self.path)} is being written by another process (pid {pid}); "
                             f"wait for it or use another --name")
        self.f.truncate(0)
        self.f.write(str(os.getpid()))
        self.f.flush()
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()


# ----------------------------------------------------------------------------- corpus identity
def check_corpus(run_record: dict, cfg: Config):
    """UsageError when the corpus `cfg` rebuilds is not the one recorded in the run's config.json
    (an edited template must never make an analysis replay batches the run did not train on)."""
    recorded = run_record.get("corpus_identity")
    if recorded is None:
        return  # a run folder from before corpus identities were recorded: the codeword check remains
    now = corpus_identity(cfg)
    diff = sorted(k for k in set(recorded) | set(now) if recorded.get(k) != now.get(k))
    if diff:
        raise UsageError(f"the corpus rebuilt for {cfg.run_dir} is not the one it trained on "
                         f"({', '.join(diff)} differ(s): the corpus generator or data changed); "
                         f"check out the commit of the run")


def existing_run(cfg: Config) -> dict | None:
    """{config, metrics, status} of the run folder of `cfg`, None when there is no run yet;
    a folder made with another config is an error."""
    old = check_run_dir(cfg)
    if old is None:
        return None
    return dict(config=old, metrics=read_metrics(cfg.run_dir), status=read_status(cfg.run_dir))


def curves(metrics: list[dict], keys=("step", "val_loss", "p_in", "p_ood")) -> dict:
    """{key: [value per eval]} of metrics rows (for figures and the experiment records)."""
    return {k: [r.get(k) for r in metrics] for k in keys}


def same_finished_run(cfg: Config) -> bool:
    """Whether cfg.run_dir holds a finished run of exactly `cfg` (another config's folder: False)."""
    if read_record(cfg.run_dir) is None or not finished(read_status(cfg.run_dir)):
        return False
    try:
        return check_run_dir(cfg) is not None
    except UsageError:
        return False


def finished(status: dict | None) -> bool:
    return bool(status) and status["status"] != "running"


def lambda_step(config: dict, steps) -> int | None:
    """The run's lambda step when it falls within `steps` (for a marker in figures)."""
    s = config.get("lambda_step")
    return s if s is not None and steps and steps[0] <= s <= steps[-1] else None


def last_finite_step(paths: dict[int, str], keys, end: int | None = None) -> int | None:
    """Latest snapshot step (<= end) whose tensors `keys` are all finite (a diverged run may end in NaN)."""
    for s in sorted((s for s in paths if end is None or s <= end), reverse=True):
        with safe_open(paths[s], framework="pt") as f:
            if all(torch.isfinite(f.get_tensor(k)).all() for k in keys):
                return s
    return None


# ----------------------------------------------------------------------------- trajectory records
RECORD_FILE = "trajectory_record.safetensors"
RECORD_DEFINITION = (
    "gram/<tensor>: float64 (N+1) x (N+1) Gram of the rows theta(t_1) - theta(t_0), ..., theta(t_N) - "
    "theta(t_0), theta(t_0) over the recorded steps t_0 < ... < t_N (geometry.Record: an invertible "
    "linear map of the raw inner products <theta(t_i), theta(t_j)>); groups: tensors of each block and of "
    "the trunk; accumulated in float64 from float32 weights, TF32 off")


def snapshot_fingerprint(run_dir: str) -> list[list]:
    """[[step, size in bytes, sha256 recorded by training or None]] of the run's snapshot files: a record
    made from other files is stale."""
    shas = (snapshot_hashes(run_dir) or {}).get("snapshots", {})
    return [[s, os.path.getsize(p), shas.get(os.path.basename(p))]
            for s, p in sorted(list_snapshots(run_dir).items())]


def save_record(path: str, rec, provenance: dict | None = None):
    """Write a geometry.Record as one safetensors file (atomic): gram/<key> tensors, JSON metadata."""
    meta = dict(format="trajectory record v1", definition=RECORD_DEFINITION, steps=rec.steps,
                shapes={k: list(v) for k, v in rec.shapes.items()}, groups=rec.groups, config=rec.config,
                metrics=rec.metrics, meta=rec.meta, provenance=provenance or {})
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    grams = {f"gram/{k}": g.to(torch.float64).contiguous() for k, g in rec.grams.items()}
    # serialised in memory, then written atomically: a full disk is one line, never a cut file
    write_bytes(path, save(grams, metadata={"record": json.dumps(finite(meta), allow_nan=False)}))


def load_record(path: str):
    """The geometry.Record in `path` (written by save_record); one clear line when it is not one."""
    if not os.path.isfile(path):
        raise UsageError(f"record not found: {path}")
    try:
        with safe_open(path, framework="pt") as f:
            meta = json.loads((f.metadata() or {})["record"])
            grams = {k.split("/", 1)[1]: f.get_tensor(k) for k in f.keys() if k.startswith("gram/")}
    except Exception as e:
        raise UsageError(f"{path} is not a trajectory record ({type(e).__name__}: {e})")
    rec = geo.Record(meta["steps"], meta["shapes"], grams, meta["groups"], meta.get("config"),
                     meta.get("metrics"), meta.get("meta"))
    rec.provenance, rec.path = meta.get("provenance") or {}, path
    return rec


def window_summary(run_dir: str, start: int, end: int | None = None, groups=("trunk",), device="auto",
                   null_draws: int = 1000, progress: bool = False, update_lag: int = 0, record=None) -> dict:
    """geometry.window_geometry of the run's drift from snapshot `start` over the snapshots in (start, end],
    computed from its trajectory record (`record`, or the run's own, made if stale)."""
    rec = record or run_record(run_dir, device, progress)
    Ga = rec.group_grams(start, end, groups)
    return geo.window_geometry(Ga, {g: rec.numel(rec.groups[g]) for g in groups}, start,
                               rec.row_steps(start, end), rec.config, update_lag, null_draws)


def record_info(rec) -> dict:
    """What a result records of the trajectory record it was computed from."""
    return dict(path=getattr(rec, "path", None), steps=len(rec.steps), first=rec.steps[0], last=rec.steps[-1],
                source=rec.meta.get("source"), made_by=(getattr(rec, "provenance", None) or {}).get("git_commit"))


def record_path(run_dir: str) -> str:
    return os.path.join(run_dir, "analysis", RECORD_FILE)


def run_record(run_dir: str, device="auto", progress: bool = False, argv=None, end: int | None = None):
    """The run's record: <run>/analysis/trajectory_record.safetensors when it was made from the run's current
    snapshots, config and metrics, else made now (one streamed pass) and written there. `end`: record only
    the snapshots up to that step (a diverged run's finite ones)."""
    path = record_path(run_dir)
    # the snapshots must be the files training wrote before a record made from them is trusted
    # (a snapshot changed in place keeps its size: the fingerprint alone would not see it)
    check_snapshots(run_dir)
    if os.path.isfile(path):
        try:
            rec = load_record(path)
            if (rec.meta.get("source", {}).get("snapshots") == snapshot_fingerprint(run_dir)
                    and rec.config == (read_record(run_dir) or {}).get("config", {})
                    and rec.metrics == read_metrics(run_dir) and rec.meta.get("end") == end):
                return rec
        except UsageError:
            pass  # unreadable: made again below
    t0 = time.perf_counter()
    traj = Trajectory(run_dir, anchor=min(list_snapshots(run_dir) or [0]), end=end, device=device)
    rec = traj.record(progress)
    rec.meta["end"] = end
    rec.provenance = provenance(t0, argv, traj.device, "trajectory_record.py")
    save_record(path, rec, rec.provenance)
    rec.path = path
    return rec


class Trajectory:
    """Snapshots of one run, read lazily; drift rows x(t) = theta(t) - theta(anchor) for t in row_steps = steps in (anchor, end]."""

    def __init__(self, run_dir: str, anchor: int = 0, end: int | None = None, device="auto"):
        self.run_dir, self.anchor, self.device = run_dir, anchor, pick_device(str(device), float64=True)
        snap_dir = os.path.join(run_dir, "snapshots")
        if not os.path.isdir(snap_dir):
            raise UsageError(f"no snapshots folder in {run_dir} (train the run first)")
        self.paths = list_snapshots(run_dir)
        # each the file training wrote (its recorded hash), config.json the one it used
        check_snapshots(run_dir, self.paths)
        if not self.paths:
            raise UsageError(f"no step_XXXXXX.safetensors files in {snap_dir}")
        self.steps = sorted(self.paths)
        self.shapes = None
        for s in self.steps:  # headers only: every snapshot must hold the same tensors with the same shapes
            try:
                with safe_open(self.paths[s], framework="pt") as f:
                    shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
            except Exception as e:
                raise UsageError(f"cannot read snapshot {self.paths[s]}: {e}")
            if self.shapes is None:
                self.shapes, first = shapes, s
            elif shapes != self.shapes:
                bad = sorted(set(shapes) ^ set(self.shapes)) or [k for k in shapes if shapes[k] != self.shapes[k]]
                raise UsageError(f"snapshot step {s} does not match step {first}: {bad[0]} "
                                 f"{shapes.get(bad[0])} vs {self.shapes.get(bad[0])}")
        self.n_layer = len({k.split(".")[1] for k in self.shapes if k.startswith("blocks.")})
        if not self.n_layer:
            raise UsageError(f"snapshots in {snap_dir} hold no transformer blocks")
        self.groups = {f"block{l}": trunk_keys(self.n_layer, l) for l in range(self.n_layer)}
        self.groups["trunk"] = trunk_keys(self.n_layer)
        self.check_steps([anchor], "anchor")
        self.row_steps = [s for s in self.steps if anchor < s <= (self.steps[-1] if end is None else end)]
        if not self.row_steps:
            raise UsageError(f"no snapshot after anchor step {anchor}" + (f" up to step {end}" if end is not None else ""))
        self.config = (read_record(run_dir) or {}).get("config", {})

    def check_steps(self, steps, what="step"):
        missing = [s for s in steps if s not in self.paths]
        if missing:
            have = ", ".join(map(str, self.steps[:6])) + (f", ... {self.steps[-1]}" if len(self.steps) > 6 else "")
            raise UsageError(f"{what} {missing[0]} has no snapshot in {self.run_dir} (have {have})")

    def numel(self, keys) -> int:
        return sum(math.prod(self.shapes[k]) for k in keys)

    def load(self, step: int, keys, check: bool = True) -> dict[str, torch.Tensor]:
        """fp32 tensors `keys` of the snapshot at `step`, on the device; NaN/inf is an error (`check`)."""
        self.check_steps([step])
        out = {}
        with safe_open(self.paths[step], framework="pt") as f:
            for k in keys:
                if k not in self.shapes:
                    raise UsageError(f"snapshot step {step} has no tensor {k!r}")
                t = f.get_tensor(k).to(self.device, torch.float32)
                if check and not torch.isfinite(t).all():
                    raise UsageError(f"snapshot step {step}: {k} contains NaN/inf ({self.paths[step]})")
                out[k] = t
        return out

    def drift(self, key: str) -> torch.Tensor:
        """Rows x(t) of one tensor, (T x n) float64 on the device."""
        a = self.load(self.anchor, [key], check=False)[key].reshape(-1).double()
        x = torch.empty(len(self.row_steps), a.numel(), dtype=torch.float64, device=self.device)
        for i, s in enumerate(self.row_steps):
            x[i].copy_(self.load(s, [key], check=False)[key].reshape(-1)).sub_(a)
        bad = ~torch.isfinite(x).all(1)  # one check per tensor, not per (step, tensor)
        if bad.any():
            step = self.anchor if bad.all() else self.row_steps[int(bad.nonzero()[0])]
            raise UsageError(f"snapshot step {step}: {key} contains NaN/inf ({self.paths[step]})")
        return x

    def grams(self, keys=None, progress=False, anchor_row=False) -> dict[str, torch.Tensor]:
        """One pass over the snapshots: {key: T x T float64 Gram (CPU)} for `keys` (default: trunk).
        With `anchor_row` the Grams are (T+1) x (T+1): the rows x(t) and, last, theta(anchor) itself
        (`split_anchor` takes them apart), so the weight-decay decomposition needs no second pass."""
        out = {}
        with tqdm(geo.canonical(keys or self.groups["trunk"]), desc="gram", disable=not progress, leave=False) as bar:
            for k in bar:  # leave=False: an error line is never printed under a half-drawn bar
                x = self.drift(k)
                if anchor_row:
                    x = torch.cat([x, self.load(self.anchor, [k], check=False)[k].reshape(1, -1).double()])
                out[k] = (x @ x.T).cpu()
        return out

    def directions(self, keys, C: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """v_j = X^T C[:, j] over `keys` (second streamed pass), as fp32 dicts on the device."""
        C = C.to(self.device, torch.float64)
        out = [{} for _ in range(C.shape[1])]
        for k in geo.canonical(keys):
            V = self.drift(k).T @ C
            for j in range(C.shape[1]):
                out[j][k] = V[:, j].reshape(self.shapes[k]).float()
        return out

    def metrics(self) -> list[dict]:
        return read_metrics(self.run_dir)


    def record(self, progress: bool = False) -> "geo.Record":
        """The run's trajectory record (geometry.Record) from one streamed pass over every snapshot."""
        steps = [self.anchor] + self.row_steps
        keys = self.groups["trunk"]
        grams = geo.record_grams(lambda s, k: self.load(s, [k], check=False)[k], steps, keys, self.device,
                                 progress)
        rec = read_record(self.run_dir) or {}
        meta = dict(source=dict(kind="run folder", run=os.path.basename(os.path.normpath(self.run_dir)),
                                snapshots=snapshot_fingerprint(self.run_dir)),
                    corpus_identity=rec.get("corpus_identity"), corpus=rec.get("corpus"))
        return geo.Record(steps, {k: self.shapes[k] for k in keys}, grams, self.groups, self.config,
                          read_metrics(self.run_dir), meta)


# ----------------------------------------------------------------------------- analyses: loading a run
def open_trajectory(run: str, anchor: int = 0, device="auto", partial: bool = False):
    """(geometry.Trajectory of the run's snapshots from `anchor`, trajectory state): an unfinished run or
    missing snapshots are an error unless `partial` (the analyses' --partial)."""
    if not os.path.isdir(run):
        raise UsageError(f"run folder not found: {run}")
    traj = Trajectory(run, anchor=anchor, device=device)  # checks the snapshots (check_snapshots)
    rec = read_record(run)
    if rec is None:
        if not partial:
            raise UsageError(f"no readable config.json in {run}: not a training run (pass --partial to "
                             f"analyse the snapshots anyway)")
        return traj, dict(partial=True, config_sha=None)
    read_metrics(run)  # a garbage row stops every analysis alike
    return traj, run_state(run, run_config(run), partial)


def open_analysis(args, argv, check=None):
    """(record, trajectory or None, state, device) of an analysis that takes --run or --record: the record
    alone (no snapshots; CPU), or the run's validated snapshots and its record, made or reused
    (run_record) once `check(row_steps)` has accepted the snapshots' steps, so that bad input writes
    nothing."""
    if getattr(args, "record", None):
        return load_record(args.record), None, dict(record=os.path.abspath(args.record)), "cpu"
    traj, state = open_trajectory(args.run, args.anchor, args.device, args.partial)
    if check is not None:
        check(traj.row_steps)
    return run_record(args.run, args.device, sys.stderr.isatty(), argv), traj, state, traj.device


def load_run(run: str, anchor: int = 0, cache_dir: str | None = None, device="auto", partial: bool = False):
    """(traj, cfg, corpus, state) of an analysis that replays batches: the run's validated snapshots,
    its Config (cache_dir overridable) and its corpus, checked against the recorded corpus identity
    and codewords.json."""
    if not os.path.isdir(run):
        raise UsageError(f"run folder not found: {run}")
    cfg = run_config(run, **({"cache_dir": cache_dir} if cache_dir else {}))
    traj, state = open_trajectory(run, anchor, device, partial)
    record, synthetic = read_record(run), cfg.data in SYNTHETIC_VERSION
    if synthetic:  # its identity costs a few stories: a changed generator stops before minutes of generation
        check_corpus(record, cfg)
    try:
        corpus = load_corpus(cfg)
    except UsageError as e:
        raise UsageError(f"cannot load the data of {run}: {e}")
    except Exception as e:  # e.g. the corpus generator missing, or an unreadable cache
        raise UsageError(f"cannot load the data of {run}: {type(e).__name__}: {e}")
    if not synthetic:  # a text corpus is identified by its token cache, which loading builds
        check_corpus(record, cfg)
    ids = read_codewords(run)
    if ids is not None and ids != [int(i) for i in corpus.codeword_ids]:
        raise UsageError(f"the corpus rebuilt from {run}/config.json is not the one the run trained on "
                         f"(codewords differ from codewords.json: corpus generator or tokenizer changed?)")
    return traj, cfg, corpus, state


def load_model(traj, cfg: Config, corpus, step: int, model=None):
    """The run's model (uncompiled) with the weights of snapshot `step`, on traj.device."""
    model = model or GPT.from_config(cfg, corpus.vocab_size).to(traj.device)
    try:
        model.load_state_dict(traj.load(step, list(traj.shapes)))
    except RuntimeError as e:
        raise UsageError(f"snapshot step {step} does not fit the model built from config.json and the corpus "
                         f"(vocabulary {corpus.vocab_size}): {str(e).splitlines()[-1].strip()[:160]}")
    return model


def replay_pairs(cfg: Config, step: int, n: int, batch_size: int) -> list[tuple[int, int]]:
    """The (step, micro) pairs of the run's micro-batches that hold the first n * batch_size
    sequences of the training stream from `step`: (step, 0), ..., (step, grad_accum - 1),
    (step + 1, 0), ..."""
    count = -(-n * batch_size // cfg.batch_size)  # every micro-batch holds cfg.batch_size sequences
    return [(step + i // cfg.grad_accum, i % cfg.grad_accum) for i in range(count)]


def replay_batches(corpus, cfg: Config, step: int, n: int, batch_size: int):
    """n mini-batches of batch_size sequences: the training stream from step on, i.e. the run's
    micro-batches get_batch(corpus, cfg, s, m) in the order (step, 0), ..., (step, grad_accum - 1),
    (step + 1, 0), ..., concatenated and cut into consecutive mini-batches (the first n * batch_size
    sequences). Returns (batches, used): used = the (step, micro) pairs read, in order."""
    used = replay_pairs(cfg, step, n, batch_size)
    xs, ys, ps = zip(*(get_batch(corpus, cfg, s, m) for s, m in used))
    x, y, p = (torch.cat(t)[: n * batch_size] for t in (xs, ys, ps))
    return [(x[i : i + batch_size], y[i : i + batch_size], p[i : i + batch_size])
            for i in range(0, n * batch_size, batch_size)], used


def loss_fn(which, lam: float, device, fp32: bool):
    """loss_fn(model, batch) for geometry.batch_gradients: model.losses(...)[which] (0 combined, 1 LM,
    2 probe), in the run's bf16 autocast on CUDA unless `fp32`. A tuple `which` gives those losses of one
    forward (the probe loss from the answer rows alone, model.losses' probe_rows), so that batch_gradients
    returns their gradients for the cost of about one forward and backward."""
    ctx = nullcontext if fp32 else (lambda: autocast(device))
    many = isinstance(which, tuple)

    def f(model, batch):
        with ctx():
            out = losses(model, *(t.to(device) for t in batch), lam, probe_rows=many)
        return tuple(out[i] for i in which) if many else out[which]
    return f


def batch_record(cfg: Config, used) -> dict:
    """Which micro-batches a snapshot's mini-batches came from; trained_on: all are steps the run took."""
    return {"from": list(used[0]), "to": list(used[-1]), "micro_batches": len(used),
            "trained_on": used[-1][0] < cfg.steps}


REPLAY_RULE = ("the run's training stream from step t on: micro-batches (t, 0), ..., (t, grad_accum-1), "
               "(t+1, 0), ... (dataset.get_batch, a pure function of seed, step, micro) concatenated and cut "
               "into consecutive "
               "mini-batches; trained_on = false when the stream reaches steps the run never took")
REPLAY_CONFIG = ("seed", "data", "steps", "batch_size", "grad_accum", "lambda_probe", "lambda_probe_late",
                 "lambda_step", "n_layer", "d_model")


def replay_record(cfg: Config, n: int, batch_size: int, per_step: dict) -> dict:
    """The "batches" and "config" entries of a replaying analysis' JSON."""
    return dict(batches=dict(n=n, batch_size=batch_size, run_batch_size=cfg.batch_size,
                             grad_accum=cfg.grad_accum, rule=REPLAY_RULE, per_step=per_step),
                config={k: getattr(cfg, k) for k in REPLAY_CONFIG})


# ----------------------------------------------------------------------------- gradient records
GRADIENT_RECORD_FILE = "gradient_record.safetensors"
# a record is made with at least the Fisher analysis's defaults, so that one replay serves both
# analyses: the gradient analysis's 16 mini-batches are the first 16 of the Fisher's 32, and K
# random draws of one seed are the first K of any larger number
GRADIENT_BATCHES, GRADIENT_K = 32, 10
GRADIENT_RECORD_DEFINITION = (
    "at each gradient step: M mini-batch gradients of the LM loss (rows 0..M-1) and of the probe "
    "loss (rows M..2M-1) at theta(t) on the replayed training stream, trunk parameters; per group "
    "their Gram (gram/<g>), their inner products with the trajectory record's rows theta(t_1) - "
    "theta(t_0), ..., theta(t_N) - theta(t_0), theta(t_0) (basis/<g>) and with K raw Gaussian "
    "draws of geometry.gaussian_draws(seed) over the group's tensors (random/<g>), the draws' Gram "
    "(zz/<g>) and their inner products with the rows (zb/<g>); float32 gradients, float64 "
    "products, TF32 off")


def gradient_record_path(run_dir: str) -> str:
    return os.path.join(run_dir, "analysis", GRADIENT_RECORD_FILE)


def save_gradient_record(path: str, grec):
    """Write a geometry.GradientRecord as one safetensors file (atomic): tensors, JSON metadata."""
    meta = dict(format="gradient record v1", definition=GRADIENT_RECORD_DEFINITION,
                steps=grec.steps, grad_steps=grec.grad_steps, groups=grec.groups, M=grec.M,
                K=grec.K, meta=grec.meta)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    data = save({k: v.contiguous() for k, v in grec.t.items()},
                metadata={"gradient_record": json.dumps(finite(meta), allow_nan=False)})
    write_bytes(path, data)  # serialised in memory, then written atomically


def load_gradient_record(path: str):
    """The geometry.GradientRecord in `path` (save_gradient_record); one clear line when it is
    not one."""
    if not os.path.isfile(path):
        raise UsageError(f"gradient record not found: {path}")
    try:
        with safe_open(path, framework="pt") as f:
            meta = json.loads((f.metadata() or {})["gradient_record"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        grec = geo.GradientRecord(meta["steps"], meta["grad_steps"], meta["groups"], meta["M"],
                                  meta["K"], tensors, meta.get("meta"))
    except UsageError as e:
        raise UsageError(f"{path}: {e}")
    except Exception as e:
        raise UsageError(f"{path} is not a gradient record ({type(e).__name__}: {e})")
    grec.path = path
    return grec


def check_records(rec, grec):
    """UsageError unless the gradient record was made on the trajectory record's rows and groups."""
    if grec.steps != rec.steps or grec.groups != rec.groups:
        raise UsageError(f"the gradient record {getattr(grec, 'path', '')} was not made on the rows"
                         f" of the trajectory record {getattr(rec, 'path', '')} (steps or groups"
                         " differ)")
    if grec.meta.get("config") != rec.config:
        raise UsageError("the gradient record and the trajectory record come from runs with "
                         "different configs")


@torch.no_grad()
def probe_answers(model, batch, device, fp32: bool) -> tuple[int, int]:
    """(probe answers, wrong ones) in a mini-batch: sequences with a probe, and those whose greedy
    argmax at the answer position is not the codeword (the batches whose probe gradient is
    large)."""
    x, y, pos = (t.to(device) for t in batch)
    has = pos >= 0
    if not has.any():
        return 0, 0
    with (nullcontext() if fp32 else autocast(device)):
        # the head at the answer positions only
        guess = model(x[has], positions=pos[has]).argmax(-1)
    rows = torch.arange(int(has.sum()), device=device)
    return int(has.sum()), int((guess != y[has][rows, pos[has]]).sum())


def precision_of(device, fp32: bool) -> str:
    return "fp32" if fp32 or torch.device(device).type != "cuda" else "bf16 autocast"


def holding_device(dev: torch.device, D: int, rows: int, R: int, K: int) -> torch.device:
    """Where the gradient record's rows and draws are held: the device when they fit beside one
    snapshot's R gradient rows (float32, twice while stacked) with a quarter of its memory to spare
    for the model's backward, else the host (a larger model: geometry.gradient_products then moves
    one block's columns at a time, about rows x D x 8 bytes over the bus per snapshot)."""
    if dev.type != "cuda":
        return dev
    need = 8 * D * (rows + 2 * K) + 4 * D * R * 2
    free, total = torch.cuda.mem_get_info(dev)
    return dev if need < free - total / 4 else torch.device("cpu")


def make_gradient_record(traj, cfg: Config, corpus, rec, steps, M: int, batch_size: int, K: int,
                         seed: int, fp32: bool):
    """One replay: at each step of `steps` the LM and probe gradients of M mini-batches
    (replay_batches), reduced to their inner products with each other, with the trajectory
    record's rows and with K random draws (geometry.GradientRecord). Holds the rows ((N+1) x D
    float64: 10 GB for the paper trunk) and the draws (2 x K x D float64) on the device, or on the
    host where they do not fit there (holding_device)."""
    dev, keys = traj.device, rec.groups["trunk"]
    exact_fp32()
    slices = geo.group_slices(traj)
    theta0 = flatten(traj.load(rec.steps[0], keys), keys).double()
    hold = holding_device(dev, theta0.numel(), len(rec.steps), 2 * M, K)
    B = torch.empty(len(rec.steps), theta0.numel(), dtype=torch.float64, device=hold)
    for j, s in enumerate(rec.steps[1:]):  # differences of float32 weights: exact in float64
        B[j] = flatten(traj.load(s, keys), keys).double() - theta0
    B[-1] = theta0
    Z = {g: torch.stack([flatten(z, rec.groups[g]) for z in geo.gaussian_draws(
        {k: traj.shapes[k] for k in rec.groups[g]}, K, seed)]).to(hold) for g in slices}
    t = {}
    for g, sl in slices.items():
        t[f"zz/{g}"], t[f"zb/{g}"] = (Z[g] @ Z[g].T).cpu(), (Z[g] @ B[:, sl].T).cpu()
    parts, lam, probe, model = {g: [] for g in slices}, {}, {}, None
    with tqdm(steps, desc="gradient record", disable=not sys.stderr.isatty(), leave=False) as bar:
        for s in bar:
            model = load_model(traj, cfg, corpus, s, model)
            batches, _ = replay_batches(corpus, cfg, s, M, batch_size)
            lam[str(s)] = cfg.lambda_at(s)
            counts = [probe_answers(model, b, dev, fp32) for b in batches]
            probe[str(s)] = dict(n_probe=[c[0] for c in counts], n_wrong=[c[1] for c in counts])
            G = geo.batch_gradients(model, batches, loss_fn((1, 2), lam[str(s)], dev, fp32), keys)
            A = torch.cat(G)  # (2M, D): LM rows, then probe rows
            del G
            for g, prods in geo.gradient_products(A, slices, B, Z).items():
                parts[g].append(prods)
            del A
    for g, ps in parts.items():
        for name, i in (("gram", 0), ("basis", 1), ("random", 2)):
            t[f"{name}/{g}"] = torch.stack([p[i] for p in ps])
    run = read_record(traj.run_dir) or {}
    meta = dict(batch_size=batch_size, run_batch_size=cfg.batch_size, grad_accum=cfg.grad_accum,
                seed=seed, precision=precision_of(dev, fp32), steps=rec.steps,
                config=run.get("config", {}), corpus_identity=run.get("corpus_identity"),
                snapshots=snapshot_fingerprint(traj.run_dir),
                source=dict(kind="run folder",
                            run=os.path.basename(os.path.normpath(traj.run_dir))),
                **{"lambda": lam}, probe=probe)
    return geo.GradientRecord(rec.steps, steps, rec.groups, M, K, t, meta)


def run_gradient_record(traj, cfg: Config, corpus, rec, steps, n: int, batch_size: int, K: int,
                        seed: int | None, fp32: bool, argv=None):
    """The run's gradient record for `steps`, n mini-batches of batch_size and K draws of `seed`:
    <run>/analysis/gradient_record.safetensors when it was made from the run's current snapshots
    and config on the trajectory record's rows, with this batch size, seed and precision, and
    holds those steps, batches and draws (seed None: any seed, made with 0); else made now (one
    replay; with what the old one held as well) and written there."""
    t0, path = time.perf_counter(), gradient_record_path(traj.run_dir)
    config = (read_record(traj.run_dir) or {}).get("config", {})
    want = dict(snapshots=snapshot_fingerprint(traj.run_dir), config=config, steps=rec.steps,
                batch_size=batch_size, seed=seed, precision=precision_of(traj.device, fp32))
    # at least the Fisher's default mini-batches and draws: one record serves both analyses
    steps, K = sorted(steps), max(K, GRADIENT_K)
    n = max(n, default_batches(cfg.preset, GRADIENT_BATCHES))
    try:
        old = load_gradient_record(path) if os.path.isfile(path) else None
    except UsageError:
        old = None  # unreadable: made again below
    if seed is None:  # no draws used: any seed will do
        want.pop("seed")
        seed = old.meta.get("seed", 0) if old is not None else 0
    if old is not None and all(old.meta.get(k) == v for k, v in want.items()):
        if set(steps) <= set(old.grad_steps) and old.M >= n and old.K >= K:
            return old
        steps, n, K = sorted(set(steps) | set(old.grad_steps)), max(n, old.M), max(K, old.K)
    grec = make_gradient_record(traj, cfg, corpus, rec, steps, n, batch_size, K, seed, fp32)
    grec.meta["provenance"] = provenance(t0, argv, traj.device, "gradient record")
    save_gradient_record(path, grec)
    grec.path = path
    return grec


def _from_files(args, select, K: int, seed: int | None, batches: int):
    """open_gradient_analysis from --record and --gradient-record."""
    if not (args.record and args.gradient_record):
        raise UsageError("--record and --gradient-record go together (the two records of one run)")
    rec, grec = load_record(args.record), load_gradient_record(args.gradient_record)
    check_records(rec, grec)
    rec.check_steps([args.anchor], "anchor")

    def check(steps, what="step"):
        missing = [s for s in steps if s not in grec.index]
        if missing:
            raise UsageError(f"{what} {missing[0]} has no gradients in {args.gradient_record} (it "
                             f"has steps {', '.join(map(str, grec.grad_steps))})")
    steps, groups = select(rec.steps, check, rec.groups)
    check(steps)
    m = grec.meta
    args.batch_size = args.batch_size or m["batch_size"]
    cfg = config_from_dict(m["config"])
    args.batches = args.batches or default_batches(cfg.preset, batches)
    for what, have, asked in (("mini-batches", grec.M, args.batches), ("random draws", grec.K, K)):
        if asked > have:
            raise UsageError(f"{args.gradient_record} has {have} {what} per step, {asked} asked")
    for what, have, asked in (("--batch-size", m["batch_size"], args.batch_size),
                              ("--seed", m["seed"], seed)):
        if asked is not None and have != asked:
            raise UsageError(f"{args.gradient_record} was made with {what} {have}, not {asked}")
    if args.fp32 and m["precision"] != "fp32":
        raise UsageError(f"{args.gradient_record} holds {m['precision']} gradients, not fp32 ones")
    state = dict(record=os.path.abspath(args.record),
                 gradient_record=os.path.abspath(args.gradient_record))
    return rec, grec, cfg, (steps, groups), state, "cpu", m["source"]["run"]


def open_gradient_analysis(args, argv, select, K: int = 0, seed: int | None = None,
                           batches: int = GRADIENT_BATCHES):
    """(rec, grec, cfg, (steps, groups), state, device, run name) of an analysis computed from a
    trajectory record and a gradient record: the files --record and --gradient-record (no
    snapshots; CPU), or the run folder's validated snapshots and corpus with its records, made or
    reused (run_record, run_gradient_record). `select(snapshot steps, check, groups)` -> (the
    steps to analyse, the groups), before any record is made; check(steps, what) stops at a step
    that has no snapshot (or, from files, no gradients). K random draws of `seed` (None: any
    seed, no draws used). Sets args.batch_size and args.batches (default_batches of `batches`)
    when they were left out."""
    if args.record or args.gradient_record:
        return _from_files(args, select, K, seed, batches)
    traj, cfg, corpus, state = load_run(args.run, args.anchor, args.cache_dir, args.device,
                                        args.partial)
    args.batch_size = args.batch_size or cfg.batch_size
    args.batches = args.batches or default_batches(cfg.preset, batches)
    steps, groups = select(traj.steps, traj.check_steps, traj.groups)
    rec = run_record(args.run, args.device, sys.stderr.isatty(), argv)
    grec = run_gradient_record(traj, cfg, corpus, rec, steps, args.batches, args.batch_size, K,
                               seed, args.fp32, argv)
    run = os.path.basename(os.path.normpath(args.run))
    return rec, grec, cfg, (steps, groups), state, traj.device, run


# ----------------------------------------------------------------------------- analysis freshness
def analysis_freshness(run_dir: str, name: str, env: dict | None = None) -> str | None:
    """None when <run>/analysis/<name>.json is up to date, else why it is not. `env`: common.environment()
    when the caller already has it."""
    rec = read_json(os.path.join(run_dir, "analysis", f"{name}.json"))
    if not isinstance(rec, dict):
        return "not made yet"
    pv, run = rec.get("provenance") or {}, rec.get("run_state") or {}
    env, cfg = env or environment(), read_record(run_dir)
    if pv.get("git_commit") != env["git_commit"] or pv.get("git_dirty") or env["git_dirty"]:
        dirty = lambda d: " (dirty)" if d else ""  # noqa: E731
        return (f"made by commit {str(pv.get('git_commit'))[:10]}{dirty(pv.get('git_dirty'))}, "
                f"code is {env['git_commit'][:10]}{dirty(env['git_dirty'])}")
    if cfg is None or run.get("config_sha") != config_sha(cfg["config"]):
        return "made from another config of the run"
    if run.get("partial", True):
        return "made on a partial trajectory"
    try:
        snaps = check_snapshots(run_dir)
    except UsageError as e:
        return str(e)
    if "snapshots_sha" in run and run["snapshots_sha"] != snaps:
        return "made from other snapshots (retrained since?)"
    return None


def run_state(run_dir: str, cfg: Config, partial: bool = False) -> dict:
    """What an analysis records of the run it read (for the freshness check): its state and config hash."""
    rec = read_record(run_dir) or {"config": cfg.to_dict()}
    return dict(check_trajectory(run_dir, cfg, partial), config_sha=config_sha(rec["config"]),
                snapshots_sha=check_snapshots(run_dir))


def main(argv=None):
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="run folder")
    p.add_argument("--fresh", required=True, nargs="+", metavar="NAME",
                   help="analysis names: a line 'NAME: up to date' or 'NAME: why not' each, in order; "
                        "exit 0 if every analysis/NAME.json is up to date, 1 if not")
    args = p.parse_args(argv)
    try:
        if not os.path.isdir(args.run):
            raise UsageError(f"run folder not found: {args.run}")
        env = environment()
        whys = [analysis_freshness(args.run, name, env) for name in args.fresh]
    except UsageError as e:
        fail(str(e))
    for name, why in zip(args.fresh, whys):
        print(f"{name}: {why or 'up to date'}")
    raise SystemExit(0 if all(w is None for w in whys) else 1)


if __name__ == "__main__":
    main()
