"""Run folders under failure: failed writes, a second writer, kills, leftovers, stale analyses (CPU)."""
import errno
import json
import os
import shutil
import stat

import pytest
import torch

import backbone_fisher_analysis as bfa
import backbone_gradient_analysis as bga
import common
import geometry as geo
import runs
import train
import trajectory_pca_uncentered as tpu
from config import Config, UsageError

SHORT = dict(steps=8, eval_every=4, snapshot_every=4, state_every=4, lambda_step=4, n_layer=2)


@pytest.fixture(scope="module")
def done(tmp_path_factory, micro_cfg):
    """A finished micro run (snapshots 0, 4, 8) that tests copy before changing anything."""
    cfg = micro_cfg(tmp_path_factory.mktemp("done"), **SHORT)
    assert train.train(cfg)["status"] == "complete"
    return cfg


@pytest.fixture
def copy(done, tmp_path):
    """copy(): a fresh copy of the finished run; returns its folder."""
    def make(name="copy"):
        dst = str(tmp_path / name)
        shutil.copytree(done.run_dir, dst)
        return dst
    return make


@pytest.fixture
def config_of(done):
    """config_of(run): the finished run's Config pointing at the folder `run` (a copy)."""
    def make(run):
        return Config(**dict(done.to_dict(), out_dir=os.path.dirname(run), name=os.path.basename(run)))
    return make


def fake_env(commit: str):
    env = dict(git_commit=commit, git_dirty=False, torch="", cuda=None, python="", device="cpu",
               device_name="cpu")
    return lambda device="cpu": env


def fail_write_at(monkeypatch, step):
    """Make the snapshot write of `step` fail as on a full disk (a real one: test_defect7_*)."""
    real = train.atomic_write

    def atomic_write(path, data):
        if f"step_{step:06d}" in path:
            raise OSError(errno.ENOSPC, "No space left on device", path)
        return real(path, data)
    monkeypatch.setattr(train, "atomic_write", atomic_write)


# ----------------------------------------------------------------------------- 1. failed snapshot writes
def test_failed_snapshot_write_stops_the_run(micro_cfg, tmp_path, monkeypatch):
    cfg = micro_cfg(tmp_path, **SHORT)
    fail_write_at(monkeypatch, 4)
    with pytest.raises(UsageError, match="snapshot step 4 could not be written .no space left"):
        train.train(cfg)
    assert runs.read_status(cfg.run_dir) is None  # not reported complete


def test_resume_rewrites_the_missing_snapshot(micro_cfg, tmp_path, monkeypatch, done, snapshots):
    cfg = micro_cfg(tmp_path, **SHORT)
    fail_write_at(monkeypatch, 4)
    with pytest.raises(UsageError):
        train.train(cfg)
    monkeypatch.undo()
    assert train.train(cfg)["status"] == "complete"
    for s in cfg.snapshot_steps():
        a, b = snapshots.read(cfg.run_dir, s), snapshots.read(done.run_dir, s)
        assert all(torch.equal(a[k], b[k]) for k in a), s


def test_resume_retrains_when_an_early_snapshot_was_deleted(copy, done, config_of, snapshots):
    run = copy()
    os.remove(os.path.join(run, "status.json"))  # unfinished, resume point at step 8
    os.remove(runs.snapshot_path(run, 4))
    assert train.train(config_of(run))["status"] == "complete"
    a, b = snapshots.read(run, 4), snapshots.read(done.run_dir, 4)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_analysis_refuses_a_run_with_a_missing_snapshot(copy, usage_error):
    run = copy()
    os.remove(runs.snapshot_path(run, 4))
    usage_error(tpu.main, ["--run", run, "--null-draws", "10"], match="lacks 1 of its snapshots (first: step")


def test_analysis_refuses_an_unfinished_run(copy, usage_error):
    run = copy()
    os.remove(os.path.join(run, "status.json"))
    usage_error(tpu.main, ["--run", run, "--null-draws", "10"], match="has not finished training")


def test_partial_analyses_an_unfinished_run_and_says_so(copy):
    run = copy()
    os.remove(os.path.join(run, "status.json"))
    tpu.main(["--run", run, "--null-draws", "10", "--partial"])
    res = json.load(open(os.path.join(run, "analysis", "trajectory_pca_uncentered.json")))
    assert res["run_state"]["partial"] and res["snapshot_steps"] == [4, 8]


