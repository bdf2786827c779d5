"""Bad input to every script: one line `error: ...` on stderr, exit code 2, nothing created (one table)."""
import importlib
import json
import os
import shutil

import pytest
import runs
import train

# (script, arguments, text the error line must contain). Placeholders: {run} a finished micro run (snapshots
# 0, 4, 8), {nan} a copy with NaN in one snapshot, {nodata} a copy whose data file is gone, {src} an
# unfinished run folder, {missing} a path that does not exist, {empty} an empty folder, {micro} the overrides
# of a micro run under {tmp}/new (never created), {file} a file of text, {empty_txt} an empty .txt
# file,
# {binary_txt} a .txt file of binary bytes. A case with a fourth element "defectN" is issue 18's defect N
# (failed before); its test id starts with it.
CASES = [
    ("train", ["--no_such_field", "1"], "unrecognized arguments"),
    ("train", ["--steps", "1.5"], "expects int"),
    ("train", ["--preset", "huge"], "unknown preset"),
    ("train", ["{micro}", "--data", "{missing}"], "data file not found"),
    ("train", ["{micro}", "--device", "tpu"], "unknown device"),
    ("train", ["{micro}", "--stop_rule", "3:5:0.1"], "stop_rule step must be an eval step"),
    ("trajectory_pca_uncentered", ["--run", "{missing}"], "run folder not found"),
    ("trajectory_pca_uncentered", ["--run", "{empty}"], "no snapshots folder"),
    ("trajectory_pca_uncentered", ["--run", "{run}", "--anchor", "7"], "anchor 7 has no snapshot"),
    ("trajectory_pca_uncentered", ["--run", "{run}", "--anchor", "8"], "no snapshot after anchor step 8"),
    ("trajectory_pca_uncentered", ["--run", "{run}", "--device", "tpu"], "unknown device"),
    ("trajectory_pca_uncentered", ["--run", "{run}", "--window", "1"], "--window and --null-draws must be"),
    ("trajectory_pca_uncentered", ["--run", "{nan}"], "step 4: blocks.1.mlp.fc.weight contains NaN"),
    ("trajectory_pca_uncentered", ["--run", "{src}"], "has not finished training"),
    ("backbone_update_analysis", ["--run", "{missing}"], "run folder not found"),
    ("backbone_update_analysis", ["--run", "{run}", "--lag", "-1"], "--lag must be >= 0"),
    ("backbone_update_analysis", ["--run", "{run}", "--lag", "3"], "no snapshot pair 3 steps apart"),
    ("backbone_update_analysis", ["--run", "{nan}"], "contains NaN"),
    ("backbone_gradient_analysis", ["--run", "{missing}"], "not found"),
    ("backbone_gradient_analysis", ["--run", "{run}", "--every", "0"], "--every"),
    ("backbone_gradient_analysis", ["--run", "{run}", "--batches", "1"], "--batches must be >= 2"),
    ("backbone_gradient_analysis", ["--run", "{run}", "--anchor", "5"], "anchor 5 has no snapshot"),
    ("backbone_gradient_analysis", ["--run", "{nodata}"], "cannot load the data"),
    ("backbone_fisher_analysis", ["--run", "{nodata}"], "cannot load the data"),
    ("backbone_fisher_analysis", ["--run", "{missing}"], "not found"),
    ("backbone_fisher_analysis", ["--run", "{run}", "--steps", "4,abc"], "--steps"),
    ("backbone_fisher_analysis", ["--run", "{run}", "--steps", "5"], "--steps step 5 has no snapshot"),
    ("backbone_fisher_analysis", ["--run", "{run}", "--group", "block7"], "--group"),
    ("backbone_fisher_analysis", ["--run", "{run}", "--K", "0"], "--K"),
    ("backbone_fisher_analysis", ["--run", "{run}", "--steps", "4", "--every", "2"], "not allowed"),
    ("sgd_control", ["{micro}", "--runs", "A,E"], "unknown run 'E'"),
    ("sgd_control", ["{micro}", "--runs", "C'"], "trained by sgd_nesterov_run.py"),
    ("sgd_control", ["{micro}", "--lr", "0.1"], "--lr is fixed by the experiment"),
    ("sgd_nesterov_run", ["{micro}", "--nesterov", "false"], "--nesterov is fixed by the experiment"),
    ("sgd_matched_valloss", ["{micro}"], "train it first: python sgd_control.py --runs A,C"),
    ("beta2_analysis", ["{micro}", "--betas", "0.9,abc"], "comma-separated numbers"),
    ("beta2_analysis", ["{micro}", "--betas", "1.0"], "outside [0, 1)"),
    ("beta2_analysis", ["{micro}", "--betas", "0.9,0.90"], "duplicates"),
    ("beta2_analysis", ["{micro}", "--window", "12:4"], "--window must be START:END"),
    ("beta2_analysis", ["{micro}", "--beta2", "0.5"], "--beta2 is fixed by the experiment"),
    ("beta2_analysis", ["{micro}", "--null_draws", "0"], "--null_draws must be >= 1"),
    ("reheat", ["{micro}"], "train it first: python train.py --preset tiny"),
    ("reheat", ["{micro}", "--run", "{missing}"], "not found"),
    ("reheat", ["{micro}", "--run", "{src}"], "no snapshot at step 8"),
    ("reheat", ["{micro}", "--run", "{src}", "--step", "7"], "no snapshot at step 7"),
    ("reheat", ["{micro}", "--run", "{run}", "--lrs", "0"], "must be > 0"),
    ("reheat", ["{micro}", "--run", "{run}", "--lrs", "1e-3,x"], "comma-separated numbers"),
    ("reheat", ["{micro}", "--run", "{run}", "--lr", "1e-3"], "--lr is fixed by the experiment"),
    ("reheat", ["{micro}", "--run", "{run}", "--seed", "7"], "differs from the source run"),
    ("reheat", ["{micro}", "--run", "{run}", "--threshold", "2"], "--threshold must be in [0, 1]"),
    ("experiments", ["--preset", "huge"], "invalid choice"),
    ("runs", ["--run", "{run}"], "--fresh"),
    ("dataset", ["--preset", "huge"], "unknown preset"),
    ("bench", ["--preset", "huge"], "unknown preset"),
    # issue 18, defect 5: a meaningless value stops before anything is written
    ("train", ["{micro}", "--d_model", "0"], "d_model, n_head and d_ff must be > 0", "defect5"),
    ("train", ["{micro}", "--n_head", "0"], "d_model, n_head and d_ff must be > 0", "defect5"),
    ("train", ["{micro}", "--n_head", "3"], "d_model (32) must be divisible by n_head (3)", "defect5"),
    ("train", ["{micro}", "--d_ff", "0"], "d_model, n_head and d_ff must be > 0", "defect5"),
    ("train", ["{micro}", "--lr", "inf"], "lr must be a finite number", "defect5"),
    ("train", ["{micro}", "--eps", "inf"], "eps must be a finite number", "defect5"),
    ("train", ["{micro}", "--lambda_probe", "nan"], "lambda_probe must be a finite number", "defect5"),
    ("train", ["{micro}", "--lambda_probe", "-1"], "lambda_probe, lambda_probe_late and", "defect5"),
    # defect 8: a file where a folder is wanted
    ("train", ["{micro}", "--cache_dir", "{file}"], "is a file, not a folder", "defect8"),
    ("dataset", ["{micro}", "--cache_dir", "{file}"], "is a file, not a folder", "defect8"),
    # defect 9: --name stays inside out_dir
    ("train", ["{micro}", "--name", "../escaped"], "name must be a plain folder name", "defect9"),
    ("train", ["{micro}", "--name", "{tmp}/absolute"], "name must be a plain folder name", "defect9"),
    # defect 10
    ("train", ["{micro}", "--init_from", "{file}"], "cannot load", "defect10"),
    ("train", ["{micro}", "--init_from", "{run_snapshot}"], "cannot load", "defect10"),
    ("train", ["{micro}", "--n_val_stories", "1", "--cache_dir", "{tmp}/c1"], "too few for", "defect10"),
    ("train", ["{micro}", "--data", "{empty_txt}"], "is empty", "defect10"),
    ("train", ["{micro}", "--data", "{binary_txt}"], "is not UTF-8 text", "defect10"),
    ("make_results", ["--collect-only", "--results", "{file}"], "is a file, not a folder", "defect10"),
    ("collect_results", ["--runs", "{tmp}", "--version", "v2", "--date", "2026-13-01"], "a date", "defect10"),
    ("dataset", ["{micro}", "--sample", "-1"], "--sample must be >= 0", "defect10"),
    ("runs", ["--run", "{missing}", "--fresh", "backbone_update_analysis"], "run folder not found", "defect10"),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory, micro_cfg, micro, argv, snapshots):
    """The folders the placeholders name, made once."""
    tmp = tmp_path_factory.mktemp("errors")
    cfg = micro_cfg(tmp, steps=8, eval_every=4, snapshot_every=4, state_every=4, lambda_step=4, n_layer=2)
    assert train.train(cfg)["status"] == "complete"
    nan = str(tmp / "nan")
    shutil.copytree(cfg.run_dir, nan)
    sd = snapshots.read(nan, 4)
    sd["blocks.1.mlp.fc.weight"][0, 0] = float("nan")
    snapshots.write(nan, 4, sd)
    # as if training had written it (a diverged run): its hash recorded
    path = snapshots.path(nan, 4)
    runs.record_hashes(nan, snapshot=path, sha=runs.file_sha256(path))
    src = str(tmp / "src")
    for step in (0, 4):
        snapshots.write(src, step, snapshots.read(cfg.run_dir, step))
    json.dump({"config": cfg.to_dict()}, open(os.path.join(src, "config.json"), "w"))
    nodata = str(tmp / "nodata")
    shutil.copytree(cfg.run_dir, nodata)
    rec = json.load(open(os.path.join(nodata, "config.json")))
    rec["config"]["data"] = str(tmp / "gone.jsonl")
    json.dump(rec, open(os.path.join(nodata, "config.json"), "w"))
    runs.record_hashes(nodata, config=rec["config"])  # as if trained on that file, since deleted
    os.makedirs(tmp / "empty")
    (tmp / "file").write_text("not a folder\n")
    (tmp / "empty.txt").write_text("")
    (tmp / "binary.txt").write_bytes(bytes(range(256)) * 4)
    return dict(run=cfg.run_dir, nan=nan, src=src, nodata=nodata, missing=str(tmp / "missing"),
                empty=str(tmp / "empty"), tmp=str(tmp), micro=argv(micro(tmp / "new", steps=8)),
                file=str(tmp / "file"), empty_txt=str(tmp / "empty.txt"),
                binary_txt=str(tmp / "binary.txt"),
                run_snapshot=runs.snapshot_path(cfg.run_dir, 4))


def expand(args, world):
    out = []
    for a in args:
        out += world["micro"] if a == "{micro}" else [a.format(**world)]
    return out


def tree(path):
    return sorted(os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs)


def case_id(i, case):
    """script-index, prefixed with issue 18's defect (defectN-script-index) where the case is one."""
    return "-".join([*case[3:], case[0], str(i)])


@pytest.mark.parametrize("script,args,text", [c[:3] for c in CASES],
                         ids=[case_id(i, c) for i, c in enumerate(CASES)])
def test_bad_input_is_one_line(script, args, text, world, usage_error):
    before = tree(world["tmp"])
    usage_error(importlib.import_module(script).main, expand(args, world), match=text)
    assert tree(world["tmp"]) == before  # nothing created, nothing left behind
