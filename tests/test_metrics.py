"""dc.metrics: Fréchet distance, KID, the shipped feature classifier, FID rankings, input errors, timing."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
import torch.nn.functional as F

import ddpm_course.metrics as M
from ddpm_course import pretrained


@pytest.fixture(scope="module")
def test_split():
    return M.real_images("test")


@pytest.fixture(scope="module")
def train_digits():
    x, _ = M.real_images("train")
    return x[torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(123))[:1000]]


def random_cov(d: int, rank: int, seed: int) -> torch.Tensor:
    a = torch.randn(d, rank, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return a @ a.T / rank


# --- Fréchet distance --------------------------------------------------------------------------------
def test_frechet_distance_matches_closed_form_for_diagonal_gaussians():
    # diagonal covariances commute: d² = |μ₁ − μ₂|² + Σ (√a_i − √b_i)²
    g, f64 = torch.Generator().manual_seed(0), torch.float64
    mu1, mu2 = torch.randn(8, generator=g, dtype=f64), torch.randn(8, generator=g, dtype=f64)
    a, b = torch.rand(8, generator=g, dtype=f64) + 0.1, torch.rand(8, generator=g, dtype=f64) * 3
    expected = float((mu1 - mu2).square().sum() + (a.sqrt() - b.sqrt()).square().sum())
    got = M.frechet_distance(mu1, torch.diag(a), mu2, torch.diag(b))
    assert got == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_of_full_covariances_matches_1d_formula_and_scaling():
    # C₂ = c² C₁  ⇒  tr((C₁C₂)^½) = c tr C₁, so d² = (1 − c)² tr C₁
    c1 = random_cov(6, 6, seed=1)
    mu = torch.zeros(6, dtype=torch.float64)
    got = M.frechet_distance(mu, c1, mu, 4.0 * c1)
    assert got == pytest.approx(float(c1.trace()), rel=1e-9)


def test_frechet_distance_is_zero_for_identical_stats_and_symmetric():
    c1, c2 = random_cov(10, 10, 2), random_cov(10, 10, 3)
    mu1 = torch.arange(10.0, dtype=torch.float64)
    assert M.frechet_distance(mu1, c1, mu1, c1) == pytest.approx(0, abs=1e-9)
    assert M.frechet_distance(mu1, c1, 2 * mu1, c2) == pytest.approx(M.frechet_distance(2 * mu1, c2, mu1, c1),
                                                                    rel=1e-9)


def test_sqrtm_is_robust_on_singular_covariances():
    # rank-3 covariances in 20-d (what N < d samples or dead ReLU features give): finite, real, ≥ 0, and equal
    # to the distance computed in the 3-d subspace they live in
    g = torch.Generator().manual_seed(4)
    q, _ = torch.linalg.qr(torch.randn(20, 3, generator=g, dtype=torch.float64))
    s1, s2 = random_cov(3, 3, 5), random_cov(3, 3, 6)
    c1, c2 = q @ s1 @ q.T, q @ s2 @ q.T
    mu = torch.zeros(20, dtype=torch.float64)
    got = M.frechet_distance(mu, c1, mu, c2)
    small = M.frechet_distance(torch.zeros(3), s1, torch.zeros(3), s2)
    assert math.isfinite(got) and got == pytest.approx(small, rel=1e-7)
    assert M.frechet_distance(mu, c1, mu, c1) == pytest.approx(0, abs=1e-9)
    assert M.frechet_distance(mu, torch.zeros(20, 20), mu, c2) == pytest.approx(float(c2.trace()), rel=1e-9)


def test_frechet_distance_rejects_a_matrix_that_is_not_a_covariance():
    bad = torch.diag(torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="cov2 is not positive semi-definite"):
        M.frechet_distance(torch.zeros(3), torch.eye(3), torch.zeros(3), bad)
    with pytest.raises(ValueError, match="cov1 must be symmetric"):
        asym = torch.tensor([[1.0, 0.5], [0.0, 1.0]])
        M.frechet_distance(torch.zeros(2), asym, torch.zeros(2), torch.eye(2))
    with pytest.raises(ValueError, match="cov2 must have shape"):
        M.frechet_distance(torch.zeros(3), torch.eye(3), torch.zeros(3), torch.eye(2))
    with pytest.raises(ValueError, match="same dimension"):
        M.frechet_distance(torch.zeros(3), torch.eye(3), torch.zeros(2), torch.eye(2))
    with pytest.raises(ValueError, match="finite"):
        M.frechet_distance(torch.tensor([0.0, float("nan")]), torch.eye(2), torch.zeros(2), torch.eye(2))


def test_gaussian_stats_recovers_mean_and_covariance():
    g = torch.Generator().manual_seed(7)
    a = torch.tensor([[1.0, 0.0], [0.8, 0.6]], dtype=torch.float64)
    f = torch.randn(20000, 2, generator=g, dtype=torch.float64) @ a.T + torch.tensor([1.0, -2.0])
    mu, cov = M.gaussian_stats(f)
    assert torch.allclose(mu, torch.tensor([1.0, -2.0], dtype=torch.float64), atol=0.03)
    assert torch.allclose(cov, a @ a.T, atol=0.04)


# --- KID ---------------------------------------------------------------------------------------------
def test_kid_is_about_zero_for_one_distribution_and_positive_for_a_shift():
    g = torch.Generator().manual_seed(8)
    fx, fy = torch.randn(600, 16, generator=g), torch.randn(600, 16, generator=g)
    same = M.kid_from_features(fx, fy, subsets=25, subset_size=300)
    shifted = M.kid_from_features(fx + 0.5, fy, subsets=25, subset_size=300)
    assert abs(same.mean) < 3 * same.std + 1e-3
    assert shifted.mean > 10 * same.std and shifted.mean > 0
    assert shifted.std > 0


def test_mmd2_unbiased_matches_a_direct_double_loop():
    g = torch.Generator().manual_seed(9)
    x = torch.randn(5, 3, generator=g, dtype=torch.float64)
    y = torch.randn(4, 3, generator=g, dtype=torch.float64)
    k = lambda a, b: (float(a @ b) / 3 + 1) ** 3
    xx = sum(k(x[i], x[j]) for i in range(5) for j in range(5) if i != j) / 20
    yy = sum(k(y[i], y[j]) for i in range(4) for j in range(4) if i != j) / 12
    xy = sum(k(x[i], y[j]) for i in range(5) for j in range(4)) / 20
    assert float(M.mmd2_unbiased(x, y)) == pytest.approx(xx + yy - 2 * xy, rel=1e-12)


def test_kid_rejects_bad_arguments():
    with pytest.raises(ValueError, match="subsets"):
        M.kid_from_features(torch.randn(10, 4), torch.randn(10, 4), subsets=0)
    with pytest.raises(ValueError, match="at least 2"):
        M.kid_from_features(torch.randn(1, 4), torch.randn(10, 4))
    with pytest.raises(ValueError, match="same d"):
        M.kid_from_features(torch.randn(10, 4), torch.randn(10, 5))


# --- the shipped classifier ----------------------------------------------------------------------------
def test_shipped_classifier_reaches_97_percent_on_the_held_out_split(test_split):
    x, y = test_split
    assert x.shape[0] == 1000
    assert M.accuracy(x, y) >= 0.97


def test_manifest_records_the_measured_accuracy_and_command(test_split):
    meta = pretrained.manifest("mnist_classifier")
    assert meta["metrics"]["test_accuracy"] == pytest.approx(M.accuracy(*test_split), abs=1e-9)
    assert meta["command"].startswith("python benchmarks/train_classifier.py")


def test_classify_returns_long_labels(test_split):
    x, y = test_split
    pred = M.classify(x[:50])
    assert pred.dtype == torch.int64 and pred.shape == (50,)
    assert int(pred.min()) >= 0 and int(pred.max()) <= 9
    assert (pred == y[:50]).float().mean() > 0.9


def test_features_have_the_documented_shape_and_scale(train_digits):
    f = M.features(train_digits)
    assert f.dtype == torch.float64 and f.shape == (1000, 64)
    assert 0.5 < float(f.square().mean()) < 2.0          # feature_scale: mean square ≈ 1 on training digits


# --- FID on real and damaged digits --------------------------------------------------------------------
def test_fid_ranks_damaged_digits_worse_than_real_ones(train_digits):
    g = torch.Generator().manual_seed(10)
    real = M.fid(train_digits)
    assert real == pytest.approx(M.real_baseline(1000, seed=0), rel=0.5)  # another draw of the same floor
    blurred = F.avg_pool2d(F.pad(train_digits, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    noisy = (train_digits + 0.3 * torch.randn(train_digits.shape, generator=g)).clamp(-1, 1)
    occluded = train_digits.clone()
    occluded[:, :, 8:20, 8:20] = -1
    noise = torch.rand(train_digits.shape, generator=g) * 2 - 1
    scores = {name: M.fid(x) for name, x in
              [("noisy", noisy), ("blurred", blurred), ("occluded", occluded), ("noise", noise)]}
    assert all(v > 3 * real for v in scores.values()), (real, scores)
    assert scores["noise"] > scores["occluded"] > scores["blurred"] > scores["noisy"]
    k = M.kid(blurred, subsets=25)
    assert k.mean > 5 * k.std > 0


def test_real_vs_real_floor_is_small_and_kid_is_zero_within_error():
    floor = M.real_baseline(1000)
    assert 0 < floor < 1.0
    k = M.real_baseline_kid(1000, subsets=25)
    assert abs(k.mean) < 3 * k.std


def test_fid_of_a_single_class_is_large(test_split):
    x, y = M.real_images("train")
    ones = x[y == 1][:300]
    assert M.fid(ones) > 20 * M.real_baseline(300)


def test_fid_warns_below_the_feature_dimension(train_digits):
    with pytest.warns(UserWarning, match="biased upwards"):
        M.fid(train_digits[:20])


# --- input errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize("fn", [M.fid, M.kid, M.classify, M.features])
def test_bad_images_raise_clear_errors(fn, train_digits):
    x = train_digits[:100]
    with pytest.raises(ValueError, match=r"images must have shape \(N, 1, 28, 28\)"):
        fn(x[:, 0])
    with pytest.raises(ValueError, match=r"images must have shape"):
        fn(x.expand(-1, 3, -1, -1))
    with pytest.raises(ValueError, match=r"images must lie in \[-1, 1\]"):
        fn((x + 1) * 127.5)
    with pytest.raises(ValueError, match=r"images must lie in \[-1, 1\]"):
        fn(x * 1.1)
    with pytest.raises(TypeError, match="images must be floating point"):
        fn(((x + 1) * 127.5).to(torch.uint8))
    with pytest.raises(TypeError, match="images must be a torch.Tensor"):
        fn(x.numpy())
    nan = x.clone()
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        fn(nan)
    with pytest.raises(ValueError, match=r"ref must be one of \['mnist'\]"):
        fn(x, ref="cifar10")
    fn(x * (1 + 5e-4))                                    # within the round-off tolerance: accepted


def test_too_few_samples_raise(train_digits):
    for fn in (M.fid, M.kid):
        with pytest.raises(ValueError, match="at least 2 images"):
            fn(train_digits[:1])
    with pytest.raises(ValueError, match="n must be an int"):
        M.real_baseline(1)
    with pytest.raises(ValueError, match="n must be an int"):
        M.real_baseline(10**6)


def test_accuracy_checks_labels(test_split):
    x, y = test_split
    with pytest.raises(ValueError, match="labels must be an integer tensor"):
        M.accuracy(x[:10], y[:9])
    with pytest.raises(ValueError, match="labels must be an integer tensor"):
        M.accuracy(x[:10], y[:10].float())


# --- shipped weights: checksum -------------------------------------------------------------------------
def test_checksum_mismatch_on_classifier_weights_is_a_clear_error(tmp_path, monkeypatch):
    for suffix in (".json", ".safetensors"):
        shutil.copy(pretrained.WEIGHTS_DIR / f"mnist_classifier{suffix}", tmp_path)
    pretrained.load_state_dict("mnist_classifier", tmp_path)          # the intact copy loads
    path = tmp_path / "mnist_classifier.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(pretrained.WeightsError, match="checksum mismatch"):
        pretrained.load_state_dict("mnist_classifier", tmp_path)
    meta = json.loads((tmp_path / "mnist_classifier.json").read_text())
    assert meta["sha256"] == pretrained.sha256(pretrained.WEIGHTS_DIR / "mnist_classifier.safetensors")
    # and through the metrics themselves, which load the classifier on first use
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", tmp_path)
    M._classifier.cache_clear()
    try:
        with pytest.raises(pretrained.WeightsError, match="checksum mismatch"):
            M.classify(torch.zeros(2, 1, 28, 28))
    finally:
        M._classifier.cache_clear()


# --- timing ------------------------------------------------------------------------------------------
def test_timer_and_time_per_sample():
    import time

    with M.Timer() as t:
        time.sleep(0.02)
    assert 0.015 < t.seconds < 1.0
    per = M.time_per_sample(lambda: time.sleep(0.02), n=4, repeats=2)
    assert 0.004 < per < 0.25
    with pytest.raises(ValueError, match="n must be a positive int"):
        M.time_per_sample(lambda: None, n=0)


# --- class shares and memorisation ---------------------------------------------------------------------
def test_class_shares_sum_to_one_and_find_a_single_class(test_split):
    x, y = test_split
    shares = M.class_shares(x)
    assert shares.shape == (10,) and shares.sum().item() == pytest.approx(1.0)
    assert (shares > 0.07).all() and (shares < 0.13).all()        # the held-out digits are balanced
    assert M.class_shares(x[y == 3])[3].item() > 0.95


def test_memorisation_tells_copies_from_fresh_digits(test_split, train_digits):
    """Training digits themselves are copies (train-closer 1, ratio 0); fresh real digits, which the
    two reference sets sample alike, are nearer to either about half of the time."""
    held, _ = test_split
    copies = M.memorisation(train_digits[:200], train_digits[:500], held[500:])
    assert copies.train_closer == 1.0 and copies.copies == 1.0 and copies.ratio < 1e-3
    assert copies.n_ref == 500
    half = M.memorisation(train_digits[:200], train_digits, held[500:])   # subsampled to 500 of 1,000
    assert 0.3 < half.copies < 0.7
    fresh = M.memorisation(held[:500], train_digits, held[500:])
    assert 0.4 < fresh.train_closer < 0.6 and 0.9 < fresh.ratio < 1.1 and fresh.copies < 0.01
    with pytest.raises(ValueError, match="train and held_out must have the images' shape"):
        M.memorisation(held[:5], train_digits[:, :, :14], held)


def test_inception_score_from_probs_bounds_and_a_hand_computation():
    from ddpm_course.metrics import inception_score_from_probs as is_

    one_hot = torch.eye(10, dtype=torch.float64).repeat(5, 1)                 # every class, each for sure
    assert is_(one_hot) == pytest.approx(10.0)
    assert is_(torch.eye(10, dtype=torch.float64)[[3] * 20]) == pytest.approx(1.0)   # one class only
    assert is_(torch.full((7, 10), 0.1, dtype=torch.float64)) == pytest.approx(1.0)  # no confidence
    p = torch.tensor([[0.9, 0.1], [0.2, 0.8]], dtype=torch.float64)
    py = p.mean(0)
    kl = [sum(p[i, k] * math.log(p[i, k] / py[k]) for k in range(2)) for i in range(2)]
    assert is_(p) == pytest.approx(math.exp(sum(kl) / 2), rel=1e-12)


def test_inception_score_of_real_digits_is_high_and_of_one_digit_low():
    x, y = M.real_images("test")
    real = M.inception_score(x[:1000])
    assert 8.5 < real.mean <= 10 and 0 < real.std < 1
    ones = M.inception_score(x[y == 1][:200], splits=4)              # confident but one class
    assert ones.mean < 1.5
    with pytest.raises(ValueError, match="splits must be a positive integer"):
        M.inception_score(x[:10], splits=0)
    with pytest.raises(ValueError, match="at least 10 images"):
        M.inception_score(x[:5], splits=10)


def test_diversity_and_sharpness_read_real_blurred_noisy_and_collapsed_digits():
    x, y = M.real_images("train")
    x, y = x[:400], y[:400]
    blur = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    noisy = (x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    assert M.diversity(x) == pytest.approx(1.0, abs=0.05) and M.sharpness(x) == pytest.approx(1.0, abs=0.05)
    assert M.sharpness(blur) < 0.5 < 1.2 < M.sharpness(noisy)
    assert M.diversity(x[y == 1]) < 0.5                                       # one digit: alike
    assert M.diversity(x[:1].repeat(10, 1, 1, 1)) == 0.0                      # copies: no diversity at all
    with pytest.raises(ValueError, match="at least 2 images"):
        M.diversity(x[:1])


def test_seed_stats_and_verdict():
    rows = [{"sampler": "a", "nfe": 1, "fid": v} for v in (1.0, 2.0, 3.0)] + \
           [{"sampler": "b", "nfe": 1, "fid": 10.0}]
    st = M.seed_stats(rows)
    assert st[("a", 1)] == M.SeedStats(2.0, 1.0, 3) and st[("b", 1)] == (10.0, 0.0, 1)
    assert M.verdict(st[("a", 1)], st[("b", 1)]) == "beats"
    assert M.verdict(st[("b", 1)], st[("a", 1)]) == "loses to"
    near = M.SeedStats(3.5, 0.5, 3)
    assert M.verdict(st[("a", 1)], near) == "ties with"          # 1.5 <= 2·√(1 + 0.25)
    assert M.verdict(st[("a", 1)], near, k=1.0) == "beats"
    assert M.seed_stats([{"fid": 1.0}, {"fid": 3.0}], by=())[()].mean == 2.0
