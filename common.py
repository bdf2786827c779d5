"""Shared plumbing of every script: device choice, provenance, the one results writer, tables.

pick_device(name, float64=False)   auto = cuda > mps > cpu; an explicit device that is not there:
                                   UsageError
environment(device)                git commit and dirty flag, torch/CUDA/Python versions, device
                                   name
provenance(t0, argv, ...)          environment + exact command line, wall time, date, peak memory
write_json(path, obj)              atomic (temp file and rename), non-finite floats written as null
write_csv(path, rows, columns)     atomic CSV of dict rows
copy_results(paths, dest)          the small files a paper-preset result also keeps under results/
write_result(path, experiment, config, definitions, results, t0, ...)
                                   the JSON shape of every result
format_table(head, body)           plain-text table, columns right-aligned
fmt(x, nd)                         a number for a table cell ("-" for None)
analysis_parser(doc, name, ...)    the options of every analysis: --run --anchor --device
                                   --partial --out
parse_floats(text, what, lo, hi)   a comma-separated list of numbers in a range
cli(fn, *args)                     run a script's main body: bad input, a full disk or Ctrl-C is
                                   one line
"""
from __future__ import annotations

import argparse
import csv
import ctypes
import errno
import functools
import io
import json
import math
import os
import platform
import re
import resource
import shutil
import shlex
import subprocess
import sys
import time
from contextlib import nullcontext
from datetime import timedelta

import torch
import torch.distributed as dist

from config import Parser, UsageError, default_batches, fail

ROOT = os.path.dirname(os.path.abspath(__file__))


# ----------------------------------------------------------------------------- device
def pick_device(name: str = "auto", float64: bool = False) -> torch.device:
    """The device `name` asks for. auto: CUDA, else MPS, else the CPU. `float64`: the caller's math
    is float64 and exact (the analyses), which MPS cannot run, so MPS becomes the CPU (named or
    chosen by auto), and TF32 is turned off (exact_fp32) for the float32 products that feed it."""
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if mps else "cpu"
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise UsageError(f"unknown device {name!r} (auto, cpu, cuda, cuda:N, mps)")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise UsageError(f"unknown device {name!r} (auto, cpu, cuda, cuda:N, mps)")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {name!r} asked for, but CUDA is not available")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        # checked here: torch would fail only at the first tensor moved there, with a traceback
        raise UsageError(f"device {name!r} asked for, but there are {torch.cuda.device_count()} "
                         f"CUDA devices")
    if dev.type == "mps" and not mps:
        raise UsageError(f"device {name!r} asked for, but MPS is not available")
    dev = torch.device("cpu") if (float64 and dev.type == "mps") else dev
    if float64:
        exact_fp32()
    if dev.type == "cpu":
        keep_freed_memory()
    return dev


@functools.cache
def keep_freed_memory():
    """Let glibc keep the memory of freed tensors for the next step instead of returning it to the
    system.

    By default glibc maps each block of more than a few MiB (a tiny-preset step's logits are 31-62
    MiB) afresh and unmaps it on free, and trims the top of the heap, so every step page-faults its
    buffers in again: on 2 CPU cores that was a quarter to a third of the tiny pipeline's wall time,
    all of it system time. Large blocks now come from the heap (threads' arenas still map what
    exceeds their 64 MiB heaps), and up to 512 MiB of free heap top is kept. No effect but speed;
    only glibc."""
    try:
        libc = ctypes.CDLL(None)
        M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
        libc.mallopt(M_MMAP_MAX, 0)
        libc.mallopt(M_TRIM_THRESHOLD, 512 << 20)
    except (OSError, AttributeError, TypeError):  # not glibc (macOS, musl): its allocator as it is
        pass


def autocast(device: torch.device):
    """bf16 autocast on CUDA; full fp32 elsewhere (CPU runs stay bitwise reproducible)."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def exact_fp32():
    """TF32 off: the analyses' float32 matmuls stay exact fp32 on CUDA."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


# ----------------------------------------------------------------------------- provenance
def _git(*args) -> str:
    try:
        r = subprocess.run(["git", *args], capture_output=True, text=True, timeout=5, cwd=ROOT)
        return r.stdout.strip()
    except Exception:
        return ""


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or device.type


def environment(device: torch.device | str = "cpu") -> dict:
    """The code and environment a run or a result comes from."""
    device = pick_device(device) if isinstance(device, str) else device
    # A copy of the tree sent elsewhere (a GPU machine's, say) may carry a stale .git or none: the
    # sender names the commit it sent in SOURCE_COMMIT (and SOURCE_DIRTY), which then wins over git.
    if os.environ.get("SOURCE_COMMIT"):
        commit = os.environ["SOURCE_COMMIT"]
        dirty = os.environ.get("SOURCE_DIRTY", "") not in ("", "0")
    else:
        commit = _git("rev-parse", "HEAD") or "unknown"
        # untracked files ignored: run folders and outputs written inside the tree would
        # otherwise mark every run dirty
        dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    return dict(git_commit=commit, git_dirty=dirty,
                torch=torch.__version__, cuda=torch.version.cuda, python=platform.python_version(),
                device=str(device), device_name=device_name(device))


