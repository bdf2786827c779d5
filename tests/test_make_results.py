"""The results plan: order, resumption through markers, failures that skip only their dependents."""
import os

import pytest

import make_results as mr


def fake_plan(tmp_path, fail_b=False):
    """Three stages whose commands append their name to a file; b fails when asked; c needs b."""
    log = tmp_path / "order.txt"
    say = lambda name, rc=0: ["-c", f"open({str(log)!r}, 'a').write({name!r} + '\\n'); raise SystemExit({rc})"]  # noqa: E731
    return log, [mr.Stage("p1.a", say("a"), 1), mr.Stage("p2.b", say("b", 3 if fail_b else 0), 1),
                 mr.Stage("p2.c", say("c"), 1, needs=["p2.b"]), mr.Stage("p3.d", say("d"), 1)]


def run_plan(monkeypatch, tmp_path, plan, *args):
    monkeypatch.setattr(mr, "build_plan", lambda *a, **k: plan)
    monkeypatch.setattr(mr, "collect", lambda *a, **k: [])
    return mr.main(["--out_dir", str(tmp_path / "runs"), *args])


def test_stages_run_in_plan_order_and_rerun_skips_finished(monkeypatch, tmp_path):
    log, plan = fake_plan(tmp_path)
    assert run_plan(monkeypatch, tmp_path, plan) == 0
    assert log.read_text().split() == ["a", "b", "c", "d"]
    assert run_plan(monkeypatch, tmp_path, plan) == 0
    assert log.read_text().split() == ["a", "b", "c", "d"]  # every marker matched: nothing ran again


def test_failed_stage_skips_its_dependents_only_and_is_retried(monkeypatch, tmp_path):
    log, plan = fake_plan(tmp_path, fail_b=True)
    assert run_plan(monkeypatch, tmp_path, plan) == 1
    assert log.read_text().split() == ["a", "b", "d"]     # c needs b: skipped; d goes on
    log.write_text("")
    _, fixed = fake_plan(tmp_path)
    assert run_plan(monkeypatch, tmp_path, fixed) == 0
    assert log.read_text().split() == ["b", "c"]          # a and d were done; b is retried, then c


def test_a_changed_command_is_not_done(monkeypatch, tmp_path):
    log, plan = fake_plan(tmp_path)
    run_plan(monkeypatch, tmp_path, plan)
    plan[0].cmd = plan[0].cmd[:1] + [plan[0].cmd[1].replace("write('a'", "write('a2'")]
    log.write_text("")
    run_plan(monkeypatch, tmp_path, plan)
    assert log.read_text().split() == ["a2"]


def test_parts_select_and_unknown_part_is_one_line(monkeypatch, tmp_path, usage_error):
    log, plan = fake_plan(tmp_path)
    assert run_plan(monkeypatch, tmp_path, plan, "--parts", "p3") == 0
    assert log.read_text().split() == ["d"]
    usage_error(run_plan, monkeypatch, tmp_path, plan, "--parts", "p9", match="unknown part")


def test_real_plan_lists_every_part_with_an_eta(capsys, tmp_path):
    assert mr.main(["--list", "--out_dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for part in ("seed42", "seed271", "controls", "beta2", "reheat", "finetune", "bench"):
        assert f"\n{part} " in out
    assert "ETA of what is left" in out
    assert not os.path.exists(tmp_path / ".plan")  # --list writes nothing


@pytest.mark.parametrize("preset", ["paper", "tiny"])
def test_every_stage_script_exists(preset, tmp_path):
    for s in mr.build_plan(preset, str(tmp_path), str(tmp_path / "res"), None):
        there = os.path.isfile(os.path.join(mr.ROOT, s.cmd[0]))
        assert there or s.cmd[0] in mr.HOOK_SCRIPTS, s.cmd[0]
        assert all(n in {t.name for t in mr.build_plan(preset, "r", "x", None)} for n in s.needs)


def test_the_larger_models_run_only_when_named(tmp_path):
    plan = mr.build_plan("paper", "runs", "results/v2", None)
    assert {s.part for s in mr.select(plan, None)} & set(mr.OPTIONAL_PARTS) == set()
    scale = mr.select(plan, "scale")
    assert [s.name for s in scale[:2]] == ["scale.sweep", "scale.train"]
    # the Fisher analysis reads the gradient analysis's gradient record: it waits for it
    fisher = "scale.backbone_fisher_analysis"
    assert all(s.needs == ["scale.train"] for s in scale[2:] if s.name != fisher) and len(scale) == 8
    assert next(s for s in scale if s.name == fisher).needs == ["scale.train",
                                                                "scale.backbone_gradient_analysis"]
    assert scale[-1].cmd[:3] == ["optimizer_null.py", "--run", "{out_dir}/3x_seed42"]
    tiny = mr.select(mr.build_plan("tiny", "runs", "r", None), "scale8x")
    assert tiny[-2].cmd[:3] == ["trajectory_record.py", "--run", "{out_dir}/tiny_8x_seed42"]


def _run(runs, name, commit, analysis=None):
    """A finished run folder of commit `commit` (config, metrics; an analysis JSON if given)."""
    import json
    d = runs / name
    (d / "analysis").mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"config": {}, "env": {"git_commit": commit}}))
    (d / "metrics.jsonl").write_text('{"step": 0}\n')
    if analysis:
        (d / "analysis" / analysis).write_text("{}")


def test_a_collect_keeps_the_runs_another_part_collected_into_the_same_folder(tmp_path):
    """The controls and Table 9 both fill sgd_control, perhaps on two bare machines: collecting one must not
    delete the other's runs (it did: the whole folder was replaced); a run collected again is replaced whole,
    and provenance keeps the earlier collect's commit for the runs that stay."""
    import json
    import collect_results as cr
    res = tmp_path / "results"
    one, two, three = tmp_path / "m1", tmp_path / "m2", tmp_path / "m3"
    _run(one, "sgd_D_seed42", "c1", analysis="old.json")
    _run(one, "seed42", "c1", analysis="pca.json")
    cr.collect(str(one), str(res))
    _run(two, "sgd_A_seed42", "c2")
    _run(two, "sgd_B_seed42", "c2")
    (two / "sgd_control").mkdir()
    (two / "sgd_control" / "sgd_control.json").write_text("{}")
    _run(two, "seed42", "c2")  # retrained, not analysed yet
    cr.collect(str(two), str(res))
    sc = res / "sgd_control"
    assert sorted(os.listdir(sc / "runs")) == ["sgd_A_seed42", "sgd_B_seed42", "sgd_D_seed42"]
    assert (sc / "sgd_control.json").exists() and (sc / "runs" / "sgd_D_seed42" / "analysis" / "old.json").exists()
    prov = json.load(open(sc / "provenance.json"))
    assert prov["git_commit"] == "c2" and prov["source_runs"] == ["sgd_A_seed42", "sgd_B_seed42"]
    assert [(e["git_commit"], e["source_runs"]) for e in prov["earlier"]] == [("c1", ["sgd_D_seed42"])]
    assert not os.path.exists(res / "seed42" / "analysis" / "pca.json")  # one run's folder: replaced whole
    _run(three, "sgd_D_seed42", "c3")  # D again: its old files go, the earlier collect of D is gone
    cr.collect(str(three), str(res))
    assert not (sc / "runs" / "sgd_D_seed42" / "analysis" / "old.json").exists()
    prov = json.load(open(sc / "provenance.json"))
    assert [(e["git_commit"], e["source_runs"]) for e in prov["earlier"]] == [("c2", ["sgd_A_seed42", "sgd_B_seed42"])]
