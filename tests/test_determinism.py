"""determinism.py: the runs it trains are D's sweep runs, and its summary counts what it says."""
import json
import os

import pytest

import config
import determinism as det
from experiments import new_control_config


@pytest.mark.parametrize("preset", ["paper", "tiny"])
def test_train_args_give_the_sweep_config_of_d(preset, tmp_path):
    """Every training field of the command line equals D's sweep config; only the run's name, the
    snapshot schedule (ends only), the progress bar and the switch under test differ."""
    cfg = config.parse_config(det.train_args(preset, 1.0, 43, str(tmp_path), "true", 2))
    given = {"seed": 43} | ({"preset": preset} if preset != "paper" else {})
    want = new_control_config("D", given, 1.0, sweep=True)
    differ = {k for k in vars(want) if getattr(cfg, k) != getattr(want, k)}
    assert differ <= {"name", "out_dir", "snapshot_every", "snapshot_extra", "progress", "deterministic"}
    assert cfg.deterministic and cfg.name == "D_dettrue_2"
    stop = int(want.stop_rule.split(":")[0])
    assert cfg.snapshot_steps()[:2] == [0, stop]  # the step the runs are compared at is a snapshot


def fake_run(folder, name, losses, final_hash):
    d = folder / name
    d.mkdir(parents=True)
    rows = [dict(step=s, val_loss=v) for s, v in losses.items()]
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    snaps = {"step_000000.safetensors": "a" * 64, "step_001000.safetensors": final_hash}
    (d / "snapshot_hashes.json").write_text(json.dumps(dict(config_sha="x", snapshots=snaps)))


def test_summary_counts_spread_and_distinct_weights(tmp_path):
    fake_run(tmp_path, "D_detfalse_1", {0: 8.0, 1000: 3.9}, "b" * 64)
    fake_run(tmp_path, "D_detfalse_2", {0: 8.0, 1000: 4.2}, "c" * 64)
    fake_run(tmp_path, "D_dettrue_1", {0: 8.0, 1000: 4.1}, "d" * 64)
    fake_run(tmp_path, "D_dettrue_2", {0: 8.0, 1000: 4.1}, "d" * 64)
    s = det.summarize_runs(str(tmp_path))
    assert s["false"]["distinct_final_weights"] == 2 and s["true"]["distinct_final_weights"] == 1
    assert s["false"]["val"]["1000"] == [3.9, 4.2]
    text = det.table(s, {})
    assert "3.00e-01" in text and "0.00e+00" in text


@pytest.mark.parametrize("argv, msg", [
    (["--repeats", "1"], "at least 2"),
    (["--summarize", "/nonexistent/x"], "no such folder"),
    (["--bench-off", "x.json"], "go together"),
])
def test_bad_input_is_one_line(argv, msg, capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        det.main(argv + ["--out", str(tmp_path / "out")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and len(err.splitlines()) == 1
    assert not os.path.exists(tmp_path / "out")
