"""The trajectory record: every inner product of a run's snapshots in one small file
(geometry.Record).

    # -> runs/seed42/analysis/trajectory_record.safetensors
    python trajectory_record.py --run runs/seed42
    python trajectory_record.py --checkpoints ckpts/step_*.safetensors --out my_record.safetensors
    python trajectory_record.py --checkpoints ckpt-100 ckpt-200 ckpt-300 --steps 100,200,300 \
        --out r.safetensors

Per weight matrix of the trunk, the float64 Gram of the rows theta(t_1) - theta(t_0), ...,
theta(t_N) - theta(t_0), theta(t_0) over every snapshot step t_0 < ... < t_N: an invertible map of
the raw inner products <theta(t_i), theta(t_j)>, so that any anchor, window, increment and
the weight-decay direction theta(anchor) derive from it. trajectory_pca_uncentered.py and
backbone_update_analysis.py take `--record FILE` and need nothing else; the experiments' window
geometry (Tables 9 and 10, beta2, the controls) reads it too. About 1.2 MB for the paper run (32
tensors, 51 snapshots).

Checkpoints of any training run (`--checkpoints`, in step order): safetensors files, torch state
dicts (.pt/.pth/.bin, loaded with weights_only=True) or Hugging Face model folders
(model.safetensors or pytorch_model.bin inside). Tensors are grouped into blocks by `--pattern`,
a regular expression whose first group is the block index; the default matches this project's names
(blocks.L.attn.qkv.weight, ...) and GPT-2's in transformers (h.L.attn.c_attn.weight, c_proj,
mlp.c_fc, mlp.c_proj; with or without the "transformer." prefix). Steps come from `--steps` or from
the last number in each file or folder name. One checkpoint is in memory at a time: a state dict is
first copied, tensor by tensor, into a temporary safetensors file of the matched tensors, then every
tensor's rows are streamed from those files.
"""
from __future__ import annotations

import os
import re
import sys
import tempfile
import time

import torch
from safetensors import safe_open
from safetensors.torch import save_file

import geometry as geo
from common import check_writable, cli, pick_device, provenance
from config import Parser, UsageError
from runs import load_record, record_path, run_record, save_record

DEFAULT_PATTERN = (
    r"(?:^|\.)(?:h|blocks)\.(\d+)\.(?:attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj|"
    r"attn\.qkv|attn\.proj|mlp\.fc|mlp\.proj)\.weight$"
)
STATE_DICT = (".pt", ".pth", ".bin")
HF_FILES = ("model.safetensors", "pytorch_model.bin")