# ----------------------------------------------------------------------------- 2. one writer per run folder
def test_second_writer_stops_with_one_line(micro, argv, tmp_path, cli_error):
    overrides = micro(tmp_path, **SHORT)
    run_dir = os.path.join(overrides["out_dir"], "tiny_seed42")
    with runs.RunLock(run_dir):  # a first trainer that has not written config.json yet
        cli_error("train.py", argv(overrides), match="is being written by another process")
    assert os.listdir(run_dir) == [".lock"]


def test_the_lock_is_released_after_training(done):
    with runs.RunLock(done.run_dir):
        pass


# ----------------------------------------------------------------------------- 3. stale analyses
@pytest.fixture
def analysed(copy, monkeypatch):
    """A copy of the run analysed by the PCA script, with the code state fixed (commit abc, clean)."""
    for mod in (common, runs):  # runs.py takes environment from common at import
        monkeypatch.setattr(mod, "environment", fake_env("abc"))
    run = copy()
    tpu.main(["--run", run, "--null-draws", "10"])
    return run


def test_analysis_of_this_commit_and_config_is_fresh(analysed):
    assert runs.analysis_freshness(analysed, "trajectory_pca_uncentered") is None


def test_analysis_of_another_commit_is_stale(analysed, monkeypatch):
    for mod in (common, runs):  # runs.py takes environment from common at import
        monkeypatch.setattr(mod, "environment", fake_env("def"))
    assert "made by commit abc" in runs.analysis_freshness(analysed, "trajectory_pca_uncentered")


def test_analysis_of_another_config_is_stale(analysed):
    path = os.path.join(analysed, "config.json")
    rec = json.load(open(path))
    rec["config"]["lr"] = 1.0
    json.dump(rec, open(path, "w"))
    assert "another config" in runs.analysis_freshness(analysed, "trajectory_pca_uncentered")


def test_analysis_of_a_partial_trajectory_stays_stale_after_training_finished(copy, monkeypatch):
    for mod in (common, runs):  # runs.py takes environment from common at import
        monkeypatch.setattr(mod, "environment", fake_env("abc"))
    run = copy()
    status = open(os.path.join(run, "status.json")).read()
    os.remove(os.path.join(run, "status.json"))
    tpu.main(["--run", run, "--null-draws", "10", "--partial"])
    open(os.path.join(run, "status.json"), "w").write(status)  # training finishes
    assert "partial" in runs.analysis_freshness(run, "trajectory_pca_uncentered")


# ----------------------------------------------------------------------------- 4. one drift row
@pytest.fixture(scope="module")
def one_row(tmp_path_factory, micro_cfg):
    cfg = micro_cfg(tmp_path_factory.mktemp("one"), **dict(SHORT, steps=4))
    assert train.train(cfg)["status"] == "complete"
    return cfg.run_dir


def test_one_drift_row_is_analysed(one_row):
    tpu.main(["--run", one_row, "--null-draws", "10"])
    res = json.load(open(os.path.join(one_row, "analysis", "trajectory_pca_uncentered.json")))
    trunk = res["results"]["trunk"]
    assert trunk["raw"]["pc1"] == pytest.approx(1.0) and trunk["centered"] is None


def test_fisher_of_one_drift_row_leaves_out_pc2(one_row):
    bfa.main(["--run", one_row, "--batches", "2", "--K", "2", "--batch-size", "2"])
    res = json.load(open(os.path.join(one_row, "analysis", "backbone_fisher_analysis.json")))
    assert set(res["table"][0]["groups"]["trunk"]["q"]) == {"v_b"}


def test_pca_coef_checks_k_against_the_rows():
    with pytest.raises(ValueError):
        geo.pca(torch.ones(1, 1, dtype=torch.float64)).coef(2)


# ----------------------------------------------------------------------------- 5. validation before anything
@pytest.mark.parametrize("field,value", [("snapshot_extra", "10:50:0"), ("stop_rule", "20:abc:0.1"),
                                         ("n_eval_lm", "0"), ("n_eval_probe", "0"), ("n_codewords", "0"),
                                         ("snapshot_extra", "50:10:5")])
