"""Typed configuration: one dataclass whose defaults are the paper run.

    python train.py --seed 42                     # paper preset
    python train.py --preset tiny --lr 3e-3       # CPU preset with an override

Every field can be overridden on the command line as `--field value` (dashes or underscores);
the value must parse as the type of the default, and an unknown field is an error.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
import sys
from dataclasses import dataclass, fields


class UsageError(Exception):
    """Bad input from the user: reported as one line with exit code 2 (see `fail`)."""


def fail(msg: str, code: int = 2):
    """Print one clear line to stderr and exit (no traceback)."""
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(code)


# `--data` name -> version of the story generator (storygen). A version's stories never change: a
# change of the generator's output is a new version (the corpus identity also hashes its data
# files). It names Config values, so it lives here and dataset.py builds on it (config.py imports
# nothing of the project, which keeps it at the bottom of the import graph).
SYNTHETIC_VERSION = {"synthetic": 2, "synthetic_v1": 1}


@dataclass
class Config:
    # --- run ---
    preset: str = "paper"          # "paper" or "tiny"; set first, other overrides apply on top
    seed: int = 42                 # seeds init, data order, probe codewords and eval sets
    name: str = ""                 # run folder under out_dir; "" -> seed{seed} / tiny_seed{seed}
    out_dir: str = "runs"          # parent folder of run folders
    device: str = "auto"           # auto | cuda | mps | cpu
    compile: bool = True           # torch.compile the training model when available (CUDA only)
    fuse_micro: bool = True        # one forward/backward of all grad_accum micro-batches (the same
                                   # numbers as accumulating them; more activation memory); false
                                   # for small GPUs
    ce_chunks: int = 0             # > 0: the loss in this many token chunks, the logits never kept
                                   # (large vocabularies)
    compile_eval: bool = False     # torch.compile the evaluation too (CUDA; its compilation pays
                                   # off only over many evals)
    # attention kernels on CUDA: auto | flash | cudnn | efficient (the same math)
    sdpa: str = "auto"
    fused_ce: str = "auto"         # head + cross-entropy of the training loss on CUDA: auto
                                   # (cut-cross-entropy if it works) | cce | liger | off (plain)
    progress: bool = True          # tqdm bar
    # deterministic kernels on CUDA (PyTorch's deterministic algorithms, a fixed cuBLAS
    # workspace, deterministic cuDNN): run-to-run equal, at some cost in speed
    deterministic: bool = False
    # --- data ---
    # synthetic (corpus v2) | synthetic_v1 | tinystories | a .txt/.jsonl/.parquet file
    data: str = "synthetic"
    n_train_stories: int = 0       # train-split stories; 0: 1,000,000 generated (v2: 394M tokens,
                                   # more than the paper run's 328M, so no story is seen twice) or
                                   # the first 200,000 of a text corpus
    n_val_stories: int = 5_000     # stories in the validation split
    cache_dir: str = ".cache"      # tokenized corpora (uint16 .npy), built once
    p_probe: float = 0.10          # probability that a training sequence is a probe sequence
    n_codewords: int = 512         # probe codewords (single tokens)
    gap_min: int = 5               # training/in-distribution probe gap, U{gap_min..gap_max}
    gap_max: int = 30
    ood_gap_min: int = 80          # out-of-distribution probe gap for p_ood
    ood_gap_max: int = 200
    n_eval_probe: int = 2000       # probe sequences per eval set (p_in, p_ood)
    n_eval_lm: int = 512           # fixed validation LM windows
    # --- model ---
    size: str = "1x"               # 1x (the preset's model), 3x or 8x: the four fields below
    n_layer: int = 8
    d_model: int = 512
    n_head: int = 16
    d_ff: int = 2048
    ctx: int = 256                 # context length (sequences are ctx + 1 tokens)
    # --- optimizer ---
    optimizer: str = "adamw"       # adamw | sgd
    lr: float = 1e-3               # peak learning rate
    beta1: float = 0.9             # AdamW beta1
    beta2: float = 0.95            # AdamW beta2 (0 allowed: the beta2 ablation)
    eps: float = 1e-8
    weight_decay: float = 0.5      # on every parameter except LayerNorm
    wd_mode: str = "decoupled"     # decoupled (AdamW / SGDW by hand) | l2 (added to the gradient)
    momentum: float = 0.0          # SGD momentum
    nesterov: bool = False         # SGD Nesterov momentum
    grad_clip: float = 1.0         # global norm clip; 0 disables
    # --- schedule ---
    steps: int = 10_000
    warmup: int = 1_500            # linear warmup steps, then cosine to the end of the run
    min_lr_frac: float = 0.1       # cosine is clamped at this fraction of the peak
    batch_size: int = 64           # sequences per micro-batch
    grad_accum: int = 2            # micro-batches per step (effective batch 128)
    lambda_probe: float = 2.0      # probe loss weight before lambda_step
    lambda_probe_late: float = 4.0 # probe loss weight from lambda_step on
    lambda_step: int = 4_000
    # --- eval and snapshots ---
    eval_every: int = 200          # eval at step 0 and every eval_every steps (and at the end)
    snapshot_every: int = 200      # snapshot at step 0 and every snapshot_every steps
    # extra "start:end:every" segments, comma-separated, e.g. "600:2000:50"
    snapshot_extra: str = ""
    # write state_latest.pt (resume point) every this many steps and at the end
    state_every: int = 1_000
    # "" or "step:max_val:min_best_p_ood": stop at `step` if val > max_val and best p_ood < min
    # (run C'); checked only at an eval step, where both numbers exist
    stop_rule: str = ""
    # safetensors snapshot to start from instead of a fresh init (reheating)
    init_from: str = ""
    data_offset: int = 0           # step t trains on the batches of data step t + data_offset
                                   # (reheating continues the data stream of its source run
                                   # instead of replaying it)

    @property
    def run_dir(self) -> str:
        size = "" if self.size == "1x" else f"{self.size}_"
        name = self.name or (f"{size}seed{self.seed}" if self.preset == "paper"
                             else f"{self.preset}_{size}seed{self.seed}")
        return os.path.join(self.out_dir, name)

    @property
    def train_stories(self) -> int:
        return self.n_train_stories or (1_000_000 if self.data in SYNTHETIC_VERSION else 200_000)

    def lambda_at(self, step: int) -> float:
        return self.lambda_probe if step < self.lambda_step else self.lambda_probe_late

    def snapshot_steps(self) -> list[int]:
        """Sorted steps at which weights are saved: 0, every snapshot_every, extra segments,
        last."""
        every = self.snapshot_every
        steps = set(range(0, self.steps + 1, every)) if every > 0 else {0}
        for seg in filter(None, self.snapshot_extra.split(",")):
            a, b, k = (int(x) for x in seg.split(":"))
            steps.update(range(a, min(b, self.steps) + 1, k))
        steps.add(self.steps)  # the final weights, whatever the spacing
        return sorted(s for s in steps if 0 <= s <= self.steps)

    def eval_steps(self) -> list[int]:
        return sorted(set(range(0, self.steps + 1, self.eval_every)) | {self.steps})

    def validate(self) -> "Config":
        """UsageError for a value that cannot make a run; called before anything is written."""
        # f.type is the string "float" under `from __future__ import annotations`
        bad_float = [f.name for f in fields(self) if f.type in ("float", float)
                     and not math.isfinite(getattr(self, f.name))]
        if bad_float:  # inf or nan parse as floats but make no run
            name = bad_float[0]
            raise UsageError(f"{name} must be a finite number, got {getattr(self, name)}")
        checks = [
            (_plain_name(self.name), f"name must be a plain folder name (letters, digits, . _ + = "
                                     f"-; not starting with a dot), got {self.name!r}"),
            (self.d_model > 0 and self.n_head > 0 and self.d_ff > 0,
             "d_model, n_head and d_ff must be > 0"),
            (self.preset in PRESETS,
             f"unknown preset {self.preset!r} (choose from {', '.join(PRESETS)})"),
            (self.optimizer in ("adamw", "sgd"),
             f"optimizer must be adamw or sgd, got {self.optimizer!r}"),
            (self.wd_mode in ("decoupled", "l2"),
             f"wd_mode must be decoupled or l2, got {self.wd_mode!r}"),
            (self.n_head > 0 and self.d_model % self.n_head == 0,
             f"d_model ({self.d_model}) must be divisible by n_head ({self.n_head})"),
            (self.lambda_probe >= 0 and self.lambda_probe_late >= 0 and self.lambda_step >= 0,
             "lambda_probe, lambda_probe_late and lambda_step must be >= 0"),
            (self.steps > 0 and self.batch_size > 0 and self.grad_accum > 0,
             "steps, batch_size, grad_accum must be > 0"),
            (0 <= self.p_probe <= 1, "p_probe must be in [0, 1]"),
            # beta < 1: the bias corrections 1 - beta^t would otherwise be 0
            (self.lr > 0 and 0 <= self.beta1 < 1 and 0 <= self.beta2 < 1 and self.eps > 0,
             "need lr > 0, eps > 0, beta1 and beta2 in [0, 1)"),
            (self.momentum >= 0 and self.weight_decay >= 0 and 0 <= self.min_lr_frac <= 1,
             "need momentum >= 0, weight_decay >= 0, min_lr_frac in [0, 1]"),
            (self.data_offset >= 0 and self.warmup >= 0, "data_offset and warmup must be >= 0"),
            (0 < self.gap_min <= self.gap_max and 0 < self.ood_gap_min <= self.ood_gap_max,
             "gap ranges must be positive and ordered"),
            # 24 tokens: room for the key and query templates and the text before the key
            (self.ood_gap_max + 24 <= self.ctx and self.gap_max + 24 <= self.ctx,
             f"probe gaps must fit the context ({self.ctx}) with room for the key and query"),
            (self.eval_every > 0 and self.state_every > 0,
             "eval_every and state_every must be > 0"),
            (self.snapshot_every >= 0,
             "snapshot_every must be >= 0 (0: only the first and last step)"),
            (self.n_eval_lm > 0 and self.n_eval_probe > 0,
             "n_eval_lm and n_eval_probe must be > 0"),
            (self.n_codewords > 0 and self.n_val_stories > 0 and self.n_train_stories >= 0,
             "n_codewords and n_val_stories must be > 0, n_train_stories >= 0"),
            (self.grad_clip >= 0 and self.ctx > 0 and self.n_layer > 0,
             "need grad_clip >= 0, ctx > 0, n_layer > 0"),
            (self.ce_chunks >= 0, "ce_chunks must be >= 0 (0: the loss in one piece)"),
            (self.fused_ce in ("auto", "cce", "liger", "off"),
             f"fused_ce must be auto, cce, liger or off, got {self.fused_ce!r}"),
            (self.size in SIZES, f"unknown size {self.size!r} (choose from {', '.join(SIZES)})"),
            (self.sdpa in ("auto", "flash", "cudnn", "efficient"),
             f"sdpa must be auto, flash, cudnn or efficient, got {self.sdpa!r}"),
            (self.device in ("auto", "cuda", "mps", "cpu") or self.device.startswith("cuda:"),
             f"unknown device {self.device!r}"),
        ]
        checks += [(_segment_ok(seg), f"snapshot_extra segment {seg!r} is not start:end:every "
                                      f"with start <= end, every > 0")
                   for seg in filter(None, self.snapshot_extra.split(","))]
        for ok, msg in checks:
            if not ok:
                raise UsageError(msg)
        if self.stop_rule:
            # the rule reads the eval row of its step, so a step without an eval would never fire
            rule = parse_stop_rule(self.stop_rule)
            if rule[0] not in self.eval_steps() or rule[0] >= self.steps:
                raise UsageError(f"stop_rule step must be an eval step before the last step "
                                 f"({self.steps})")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _plain_name(name: str) -> bool:
    """A run folder name that stays inside out_dir: no separators, no '..', no leading dot ('' is
    the default name)."""
    return name == "" or re.fullmatch(r"[\w+=-][\w.+=-]*", name) is not None


def _segment_ok(seg: str) -> bool:
    parts = seg.split(":")
    if len(parts) != 3 or not all(x.strip().isdigit() for x in parts):
        return False
    a, b, k = map(int, parts)
    return a <= b and k > 0


def parse_stop_rule(rule: str) -> tuple[int, float, float]:
    """"step:max_val:min_best_p_ood" -> (step, max_val, min_best_p_ood); UsageError if malformed."""
    parts = rule.split(":")
    try:
        if len(parts) != 3 or not parts[0].strip().isdigit():
            raise ValueError
        step, max_val, min_ood = int(parts[0]), float(parts[1]), float(parts[2])
    except ValueError:
        raise UsageError(f"stop_rule {rule!r} is not step:max_val:min_best_p_ood "
                         f"(e.g. 2000:5.1:0.02)")
    return step, max_val, min_ood


# Fields that may differ between the run that made a folder and the command that resumes it.
RUNTIME_FIELDS = {"device", "compile", "progress", "out_dir", "cache_dir", "name", "state_every",
                  "fuse_micro", "ce_chunks", "compile_eval", "sdpa", "fused_ce"}

PRESETS: dict[str, dict] = {
    "paper": {},
    # A 2-layer model on a small corpus: trains on a 2-core CPU in about a minute. With 32
    # sequences a step (3 probe answers) the probe gradient would swamp the LM gradient at the
    # paper's lambda, so the probe weights are 4x smaller.
    "tiny": dict(lambda_probe=0.5, lambda_probe_late=1.0,
        n_train_stories=4_000, n_val_stories=300, n_layer=2, d_model=64, n_head=4, d_ff=256,
        ctx=128, batch_size=16, grad_accum=2, steps=400, warmup=40, lambda_step=160,
        eval_every=20, snapshot_every=20, gap_min=5, gap_max=20, ood_gap_min=40, ood_gap_max=90,
        n_eval_probe=200, n_eval_lm=64, lr=3e-3, compile=False, state_every=100,
    ),
}


def default_batches(preset: str, paper: int) -> int:
    """Mini-batches an analysis replays per snapshot when --batches is left out: `paper` (the
    Fisher's 32, the gradient analysis's 16), half of it for the tiny preset, whose replay is most
    of the CPU pipeline's time (run_seed.sh --preset tiny)."""
    return paper // 2 if preset == "tiny" else paper


