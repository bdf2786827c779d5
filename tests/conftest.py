"""Shared fixtures: a micro config, a snapshot writer and reader, fake run folders, usage-error checkers."""
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file, save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The smallest run that trains on a CPU in seconds: tiny preset, one block, a small corpus.
MICRO = dict(preset="tiny", n_train_stories=200, n_val_stories=50, n_layer=1, d_model=32, n_head=2, d_ff=64,
             batch_size=4, grad_accum=1, n_eval_probe=16, n_eval_lm=8, progress=False)


@pytest.fixture(scope="session")
def micro(tmp_path_factory):
    """micro(tmp, **kw): Config overrides of a micro run under tmp/runs (one corpus cache per session)."""
    cache = str(tmp_path_factory.getbasetemp() / "corpus_cache")

    def make(tmp, **kw):
        return {**MICRO, "out_dir": str(tmp / "runs"), "cache_dir": cache, **kw}
    return make


@pytest.fixture(scope="session")
def micro_cfg(micro):
    """micro_cfg(tmp, **kw): the validated Config of a micro run."""
    from config import make_config
    return lambda tmp, **kw: make_config(**micro(tmp, **kw))


@pytest.fixture(scope="session")
def argv():
    """argv(overrides): the command-line form --key value of a dict of Config overrides."""
    return lambda d: [a for k, v in d.items() for a in (f"--{k}", str(v))]


@pytest.fixture(scope="session")
def snapshots():
    """.write(run, step, tensors), .read(run, step), .path(run, step) of snapshot files;
    .finish(run, cfg, step) writes the config.json and status.json that make snapshots a finished run."""
    from runs import snapshot_path

    def write(run, step, tensors):
        os.makedirs(os.path.join(run, "snapshots"), exist_ok=True)
        save_file({k: v.detach().float().contiguous() for k, v in tensors.items()}, snapshot_path(run, step))

    def finish(run, cfg, step=None, status="complete"):
        json.dump({"config": cfg.to_dict()}, open(os.path.join(run, "config.json"), "w"))
        st = {"status": status, "step": cfg.steps if step is None else step}
        json.dump(st, open(os.path.join(run, "status.json"), "w"))

    def read(run, step):
        return load_file(snapshot_path(run, step))
    return SimpleNamespace(write=write, read=read, path=snapshot_path, finish=finish)


def _one_error_line(err: str, code, want_code: int, match: str | None) -> str:
    lines = [l for l in err.splitlines() if l.strip() and not l.startswith("\r")]
    assert code == want_code and len(lines) == 1 and lines[0].startswith("error: "), (code, err[-800:])
    assert "Traceback" not in err, err
    assert match is None or match in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def usage_error(capsys):
    """usage_error(fn, *args, match=None, code=2): fn(*args) must exit with `code` and one line 'error: ...'
    on stderr (containing `match`); returns that line."""
    def check(fn, *args, match=None, code=2):
        capsys.readouterr()
        with pytest.raises(SystemExit) as e:
            fn(*args)
        return _one_error_line(capsys.readouterr().err, e.value.code, code, match)
    return check


@pytest.fixture(scope="session")
def cli_error():
    """cli_error(script, args, match=None, code=2, **run_kw): the script run as a command must exit with
    `code` and one line 'error: ...' on stderr; returns that line."""
    def check(script, args, match=None, code=2, **kw):
        r = subprocess.run([sys.executable, os.path.join(ROOT, script), *map(str, args)], capture_output=True,
                           text=True, timeout=300, **kw)
        return _one_error_line(r.stderr, r.returncode, code, match)
    return check


@pytest.fixture(scope="session")
def tiny_model():
    """tiny_model(n_layer=2): the state dict of a small GPT (vocabulary 40, width 8)."""
    from model import GPT
    def make(n_layer=2, seed=0):
        torch.manual_seed(seed)
        return GPT(40, n_layer=n_layer, d_model=8, n_head=2, d_ff=16, ctx=8).state_dict()
    return make