def test_bad_config_value_creates_nothing(field, value, micro, argv, tmp_path, usage_error):
    overrides = micro(tmp_path, **SHORT)
    usage_error(train.main, argv({**overrides, field: value}), match=field)
    assert not os.path.exists(overrides["out_dir"])


# ------------------------------------------------------------------------- 6. atomic writes, tolerant reads
def test_empty_status_json_is_resumed(copy, config_of):
    run = copy()
    open(os.path.join(run, "status.json"), "w").close()
    assert train.train(config_of(run))["status"] == "complete"


def test_cut_metrics_line_is_left_out(copy):
    run = copy()
    with open(os.path.join(run, "metrics.jsonl"), "a") as f:
        f.write('{"step": 12, "val_lo')
    assert [r["step"] for r in runs.read_metrics(run)] == [0, 4, 8]


def test_empty_config_json_is_recovered_from_the_state(copy, config_of):
    run = copy()
    os.remove(os.path.join(run, "status.json"))
    open(os.path.join(run, "config.json"), "w").close()
    assert train.train(config_of(run))["status"] == "complete"
    assert runs.read_record(run)["config"]["steps"] == SHORT["steps"]


def test_resumes_are_appended_to_the_first_environment(micro_cfg, tmp_path):
    cfg = micro_cfg(tmp_path, **SHORT)
    train.train(cfg, stop_after=5)
    first = runs.read_record(cfg.run_dir)["env"]
    train.train(cfg)
    rec = runs.read_record(cfg.run_dir)
    assert rec["env"] == first and [r["step"] for r in rec["resumes"]] == [4]


def test_a_failed_json_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = str(tmp_path / "x.json")
    common.write_json(path, {"a": 1})
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    with pytest.raises(UsageError, match="no space left"):
        common.write_json(path, {"a": 2})
    assert json.load(open(path)) == {"a": 1} and os.listdir(tmp_path) == ["x.json"]


def test_non_finite_numbers_are_written_as_null(tmp_path):
    common.write_json(str(tmp_path / "x.json"), {"a": float("nan"), "b": [float("inf"), 1.5]})
    assert json.load(open(tmp_path / "x.json")) == {"a": None, "b": [None, 1.5]}


# ----------------------------------------------------------------------------- 7. leftovers
def test_resume_removes_half_written_snapshots(copy, config_of):
    run = copy()
    os.remove(os.path.join(run, "status.json"))
    for f in (".tmpA1b2C3", "step_000008.safetensors.tmp"):
        open(os.path.join(run, "snapshots", f), "w").write("partial")
    train.train(config_of(run))
    names = sorted(os.listdir(os.path.join(run, "snapshots")))
    assert names == [f"step_00000{s}.safetensors" for s in (0, 4, 8)]


def test_empty_training_curves_are_redrawn(copy, config_of):
    run = copy()
    open(os.path.join(run, "training_curves.png"), "w").close()
    train.train(config_of(run))
    assert os.path.getsize(os.path.join(run, "training_curves.png")) > 1000


# ----------------------------------------------------------------------------- 8. one line, not a traceback
def test_unwritable_output_stops_before_computing(copy, monkeypatch, usage_error):
    run = copy()
    monkeypatch.setattr(common.os, "access", lambda *a: False)
    monkeypatch.setattr(runs.Trajectory, "record", lambda *a, **k: pytest.fail("computed first"))
    usage_error(tpu.main, ["--run", run], match="read-only")
    usage_error(bga.main, ["--run", run], match="read-only")


def test_unwritable_experiment_folder_stops_before_training(micro, argv, tmp_path, monkeypatch, usage_error):
    import beta2_analysis
    monkeypatch.setattr(common.os, "access", lambda *a: False)
    monkeypatch.setattr(train, "train", lambda *a, **k: pytest.fail("trained before checking the output"))
    usage_error(beta2_analysis.main, argv(micro(tmp_path, **SHORT)) + ["--betas", "0.9"], match="read-only")


def test_out_naming_a_path_under_a_file_is_one_line(copy, tmp_path, usage_error):
    run = copy()
    (tmp_path / "f").write_text("")
    usage_error(bfa.main, ["--run", run, "--out", str(tmp_path / "f" / "x.json")], match="is a file")