# Model sizes: (layers, width) as multiples of the preset's model, head size twice the preset's
# (GPT-2's 64 for the paper preset), MLP 4 x width; the rest of the recipe unchanged. Paper preset:
# 3x is 12 layers of width 768 (12 heads; trunk 84,934,656 parameters, 3.4x the paper's
# 25,165,824), 8x is 16 layers of width 1024 (16 heads; trunk 201,326,592, 8x). The tiny preset
# scales its own model the same way.
SIZES = {"1x": None, "3x": (1.5, 1.5), "8x": (2, 2)}


def size_fields(preset: str, size: str) -> dict:
    """The model fields of `size` for `preset` ({} for 1x)."""
    if size not in SIZES:
        raise UsageError(f"unknown size {size!r} (choose from {', '.join(SIZES)})")
    if SIZES[size] is None:
        return {}
    base = Config(**PRESETS[preset])
    layers, width = SIZES[size]
    d = round(base.d_model * width)
    head = 2 * base.d_model // base.n_head
    return dict(n_layer=round(base.n_layer * layers), d_model=d, n_head=d // head, d_ff=4 * d)


def trunk_params(cfg: Config) -> int:
    """Trunk parameters (q/k/v, attention output, MLP up and down of every block; no biases)."""
    return cfg.n_layer * (4 * cfg.d_model**2 + 2 * cfg.d_model * cfg.d_ff)


def _parse_bool(s: str) -> bool:
    # not bool(s): bool("false") is True
    v = s.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise ValueError(s)


def _typed(f: dataclasses.Field):
    tname = f.type if isinstance(f.type, str) else f.type.__name__
    kind = {"int": int, "float": float, "str": str, "bool": _parse_bool}[tname]

    def convert(s: str):
        try:
            return kind(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expects {tname}, got {s!r}")
    convert.__name__ = tname
    return convert


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line and exit code 2."""

    def error(self, message):
        fail(message)


def add_config_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add one `--field` option per Config field (default None: 'not given')."""
    g = parser.add_argument_group("config (any Config field; defaults are the paper run)")
    for f in fields(Config):
        names = [f"--{f.name}"] + ([f"--{f.name.replace('_', '-')}"] if "_" in f.name else [])
        # default None: only the flags actually given override the preset (a paper default here
        # would overwrite the tiny preset's values)
        g.add_argument(*names, dest=f"cfg_{f.name}", type=_typed(f), default=None,
                       metavar=str(f.type).upper(), help=f"(default {f.default!r})")
    return parser


def given_overrides(ns: argparse.Namespace) -> dict:
    """The Config fields given on the command line (the add_config_args options that were used)."""
    return {k[4:]: v for k, v in vars(ns).items() if k.startswith("cfg_") and v is not None}


def config_from_args(ns: argparse.Namespace) -> Config:
    """Preset first, then the overrides given on the command line."""
    return make_config(**given_overrides(ns))


def make_config(**overrides) -> Config:
    preset = overrides.get("preset", "paper")
    if preset not in PRESETS:
        raise UsageError(f"unknown preset {preset!r} (choose from {', '.join(PRESETS)})")
    known = {f.name for f in fields(Config)}
    bad = sorted(set(overrides) - known)
    if bad:
        raise UsageError(f"unknown config field(s): {', '.join(bad)}")
    size = size_fields(preset, overrides.get("size", "1x"))  # the size's model; explicit fields win
    return Config(**{**PRESETS[preset], **size, **overrides}).validate()


def config_from_dict(d: dict) -> Config:
    # keys this version does not know (a config saved by another version of the code) are
    # dropped rather than refused, so that its run folder still loads
    known = {f.name for f in fields(Config)}
    return Config(**{k: v for k, v in d.items() if k in known})


def diff_configs(a: Config, b: Config, ignore=RUNTIME_FIELDS) -> list[str]:
    da, db = a.to_dict(), b.to_dict()
    return [k for k in da if k not in ignore and da[k] != db.get(k)]


def parse_config(argv=None, description=__doc__) -> Config:
    """Parse a command line made only of Config overrides."""
    p = add_config_args(Parser(description=description,
                               formatter_class=argparse.RawDescriptionHelpFormatter))
    try:
        return config_from_args(p.parse_args(argv))
    except UsageError as e:
        fail(str(e))


if __name__ == "__main__":
    print(parse_config())


def lr_at(cfg: Config, step: int) -> float:
    """Linear warmup to cfg.lr over cfg.warmup steps, then cosine over the run, clamped at
    min_lr_frac."""
    if step < cfg.warmup:  # (step + 1): step 0 already takes a nonzero step
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)  # max: warmup == steps
    return cfg.lr * max(cfg.min_lr_frac, 0.5 * (1 + math.cos(math.pi * progress)))
