"""The few-step benchmarks of notebooks 09 and 10 on toy sizes: ECT and reflow train, resume and export a
model whose manifest says how to sample it (and that it is unconditional), and the comparison's table and
figure summarise seeds as mean ± standard deviation. The real runs are in benchmarks/results/, made by the
commands their files name."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

import ddpm_course as dc

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import consistency_mnist as CM  # noqa: E402
import reflow_mnist as RF  # noqa: E402


def test_consistency_benchmark_trains_resumes_exports_and_samples(tmp_path, monkeypatch):
    monkeypatch.setenv("DDPM_COURSE_DEVICE", "cpu")
    dc.device.cache_clear()
    run, weights = tmp_path / "run", tmp_path / "weights"
    args = ["train", "--out", str(run), "--stage-iters", "1", "--batch-size", "2"]
    CM.main([*args, "--iters", "2"])
    CM.main([*args, "--iters", "3", "--resume"])
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert log[-1]["update"] == 3 and [p.name for p in sorted(run.glob("stage_*.pt"))] == [
        "stage_00.pt", "stage_01.pt", "stage_02.pt"]
    monkeypatch.setattr(CM, "RESULTS", tmp_path / "results")
    with pytest.warns(UserWarning):                       # the FID of 4 samples is biased, and it says so
        CM.main(["stages", "--out", str(run), "--n", "4"])
    tuning = json.loads((tmp_path / "results" / "consistency_tuning.json").read_text())
    assert {(r["stage"], r["ema"], r["steps"]) for r in tuning["stages"]} == {
        (a, e, k) for a in range(3) for e in (True, False) for k in (1, 2)}
    assert tuning["log"][-1]["update"] == 3 and "| 2 | 3 | EMA |" in (tmp_path / "results" /
                                                                      "consistency_tuning.md").read_text()
    CM.main(["export", "--checkpoint", str(run / "last.pt"), "--name", "tiny_cm",
             "--weights-dir", str(weights)])
    meta = dc.pretrained.manifest("tiny_cm", weights)
    assert meta["sampling"] == {"sampler": "consistency", "steps": 1, "spacing": "trailing",
                                "prediction": "v"}
    assert meta["unconditional"] is True and meta["steps"] == 3
    assert meta["consistency"]["init_sha256"] == dc.pretrained.manifest("mnist")["sha256"]
    model, s = dc.load_pretrained("tiny_cm", device="cpu", weights_dir=weights)
    x = dc.sample(model, s, torch.randn(2, 1, 28, 28), generator=torch.Generator().manual_seed(1),
                  **{**meta["sampling"], "steps": 2})
    assert x.shape == (2, 1, 28, 28) and torch.isfinite(x).all()
    dc.device.cache_clear()


def test_consistency_export_refuses_another_kind_of_checkpoint(tmp_path):
    from ddpm_course.train import TrainConfig, train

    train(TrainConfig(model="tiny", steps=1, batch_size=2, checkpoint_every=1, sample_every=-1, warmup=0),
          tmp_path / "t", progress=False)
    with pytest.raises(SystemExit, match="not a consistency-tuning checkpoint"):
        CM.main(["export", "--checkpoint", str(tmp_path / "t" / "last.pt"), "--name", "x",
                 "--weights-dir", str(tmp_path / "w")])


def test_reflow_benchmark_pairs_trains_and_exports(tmp_path, monkeypatch):
    monkeypatch.setenv("DDPM_COURSE_DEVICE", "cpu")
    dc.device.cache_clear()
    out, weights = tmp_path / "rf", tmp_path / "weights"
    RF.main(["pairs", "--out", str(out), "--n", "3", "--steps", "1"])
    pairs = torch.load(out / "pairs.pt", weights_only=True)
    assert pairs["eps"].shape == pairs["x0"].shape == (3, 1, 28, 28) and pairs["steps"] == 1
    with pytest.raises(SystemExit, match="pairs.pt does not exist"):
        RF.main(["train", "--out", str(tmp_path / "empty"), "--iters", "1"])
    RF.main(["train", "--out", str(out), "--iters", "2", "--batch-size", "2"])
    RF.main(["export", "--checkpoint", str(out / "train" / "last.pt"), "--name", "tiny_rf", "--weights-dir",
             str(weights)])
    meta = dc.pretrained.manifest("tiny_rf", weights)
    assert meta["sampling"]["prediction"] == "flow" and meta["unconditional"] is True
    assert "3 pairs" in meta["reflow"]["pairs"]
    model, s = dc.load_pretrained("tiny_rf", device="cpu", weights_dir=weights)
    x_T = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    S = RF.path_straightness(model, s, x_T, 4, "flow")
    assert S >= 0 and S == RF.path_straightness(model, s, x_T, 4, "flow")
    dc.device.cache_clear()


def _fake_result():
    rows = []
    for seed, bump in ((0, 0.0), (1, 0.2), (2, -0.2)):
        for label, nfe, fid in (("consistency model (ECT)", 1, 5.0), ("consistency model (ECT)", 2, 3.0),
                                ("progressive distillation", 1, 6.0), ("DDIM (trailing)", 1, 38.0),
                                ("DPM-Solver++(2M) (karras)", 10, 2.3)):
            rows.append({"sampler": label, "nfe": nfe, "seed": seed, "fid": fid + bump, "kid": 0.1})
    return {"n": 100, "seeds": [0, 1, 2], "weights_sha256": {"mnist": "ab" * 32},
            "real_vs_real_fid": [0.3, 0.3, 0.3], "rows": rows, "command": "python x"}


def test_comparison_table_reports_mean_and_std_over_seeds_sorted_by_nfe_then_fid(tmp_path):
    table = CM.summarise(_fake_result())
    lines = [line for line in table.splitlines() if line.startswith("| ") and "NFE" not in line]
    assert lines[0].startswith("| consistency model (ECT) | 1 | 5.00 ± 0.20 |")
    assert lines[1].startswith("| progressive distillation | 1 | 6.00 ± 0.20 |")
    assert lines[-1].startswith("| DPM-Solver++(2M) (karras) | 10 |")
    assert "floor at this n: 0.30" in table and "mnist `abababababab…`" in table
    CM.figure(_fake_result(), tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 10_000


def test_to_uint8_rounds_to_pixel_levels():
    x = CM.to_uint8(torch.tensor([-2.0, -1.0, 0.0, 0.5, 3.0]))
    levels = (x + 1) * 127.5
    torch.testing.assert_close(levels, levels.round())
    assert float(x[0]) == -1.0 and float(x[-1]) == 1.0


def test_compare_caches_each_cell_and_reports_what_it_measured(tmp_path, monkeypatch):
    monkeypatch.setenv("DDPM_COURSE_DEVICE", "cpu")
    dc.device.cache_clear()
    monkeypatch.setattr(CM, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(CM, "FIGURES", tmp_path / "figures")
    args = ["compare", "--n", "4", "--seeds", "0", "1", "--cache", str(tmp_path / "cache"),
            "--only", "DDIM (trailing)"]
    with pytest.warns(UserWarning):
        CM.main([*args, "--no-report"])
    cells = sorted(p.name for p in (tmp_path / "cache").glob("*.pt"))
    assert len(cells) == 6 and not (tmp_path / "results").exists()          # 3 NFE × 2 seeds, no report yet
    CM.main(args)                                                            # the cells from the cache
    result = json.loads((tmp_path / "results" / "few_step.json").read_text())
    assert {(r["nfe"], r["seed"]) for r in result["rows"]} == {(n, s) for n in (1, 2, 4) for s in (0, 1)}
    assert result["weights_sha256"]["mnist"] == dc.pretrained.manifest("mnist")["sha256"]
    assert (tmp_path / "figures" / "09_few_step.png").exists()
    assert "| DDIM (trailing) | 1 |" in (tmp_path / "results" / "few_step.md").read_text()
    dc.device.cache_clear()


def test_tau_sweep_picks_the_best_level_on_the_selection_noise(tmp_path, monkeypatch):
    monkeypatch.setattr(CM, "RESULTS", tmp_path)
    with pytest.warns(UserWarning):                       # the FID of 4 samples is biased, and it says so
        CM.main(["tau", "--n", "4", "--taus", "1.0", "2.0", "--seeds", "0"])
    out = json.loads((tmp_path / "consistency_tau.json").read_text())
    assert set(out["sweep_fid"]) == {"1.0", "2.0"} and out["selection_seed"] == CM.SELECTION_SEED
    assert out["sweep_fid"][str(out["best_tau1"])] == min(out["sweep_fid"].values())
    assert set(out["fid_at_best"]) == {"0"}