def test_unavailable_mps_is_one_line(micro, argv, tmp_path, usage_error, copy):
    if torch.backends.mps.is_available():
        pytest.skip("MPS is available here")
    usage_error(train.main, argv(micro(tmp_path, **SHORT, device="mps")), match="MPS is not available")
    usage_error(tpu.main, ["--run", copy(), "--device", "mps"], match="MPS is not available")


def test_state_file_with_missing_keys_is_one_line(tmp_path):
    path = str(tmp_path / "state_latest.pt")
    torch.save({"model": {}, "step": 1}, path)
    with pytest.raises(UsageError, match="missing: n_sum, optimizer, rng, train_sum"):
        runs.load_state(path)


def test_state_file_with_wrong_shapes_is_one_line(copy, done, usage_error, argv):
    run = copy()
    os.remove(os.path.join(run, "status.json"))
    path = os.path.join(run, "state_latest.pt")
    state = torch.load(path, weights_only=True)
    state["model"]["blocks.0.mlp.fc.weight"] = torch.zeros(3, 3)
    torch.save(state, path)
    cfg = dict(done.to_dict(), out_dir=os.path.dirname(run), name=os.path.basename(run))
    usage_error(train.main, argv({k: v for k, v in cfg.items() if v != ""}), match="does not fit this run")


def test_out_dir_naming_a_file_is_one_line(micro, argv, tmp_path, usage_error):
    (tmp_path / "file").write_text("")
    usage_error(train.main, argv(micro(tmp_path, **SHORT, out_dir=str(tmp_path / "file"))), match="is a file")


def test_ctrl_c_is_one_line_and_the_run_resumes(micro_cfg, micro, argv, tmp_path, monkeypatch, usage_error):
    real, calls = train.train_step, []

    def interrupted(*a, **k):
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return real(*a, **k)
    monkeypatch.setattr(train, "train_step", interrupted)
    line = usage_error(train.main, argv(micro(tmp_path, **SHORT)), code=130)
    assert line == "error: interrupted at step 5; run the same command to resume"
    monkeypatch.undo()
    assert train.train(micro_cfg(tmp_path, **SHORT))["status"] == "complete"


# ----------------------------------------------------------------------------- 9. minor
def test_missing_data_file_is_reported_before_the_tokenizer_loads(micro_cfg, tmp_path, monkeypatch):
    import dataset
    monkeypatch.setattr(dataset, "GPT2Tokenizer", lambda *a: pytest.fail("tokenizer loaded first"))
    with pytest.raises(UsageError, match="data file not found"):
        dataset.load_corpus(micro_cfg(tmp_path, data=str(tmp_path / "missing.jsonl")))


def test_snapshots_are_readable_by_everyone(micro_cfg, tmp_path):
    old = os.umask(0o022)
    try:
        cfg = micro_cfg(tmp_path, **SHORT)
        train.train(cfg)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(runs.snapshot_path(cfg.run_dir, 4)).st_mode) == 0o644


# ----------------------------------------------------------------------------- corpus identity
def test_an_analysis_of_a_run_whose_corpus_changed_is_one_line(copy, usage_error):
    run = copy()
    path = os.path.join(run, "config.json")
    rec = json.load(open(path))
    rec["corpus_identity"]["sha256"] = "0" * 64
    json.dump(rec, open(path, "w"))
    usage_error(bga.main, ["--run", run, "--batches", "2"], match="is not the one it trained on (sha256")


def test_a_changed_generator_is_found_before_the_corpus_is_generated(copy, usage_error, monkeypatch):
    """The synthetic corpus's identity needs a few stories; the check comes before generating the split
    (minutes at paper size), so a changed generator stops at once."""
    import dataset
    run = copy()
    path = os.path.join(run, "config.json")
    rec = json.load(open(path))
    rec["corpus_identity"]["sha256"] = "0" * 64
    json.dump(rec, open(path, "w"))
    monkeypatch.setattr(dataset, "load_corpus", lambda cfg: pytest.fail("the corpus was generated first"))
    usage_error(bga.main, ["--run", run, "--batches", "2"], match="is not the one it trained on (sha256")