def provenance(t0: float, argv=None, device: torch.device | str = "cpu",
               script: str | None = None) -> dict:
    """environment() plus the exact command line (script and argv), wall time since t0
    (time.perf_counter()), the date and the peak memory."""
    script = os.path.basename(script or sys.argv[0])
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    # a name such as "auto" is resolved first: the memory query below needs the actual device
    device = pick_device(device) if isinstance(device, str) else device
    # ru_maxrss is in KiB on Linux
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = dict(environment(device), command=shlex.join(["python", script, *argv]),
               wall_s=round(time.perf_counter() - t0, 2),
               date=time.strftime("%Y-%m-%d %H:%M:%S %z"),
               peak_host_memory_mib=round(peak_kib / 1024, 1))
    if out["device"].startswith("cuda"):
        out["peak_device_memory_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return out


# ----------------------------------------------------------------------------- writers
def finite(o):
    """`o` with every non-finite float replaced by None (strict JSON)."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [finite(v) for v in o]
    return o


def os_reason(e: OSError) -> str:
    """A short reason for the OS errors a user can act on (full disk, read-only or forbidden
    folder)."""
    return {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
            errno.EFBIG: "file too large (the file size limit, ulimit -f, or the file system's)",
            errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
            errno.EPERM: "permission denied"}.get(e.errno, e.strerror or type(e).__name__)


WRITE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM)


def disk_error(e: OSError, path: str) -> UsageError:
    return UsageError(f"cannot write {path}: {os_reason(e)}")


def atomic_write(path: str, data: bytes):
    """Write `data` to `path` atomically: a temp file in the same folder, then a rename; an OSError
    (the temp file removed) on failure. Written from Python, so a full disk is an OSError with its
    errno (torch.save's and safetensors' own file writers raise texts instead)."""
    # same folder, so that os.replace is a rename within one file system (atomic: a reader sees
    # the old file or the new one, never a half-written one); the pid keeps concurrent writers of
    # one path apart and lets remove_stale_temps tell a dead writer's leftover from a live one
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    remove_stale_temps(path)


def write_bytes(path: str, data: bytes):
    """atomic_write, a failure as one line (UsageError)."""
    try:
        atomic_write(path, data)
    except OSError as e:
        raise disk_error(e, path)


def write_text(path: str, text: str):
    """Write `text` to `path` atomically (`write_bytes`)."""
    write_bytes(path, text.encode())


def remove_stale_temps(path: str):
    """Delete the temp files `path.tmp<pid>...` that writers of `path` killed mid-write left behind
    (a live process's temp file is kept: it may still be writing)."""
    folder, base = os.path.split(os.path.abspath(path))
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        m = re.fullmatch(re.escape(base) + r"\.tmp(\d+)(\.\w+)?", name)
        if m and not _alive(int(m.group(1))):
            try:
                os.remove(os.path.join(folder, name))
            except OSError:
                pass


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process's own temp file of a finished write is a leftover too
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # another user's process
    return True


def write_json(path: str, obj, indent: int | None = 1):
    write_text(path, json.dumps(finite(obj), indent=indent, allow_nan=False) + "\n")


def write_csv(path: str, rows: list[dict], columns: list[str] | None = None):
    buf = io.StringIO()
    columns = columns or (list(rows[0]) if rows else [])
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    w.writeheader()
    w.writerows(finite(rows))
    write_text(path, buf.getvalue())


def copy_results(paths: list[str], dest: str | None) -> list[str]:
    """Copy the small output files `paths` into the results folder `dest` (nothing when dest is
    None)."""
    if not dest:
        return []
    os.makedirs(dest, exist_ok=True)
    return [shutil.copy2(p, os.path.join(dest, os.path.basename(p))) for p in paths]


def write_result(path: str, experiment: str, config: dict, definitions: dict, results, t0: float,
                 argv=None, device="cpu", script: str | None = None, **extra) -> dict:
    """The JSON of one result: experiment, config, definitions, results, provenance (SPEC section
    5), then `extra` top-level keys (the fields a script wrote before; kept so that readers keep
    working)."""
    record = dict(experiment=experiment, config=config, definitions=definitions, results=results,
                  **extra)
    # provenance last, when the work is done: its wall time and peak memory cover all of it
    record["provenance"] = provenance(t0, argv, device, script)
    write_json(path, record)
    return record


def check_writable(folder: str):
    """UsageError unless `folder` (or its nearest existing parent) is writable; checked before
    computing, so that a long computation is not lost to a read-only folder at its end."""
    probe = os.path.abspath(folder)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise UsageError(f"cannot write into {folder}: {probe} is a file")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write into {folder}: {probe} is read-only")


# ----------------------------------------------------------------------------- figures
def pyplot():
    """matplotlib.pyplot on the file-only Agg backend."""
    # imported here, not at the top: about 0.7 s of start-up that most commands never need, and
    # the backend must be chosen before pyplot is first imported
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path: str, dpi: int = 120) -> str:
    """Lay out, write atomically (a kill never leaves an empty PNG) and close a figure; returns
    path."""
    import matplotlib.pyplot as plt  # lazy as in pyplot(); the caller has imported it already
    fig.tight_layout()
    # the temp name keeps the extension: savefig picks the format from it
    tmp = f"{path}.tmp{os.getpid()}{os.path.splitext(path)[1]}"
    try:
        fig.savefig(tmp, dpi=dpi)
        os.replace(tmp, path)
    except OSError as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise disk_error(e, path)
    finally:
        plt.close(fig)  # pyplot holds every open figure until closed: scripts drawing many leak
    remove_stale_temps(path)
    return path


# ----------------------------------------------------------------------------- tables
def fmt(v, nd: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}" if math.isfinite(v) else str(v)
    return str(v)


def fmt_g(v, nd: int = 3) -> str:
    """A number in %g style with nd significant digits ('-' for None or non-finite)."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    # bool before the float conversion (True would print 1); numpy's bool_ is no Python bool
    if isinstance(v, (str, bool, int)) or type(v).__name__ == "bool_":
        return str(v)
    return f"{float(v):.{nd}g}"


def format_table(head: list[str], body: list[list]) -> str:
    """Rows of cells as right-aligned columns (cells are str()-ed)."""
    lines = [[str(x) for x in line] for line in [head, *body]]
    widths = [max(len(x) for x in col) for col in zip(*lines)]
    return "\n".join("  ".join(x.rjust(w) for x, w in zip(line, widths)) for line in lines)


# ----------------------------------------------------------------------------- command lines
def analysis_parser(doc: str, name: str, replay_batches: int | None = None,
                    record: bool = False) -> Parser:
    """The options every analysis takes; with `replay_batches`, also those of the analyses that
    replay the run's training batches (gradient and Fisher), that many mini-batches by default;
    with `record`, --record FILE instead of --run (an analysis computed from a trajectory record
    alone; with replay_batches also --gradient-record FILE, the run's gradient record)."""
    p = Parser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True) if record else p
    src.add_argument("--run", required=not record,
                     help="run folder (runs/<name>) with snapshots/, config.json, metrics.jsonl")
    if record:
        src.add_argument("--record", help="a trajectory record (trajectory_record.py, or "
                                          "<run>/analysis/trajectory_record.safetensors): no "
                                          "snapshots needed")
    p.add_argument("--anchor", type=int, default=0,
                   help="anchor step theta(anchor) (default 0, the initialization)")
    p.add_argument("--device", default="auto",
                   help="auto | cpu | cuda | cuda:N | mps (default auto)")
    p.add_argument("--partial", action="store_true",
                   help="analyse an unfinished run, or one with missing snapshots, on the "
                        "snapshots it has")
    p.add_argument("--out", default=None,
                   help=f"output JSON (default <run>/analysis/{name}.json); figures and other "
                        "files go to the same folder")
    if replay_batches:
        p.add_argument("--batches", type=int, default=None,
                       help=f"mini-batches per snapshot (default {replay_batches}; the tiny "
                            f"preset's runs {default_batches('tiny', replay_batches)})")
        p.add_argument("--batch-size", "--batch_size", dest="batch_size", type=int, default=None,
                       help="sequences per mini-batch (default: the run's batch_size, 64 in "
                            "the paper)")
        p.add_argument("--cache_dir", "--cache-dir", dest="cache_dir", default=None,
                       help="tokenized-corpus cache (default: the run's config cache_dir)")
        if record:
            p.add_argument("--gradient-record", "--gradient_record", dest="gradient_record",
                           default=None, help="with --record: the run's gradient record "
                           "(<run>/analysis/gradient_record.safetensors); no snapshots or corpus "
                           "needed")
        p.add_argument("--fp32", action="store_true",
                       help="full fp32 forward/backward on CUDA too (default: the run's bf16 "
                            "autocast)")
    return p


def out_path(args, name: str) -> str:
    """The output JSON of an analysis (--out or <run>/analysis/<name>.json), its folder checked
    writable."""
    if args.out:
        path = args.out
    elif getattr(args, "record", None):
        path = os.path.join(os.path.dirname(os.path.abspath(args.record)), f"{name}.json")
    else:
        path = os.path.join(args.run, "analysis", f"{name}.json")
    if os.path.isdir(path):
        raise UsageError(f"--out {path} is a folder; give the JSON file to write")
    check_writable(os.path.dirname(os.path.abspath(path)))
    return path


def parse_floats(text: str, what: str, lo: float, hi: float, hi_open: bool) -> list[float]:
    """Comma-separated numbers in [lo, hi) or [lo, hi], distinct; UsageError otherwise."""
    try:
        vals = [float(x) for x in text.split(",")]
    except ValueError:
        raise UsageError(f"{what} must be comma-separated numbers, got {text!r}")
    for v in vals:
        if not (math.isfinite(v) and lo <= v and (v < hi if hi_open else v <= hi)):
            raise UsageError(f"{what}: {v:g} is outside [{lo:g}, {hi:g}{')' if hi_open else ']'}")
    if len(set(vals)) != len(vals):
        raise UsageError(f"{what} has duplicates: {text!r}")
    return vals


def cli(fn, *args, **kw):
    """fn(*args, **kw), with bad input, an OS error on writing (full disk, read-only folder) and
    Ctrl-C reported as one line on stderr (exit 2, or 130 for Ctrl-C) instead of a traceback."""
    try:
        return fn(*args, **kw)
    except UsageError as e:
        fail(str(e))
    except OSError as e:
        if e.errno not in WRITE_ERRORS:
            raise  # any other OS error is a bug or a surprise: keep its traceback
        fail(f"cannot write {e.filename or 'a file'}: {os_reason(e)}")
    except KeyboardInterrupt:
        fail("interrupted", code=130)  # 128 + SIGINT, as a shell reports it


# ------------------------------------------------------------------- one run on several processes
# A plain `python train.py` is process 0 of 1: no process group, and every function here returns at
# once.
class FromRank0(UsageError):
    """Process 0's UsageError as the other processes receive it (process 0 alone prints it)."""


def launched() -> bool:
    """True in a process that torchrun started (it sets RANK, WORLD_SIZE and LOCAL_RANK)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def join_processes(name: str) -> torch.device:
    """This process's device (CUDA: GPU LOCAL_RANK) with the process group joined (once): NCCL on
    CUDA, gloo on the CPU. The long timeout covers process 0 generating the corpus while the others
    wait."""
    # NVLink multicast (NVLS) stays off unless the environment turns it on: the shared machines
    # this runs on must not use it (set before the first NCCL communicator is made).
    os.environ.setdefault("NCCL_NVLS_ENABLE", "0")
    device = pick_device(name)
    if device.type == "mps":
        raise UsageError("torchrun runs on CUDA (NCCL) or the CPU (gloo), not on MPS")
    if device.type == "cuda":
        device = pick_device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        cuda = device.type == "cuda"
        dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(minutes=30),
                                **({"device_id": device} if cuda else {}))
    return device


def leave_processes():
    if dist.is_initialized():
        dist.destroy_process_group()


def from_rank0(obj):
    """Process 0's `obj` (pickled) on every process."""
    if world() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def on_rank0(fn, *args):
    """fn(*args) run by process 0 alone; its result, or its UsageError, on every process."""
    if world() == 1:
        return fn(*args)
    out = None
    if rank() == 0:
        try:
            out = (None, fn(*args))
        except UsageError as e:
            out = (str(e), None)
            from_rank0(out)  # the others wait in the broadcast: send them the error, then raise
            raise
    err, value = from_rank0(out)
    if err is not None:
        raise FromRank0(err)
    return value


def same_everywhere(value, what: str):
    """A UsageError on every process unless they all hold the same `value`."""
    if world() == 1:
        return
    values = [None] * world()
    dist.all_gather_object(values, value)
    # repr: the values may be unhashable (lists, dicts), and repr tells 1 from 1.0
    if len(set(map(repr, values))) > 1:
        # every process raises, so none is left waiting in a collective; process 0 alone prints
        raise FromRank0(f"the processes disagree on {what}: {values}") if rank() else \
            UsageError(f"the processes disagree on {what}: {values}")


def barrier():
    if world() > 1:
        dist.barrier()


# ----------------------------------------------------------------------------- determinism
def fix_kernels(cfg):
    """Called before any CUDA work. CPU: the intra-op thread count set explicitly (the default, or
    OMP_NUM_THREADS): torch.set_num_threads also turns off MKL's dynamic choice of threads, and
    every thread (the data prefetcher's too) then uses one count. cfg.deterministic: PyTorch's
    deterministic algorithms (an op without one is an error, not a silent difference), cuBLAS's
    fixed workspace (read when cuBLAS starts) and deterministic cuDNN."""
    torch.set_num_threads(torch.get_num_threads())  # not a no-op: it fixes the count (above)
    if cfg.deterministic:
        # one of the two settings that cuBLAS documents for reproducible results
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