def parse_args(argv):
    p = Parser(description=__doc__,
               formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="a run folder of train.py (its snapshots)")
    src.add_argument(
        "--checkpoints",
        nargs="+",
        metavar="PATH",
        help="checkpoints in step order: safetensors files, state dicts, Hugging Face folders",
    )
    p.add_argument(
        "--steps",
        default=None,
        help="comma-separated steps of --checkpoints (default: the last number in each name)",
    )
    p.add_argument(
        "--pattern",
        default=DEFAULT_PATTERN,
        help=(
            "regex over tensor names; group 1 = block index (default: this project's and GPT-2's "
            "attention and MLP weight matrices)"
        ),
    )
    p.add_argument(
        "--out",
        default=None,
        help=(
            "output file (default with --run: <run>/analysis/"
            "trajectory_record.safetensors; required with --checkpoints)"
        ),
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    args = p.parse_args(argv)
    if args.checkpoints and not args.out:
        p.error("--out is required with --checkpoints")
    try:
        re.compile(args.pattern)
    except re.error as e:
        p.error(f"--pattern is not a regular expression: {e}")
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    cli(run, parse_args(argv), argv)


def checkpoint_file(path: str) -> str:
    """The weights file of a checkpoint path (a Hugging Face folder holds one of HF_FILES)."""
    if os.path.isdir(path):
        for name in HF_FILES:
            if os.path.isfile(os.path.join(path, name)):
                return os.path.join(path, name)
        raise UsageError(
            f"{path}: a folder without {' or '.join(HF_FILES)} (sharded checkpoints: convert them "
            "to one file first)"
        )
    if not os.path.isfile(path):
        raise UsageError(f"checkpoint not found: {path}")
    return path


def step_of(path: str) -> int:
    nums = re.findall(r"\d+", os.path.basename(os.path.normpath(path)))
    if not nums:
        raise UsageError(f"no step number in the name {path!r}: give --steps")
    return int(nums[-1])


def parse_steps(text: str | None, paths: list[str]) -> list[int]:
    if text is None:
        steps = [step_of(p) for p in paths]
    else:
        try:
            steps = [int(s) for s in text.split(",")]
        except ValueError:
            raise UsageError(f"--steps {text!r}: comma-separated integers expected")
        if len(steps) != len(paths):
            raise UsageError(f"--steps has {len(steps)} numbers for {len(paths)} checkpoints")
    if any(b <= a for a, b in zip(steps, steps[1:])):
        raise UsageError(
            f"the checkpoints' steps are not strictly increasing: {steps} (list them in step order)"
        )
    return steps


def block_groups(names, pattern: str) -> tuple[dict[str, list[str]], list[str]]:
    """({block<l>: its matched tensors, ..., trunk: all}, matched names), blocks by their index."""
    rx = re.compile(pattern)
    found = {}
    for n in names:
        m = rx.search(n)
        if m:
            if not m.groups():
                raise UsageError("--pattern needs a group that captures the block index")
            found.setdefault(int(m.group(1)), []).append(n)
    if not found:
        raise UsageError(f"no tensor name matches --pattern {pattern!r} (e.g. {sorted(names)[:3]})")
    groups = {f"block{l}": sorted(found[l]) for l in sorted(found)}
    groups["trunk"] = [k for l in sorted(found) for k in groups[f"block{l}"]]
    return groups, groups["trunk"]


def as_safetensors(path: str, pattern: str, tmp: str) -> str:
    """A safetensors file with the checkpoint's tensors that match `pattern` (the file itself if it
    is one)."""
    if path.endswith(".safetensors"):
        return path
    if not path.endswith(STATE_DICT):
        raise UsageError(
            f"{path}: not a .safetensors, {', '.join(STATE_DICT)} file or Hugging Face folder"
        )
    try:  # weights_only: a checkpoint from elsewhere must not run code when it is read
        sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:
        raise UsageError(f"cannot read {path} as a state dict: {type(e).__name__}: {e}")
    sd = sd.get("model", sd) if isinstance(sd, dict) else sd
    if not isinstance(sd, dict):
        raise UsageError(f"{path} holds no state dict")
    rx = re.compile(pattern)
    keep = {
        k: v.detach().float().contiguous()
        for k, v in sd.items() if torch.is_tensor(v) and rx.search(k)
    }
    out = os.path.join(tmp, f"{len(os.listdir(tmp))}.safetensors")
    save_file(keep, out)
    return out


def checkpoint_record(paths: list[str], steps: list[int], pattern: str, device) -> geo.Record:
    """The record of a series of checkpoints (one in memory at a time)."""
    files = [checkpoint_file(p) for p in paths]
    with tempfile.TemporaryDirectory() as tmp:
        st = [as_safetensors(f, pattern, tmp) for f in files]
        shapes = {}
        for f, src in zip(st, files):
            with safe_open(f, framework="pt") as h:
                got = {k: tuple(h.get_slice(k).get_shape()) for k in h.keys()}
            if not shapes:
                groups, keys = block_groups(got, pattern)
                shapes = {k: got[k] for k in keys}
            elif any(got.get(k) != s for k, s in shapes.items()):
                bad = next(k for k, s in shapes.items() if got.get(k) != s)
                raise UsageError(
                    f"{src}: tensor {bad} is {got.get(bad)}, {shapes[bad]} in {files[0]}"
                )
        by_step = dict(zip(steps, st))

        def load(step, key):
            with safe_open(by_step[step], framework="pt") as h:
                return h.get_tensor(key).float()
        grams = geo.record_grams(load, steps, keys, device, progress=sys.stderr.isatty())
    return geo.Record(
        steps, shapes, grams, groups, meta=dict(source=dict(
            kind="checkpoints", files=[os.path.basename(os.path.normpath(p))
                                       for p in paths], pattern=pattern)))


def run(args, argv):
    t0 = time.perf_counter()
    if args.run:
        if not os.path.isdir(args.run):
            raise UsageError(f"run folder not found: {args.run}")
        out = args.out or record_path(args.run)
        check_writable(os.path.dirname(os.path.abspath(out)))
        rec = run_record(args.run, args.device, sys.stderr.isatty(), argv)
        if os.path.abspath(out) != os.path.abspath(rec.path):
            save_record(out, rec, rec.provenance)
    else:
        out = args.out
        if os.path.isdir(out):
            raise UsageError(f"--out {out} is a folder; give the file to write")
        check_writable(os.path.dirname(os.path.abspath(out)))
        device = pick_device(args.device, float64=True)
        for path in args.checkpoints:
            checkpoint_file(path)  # a missing checkpoint is named before its step is parsed
        steps = parse_steps(args.steps, args.checkpoints)
        rec = checkpoint_record(args.checkpoints, steps, args.pattern, device)
        save_record(out, rec, provenance(t0, argv, device, __file__))
    rec = load_record(out)
    size = os.path.getsize(out)
    print(
        f"{out}: {len(rec.steps)} steps ({rec.steps[0]}..{rec.steps[-1]}), {len(rec.grams)} tensors"
        f" in {len(rec.groups) - 1} blocks, {size / 2**20:.2f} MiB"
    )


if __name__ == "__main__":
    main()
