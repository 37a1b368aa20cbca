"""The learning-curve and model-target benchmarks: their logic on small inputs (the real runs are in
benchmarks/results/, made by the commands their reports name)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from ddpm_course.train import TrainConfig, train

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import learning_curve as LC  # noqa: E402
import model_targets as MT  # noqa: E402
import quality_vs_nfe as Q  # noqa: E402


def rec(fid, shares=None):
    r = {"fid": fid}
    if shares is not None:
        r["class_shares"] = shares
    return r


def test_targets_are_judged_as_the_issue_states():
    even = [0.1] * 10
    recs = {"dpm20": rec(1.2, even), "dpm10": rec(1.4), "dpm10_small": rec(3.0), "ddpm1000": rec(2.5),
            "ddim_eta0": rec(2.0), "ddim_eta1": rec(2.4)}
    rows = MT.verdicts(recs, {"accuracy": 0.99}, 250)
    assert [ok for *_, ok in rows] == [True, True, True, True, True, True]
    skewed = [0.05, 0.15] + [0.1] * 8
    recs |= {"dpm20": rec(1.6, skewed), "dpm10_small": rec(3.9), "ddim_eta0": rec(2.5)}
    rows = MT.verdicts(recs, {"accuracy": 0.97}, 250)
    assert [ok for *_, ok in rows] == [False, False, True, False, False, False]
    assert "5.0% (digit 0) – 15.0% (digit 1)" in rows[0][1] and "1.56 × DDPM" in rows[3][1]
    rows = MT.verdicts({}, {}, 250)                              # nothing measured yet
    assert [ok for *_, ok in rows] == [None] * 6


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lc")
    g = torch.Generator().manual_seed(0)
    data = (torch.rand(32, 1, 28, 28, generator=g) * 2 - 1, torch.randint(0, 10, (32,), generator=g))
    cfg = TrainConfig(model="tiny", steps=4, batch_size=4, checkpoint_every=4, keep_every=2, sample_every=-1,
                      precision="fp32", lr_schedule="cosine", loss_weighting="min_snr", warmup=1,
                      command="ddpm-course train --config tiny (test)")
    train(cfg, tmp / "run", data=data, device=torch.device("cpu"), progress=False)
    return tmp


def test_learning_curve_evaluates_each_snapshot_once_and_reports(tiny_run, capsys):
    results = tiny_run / "results"
    argv = ["--runs", str(tiny_run / "run"), "--n", "20", "--steps", "1", "--results", str(results),
            "--device", "cpu"]
    assert LC.main(argv) == 0
    points = sorted((results / "cache" / "learning_curve").glob("*.json"))
    assert len(points) == 2                                      # snap_000002.pt and snap_000004.pt
    p = json.loads(points[0].read_text())
    assert p["images_seen"] in (8, 16) and p["recipe"]["loss_weighting"] == "min_snr"
    assert len(p["uncond"]["class_shares"]) == 10 and 0 <= p["uncond"]["memorisation"]["train_closer"] <= 1
    assert 0 <= p["cond"]["accuracy"] <= 1 and "clipped_far_fraction" in p["uncond"]
    md = (results / "learning_curve.md").read_text()
    assert "min-SNR-5" in md and "| 4 | 16 | 20 |" in md and (results / "learning_curve.png").is_file()
    mtime = points[0].stat().st_mtime
    assert LC.main(argv) == 0                                    # cached: nothing is sampled again
    assert points[0].stat().st_mtime == mtime
    LC.set_results(Q.HERE / "results")                                # leave the modules as found


def test_learning_curve_rejects_bad_arguments(tmp_path):
    with pytest.raises(SystemExit):
        LC.main(["--runs", str(tmp_path / "missing")])
    with pytest.raises(SystemExit):
        LC.main(["--shipped", "imagenet"])


def test_model_targets_runs_on_a_checkpoint(tiny_run, capsys):
    results = tiny_run / "targets"
    last = str(tiny_run / "run" / "last.pt")
    assert MT.main(["--weights", last, "--n", "20", "--ddpm-n", "4", "--skip", "ddpm1000",
                    "--results", str(results), "--device", "cpu"]) == 0
    out = json.loads((results / "model_targets.json").read_text())
    assert [t["met"] for t in out["targets"]][2:4] == [None, None]   # DDPM-1000 skipped: not measured
    assert out["guided"]["n"] == 20 and len(out["targets"]) == 6
    assert "not measured" in (results / "model_targets.md").read_text()
    Q.set_results(Q.HERE / "results")                                 # leave the module as found