def test_provenance_resolves_a_device_name_before_asking_cuda_for_memory(monkeypatch):
    """A script that passes its --device string ("auto") still records the CUDA device's peak memory:
    torch.cuda.max_memory_allocated("auto") raises, as it did on the GPU for backbone_controls and beta2."""
    import common
    asked = []

    def peak(device):
        assert isinstance(device, torch.device) and device.type == "cuda", device
        asked.append(device)
        return 3 * 2**20
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "test GPU")
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", peak)
    for name in ("auto", "cuda", torch.device("cuda")):
        p = common.provenance(0.0, [], name, "x.py")
        assert p["device"] == "cuda" and p["device_name"] == "test GPU" and p["peak_device_memory_mib"] == 3.0
    assert len(asked) == 3
    assert "peak_device_memory_mib" not in common.provenance(0.0, [], "cpu", "x.py")


# ----------------------------------------------------------------------------- issue 18: the fault
# battery
# Each test is named for the defect of issue 18 it covers; each failed before the fix.
def run_script(args, limit_bytes: int | None = None, **kw):
    """python <args> in a subprocess, its file size limited to `limit_bytes` (ulimit -f: writes past
    it fail with EFBIG, as on a full disk; Python ignores SIGXFSZ)."""
    import resource
    import subprocess
    import sys

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, preexec_fn=limit if limit_bytes else None, **kw)


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def one_line(r, match: str, code: int = 2) -> str:
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    ok = r.returncode == code and len(lines) == 1 and lines[0].startswith("error: ")
    assert ok, r.stderr[-2000:]
    assert match in lines[0], lines[0]
    return lines[0]


def changed_values(path: str, n: int = 1000):
    """Overwrite `path` with n finite values of one tensor changed (not what train.py wrote)."""
    from safetensors.torch import load_file, save_file
    sd = load_file(path)
    w = sd["blocks.0.mlp.fc.weight"].view(-1)
    w[:n] += 0.01
    save_file(sd, path)


def test_defect3_a_changed_snapshot_stops_every_analysis(copy, usage_error):
    import backbone_update_analysis as bua
    run = copy()
    changed_values(runs.snapshot_path(run, 4))
    for main, extra in ((tpu.main, ["--null-draws", "10"]), (bua.main, []),
                        (bga.main, ["--batches", "2"]), (bfa.main, ["--batches", "2", "--K", "2"])):
        usage_error(main, ["--run", run, *extra], match="snapshot step 4 (")


def test_defect3_a_snapshot_replaced_by_a_link_to_another_is_refused(copy, usage_error):
    run = copy()
    os.remove(runs.snapshot_path(run, 4))
    os.symlink(runs.snapshot_path(run, 8), runs.snapshot_path(run, 4))
    usage_error(tpu.main, ["--run", run], match="is not the file training wrote")


def test_defect3_a_foreign_snapshot_without_a_hash_is_refused(copy, usage_error):
    run = copy()
    shutil.copy(runs.snapshot_path(run, 4), runs.snapshot_path(run, 2))
    usage_error(tpu.main, ["--run", run, "--partial"], match="has no recorded hash")


def test_defect3_fresh_says_why_after_a_snapshot_changed(analysed):
    assert runs.analysis_freshness(analysed, "trajectory_pca_uncentered") is None
    changed_values(runs.snapshot_path(analysed, 8))
    why = runs.analysis_freshness(analysed, "trajectory_pca_uncentered")
    assert why.startswith("snapshot step 8 (") and "is not the file training wrote" in why


def test_defect3_an_edited_config_stops_the_analyses(copy, usage_error):
    import backbone_update_analysis as bua
    run = copy()
    path = os.path.join(run, "config.json")
    rec = json.load(open(path))
    rec["config"]["d_model"] = 64
    json.dump(rec, open(path, "w"))
    for main in (tpu.main, bua.main):
        usage_error(main, ["--run", run], match="config.json is not the config the run trained")


@pytest.mark.parametrize("garbage", ["garbage", '{"step": "x", "val_loss": 1.0}',
                                     '{"step": 2, "val_loss": "low"}'])
def test_defect3_a_garbage_metrics_row_stops_every_analysis(copy, usage_error, garbage):
    import backbone_update_analysis as bua
    run = copy()
    path = os.path.join(run, "metrics.jsonl")
    lines = open(path).read().splitlines()
    open(path, "w").write("\n".join([lines[0], garbage, *lines[1:]]) + "\n")
    for main, extra in ((tpu.main, []), (bua.main, []), (bga.main, ["--batches", "2"])):
        usage_error(main, ["--run", run, *extra], match="line 2 is not a metrics row")


def test_defect4_leftovers_of_a_kill_at_the_first_start_are_restarted(micro_cfg, tmp_path, done,
                                                                      snapshots):
    cfg = micro_cfg(tmp_path, **SHORT)
    os.makedirs(os.path.join(cfg.run_dir, "snapshots"))
    for f in (".lock", "metrics.jsonl", "config.json.tmp999"):
        open(os.path.join(cfg.run_dir, f), "w").close()
    assert train.train(cfg)["status"] == "complete"
    assert "config.json.tmp999" not in os.listdir(cfg.run_dir)
    assert snapshots.read(cfg.run_dir, 8)["blocks.0.mlp.fc.weight"].equal(
        snapshots.read(done.run_dir, 8)["blocks.0.mlp.fc.weight"])


def test_defect4_a_run_killed_at_its_first_start_resumes(micro, argv, tmp_path, done):
    """train.py killed (SIGKILL) as soon as its run folder appears, then run again: it completes
    with the snapshots of an uninterrupted run."""
    import signal
    import subprocess
    import sys
    import time
    overrides = micro(tmp_path, **SHORT)
    run_dir = os.path.join(overrides["out_dir"], "tiny_seed42")
    p = subprocess.Popen([sys.executable, "train.py", *argv(overrides)], cwd=ROOT,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while p.poll() is None and not os.path.exists(os.path.join(run_dir, ".lock")):
            time.sleep(0.005)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    r = run_script(["train.py", *argv(overrides)])
    assert r.returncode == 0, r.stderr[-2000:]
    assert same_snapshots(run_dir, done.run_dir)


def test_defect6_a_finished_run_with_a_deleted_snapshot_is_trained_again(copy, config_of, done):
    run = copy()
    os.remove(runs.snapshot_path(run, 4))
    assert train.train(config_of(run))["status"] == "complete"
    sha = [runs.file_sha256(runs.snapshot_path(r, 4)) for r in (run, done.run_dir)]
    assert sha[0] == sha[1]
    assert [r["step"] for r in runs.read_metrics(run)] == [0, 4, 8]
    tpu.main(["--run", run, "--null-draws", "10"])  # the analysis that asked for it now runs


def test_defect7_full_disk_on_a_snapshot_is_one_line(micro, argv, tmp_path, done):
    # a snapshot: 576 kB
    r = run_script(["train.py", *argv(micro(tmp_path, **SHORT))], limit_bytes=100_000)
    one_line(r, "snapshot step 0 could not be written (file too large")


def test_defect7_full_disk_on_the_state_file_is_one_line(micro, argv, tmp_path, done):
    overrides = micro(tmp_path, **SHORT)
    r = run_script(["train.py", *argv(overrides)], limit_bytes=1_000_000)  # the state: 1.75 MB
    one_line(r, "state_latest.pt: file too large")
    assert not [f for d, _, fs in os.walk(overrides["out_dir"]) for f in fs if ".tmp" in f]


def test_defect7_full_disk_under_an_analysis_is_one_line(copy):
    run = copy()
    pca = ["trajectory_pca_uncentered.py", "--run", run, "--null-draws", "10"]
    one_line(run_script(pca, limit_bytes=2_000), "file too large")
    one_line(run_script([*pca, "--out", "/proc/x.json"]), "cannot write")


def test_defect10_a_killed_figure_write_leaves_no_temp_file_behind(tmp_path):
    import subprocess
    import sys
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a process id that no longer runs
    path = str(tmp_path / "fig.png")
    for stale in (f"{path}.tmp{dead.pid}.png", f"{path}.tmp{dead.pid}"):
        open(stale, "w").write("cut")
    fig = common.pyplot().figure()
    common.save_figure(fig, path)
    assert os.listdir(tmp_path) == ["fig.png"]


# ----------------------------------------------------------------------------- defect 1: fresh
# runs repeat
# Shapes large enough that the CPU kernels split their sums over the intra-op threads (the micro
# runs above
# are small enough to run on one thread, so their bitwise equality says nothing about thread
# scheduling).
PARALLEL = dict(SHORT, n_layer=1, d_model=64, n_head=4, d_ff=256, batch_size=16, grad_accum=2,
                steps=6, eval_every=3, snapshot_every=3, state_every=3)


def same_snapshots(a: str, b: str) -> bool:
    """Whether two runs wrote bitwise the same snapshots (the sha256s train.py recorded)."""
    return runs.snapshot_hashes(a)["snapshots"] == runs.snapshot_hashes(b)["snapshots"]


def test_defect1_fresh_runs_are_bitwise_equal_again_and_again_under_load(micro, argv, tmp_path):
    """Four fresh runs of one config, two at a time (each loads the machine for the other): every
    snapshot of each is bitwise the first run's (their sha256s, as train.py recorded them)."""
    import subprocess
    import sys
    for pair in ((0, 1), (2, 3)):
        cmds = [[sys.executable, "train.py", *argv(micro(tmp_path, **PARALLEL, name=f"r{i}"))]
                for i in pair]
        procs = [subprocess.Popen(c, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True) for c in cmds]
        for p in procs:
            assert p.wait(timeout=300) == 0, p.stderr.read()[-2000:]
    rd = [str(tmp_path / "runs" / f"r{i}") for i in range(4)]
    assert len(runs.snapshot_hashes(rd[0])["snapshots"]) == 3
    assert all(same_snapshots(rd[0], r) for r in rd[1:])
    assert {runs.read_record(r)["env"]["threads"] for r in rd} == {torch.get_num_threads()}


def test_deterministic_kernels_change_no_cpu_result_and_are_recorded(micro, argv, tmp_path, done):
    """--deterministic true (for CUDA) runs on the CPU with the same numbers, is recorded in
    config.json and turns PyTorch's deterministic algorithms on; a run cannot be resumed with the
    other setting."""
    overrides = micro(tmp_path, **SHORT, deterministic=True)
    code = ("import sys, torch, train; train.main(sys.argv[1:]); print("
            "torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic)")
    r = run_script(["-c", code, *argv(overrides)])
    assert r.returncode == 0 and r.stdout.splitlines()[-1] == "True True", r.stderr[-2000:]
    run_dir = os.path.join(overrides["out_dir"], "tiny_seed42")
    assert runs.read_record(run_dir)["config"]["deterministic"] is True
    assert same_snapshots(run_dir, done.run_dir)
    off = Config(**dict(runs.run_config(run_dir).to_dict(), deterministic=False))
    with pytest.raises(UsageError, match="differs in: deterministic"):
        runs.check_run_dir(off)


# ----------------------------------------------------------------------------- run_seed.sh's python
@pytest.mark.parametrize("how", ["PYTHON", "VIRTUAL_ENV"])
def test_run_seed_uses_the_python_of_its_environment(tmp_path, how):
    """Given PYTHON, or an activated virtual environment, run_seed.sh runs that python even where
    python3 on the PATH cannot import torch: the config error comes from the code, not 'cannot
    import torch'."""
    import subprocess
    import sys
    bare = tmp_path / "bare"  # python3 on the PATH: a python without torch
    bare.mkdir()
    (bare / "python3").write_text("#!/bin/sh\nexec /usr/bin/env -i false \"$@\"\n")
    (bare / "python3").chmod(0o755)
    if how == "VIRTUAL_ENV" and sys.prefix == sys.base_prefix:
        pytest.skip("the tests do not run in a virtual environment")
    env = dict(os.environ, PATH=f"{bare}:/usr/bin:/bin")
    env.pop("PYTHON", None)
    env.pop("VIRTUAL_ENV", None)
    env.update({"PYTHON": sys.executable} if how == "PYTHON" else {"VIRTUAL_ENV": sys.prefix})
    run_seed = ["bash", "run_seed.sh", "1", "--preset", "tiny"]
    r = subprocess.run([*run_seed, "--d_model", "0"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == "error: d_model, n_head and d_ff must be > 0", r.stderr
    env.pop(how)  # neither: python3 on the PATH, which cannot import torch, is named in one line
    r = subprocess.run(run_seed, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith(f"error: {bare}/python3 cannot import torch"), r.stderr
