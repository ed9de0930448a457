"""The clinical evaluation's numbers, checked against direct computations.

Point metrics against hand counts and scikit-learn; the vectorized bootstrap against an
explicit loop that draws the same indices; the 95% intervals' coverage over seeded
simulations where the truth is known; calibration against data it was not fitted on;
thresholds against brute-force searches."""

import json
import math
import time

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import confusion_matrix, roc_auc_score

from tunelab.tracking import clinical_metrics as cm


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# A tiny binary case counted by hand: 6 negatives, 4 positives.
Y10 = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
P10 = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.35, 0.8, 0.9, 0.95])


def test_point_metrics_of_a_hand_counted_case():
    m = cm.classification_metrics(Y10, P10, threshold=0.5, class_names=["normal", "tumour"])
    # at 0.5: TP 3 (0.8, 0.9, 0.95), FN 1 (0.35), FP 2 (0.6, 0.7), TN 4
    assert m["sensitivity"] == m["sensitivity_tumour"] == pytest.approx(3 / 4)
    assert m["specificity"] == m["specificity_tumour"] == pytest.approx(4 / 6)
    assert m["ppv"] == pytest.approx(3 / 5) and m["npv"] == pytest.approx(4 / 5)
    assert m["accuracy"] == pytest.approx(7 / 10)
    assert m["balanced_accuracy"] == pytest.approx((3 / 4 + 4 / 6) / 2)
    # one-vs-rest for the other class swaps the roles
    assert m["sensitivity_normal"] == pytest.approx(4 / 6)
    assert m["ppv_normal"] == pytest.approx(4 / 5)
    # AUC: 0.35 beats 3 of 6 negatives, the other three positives beat all 6: 21 / 24
    assert m["roc_auc"] == pytest.approx(21 / 24)
    # another threshold, and class 0 as the positive class (threshold on P(class 0))
    low = cm.classification_metrics(Y10, P10, threshold=0.3)
    assert low["sensitivity"] == 1.0 and low["specificity"] == pytest.approx(2 / 6)
    flipped = cm.classification_metrics(Y10, P10, threshold=0.5, positive=0)
    assert flipped["sensitivity"] == pytest.approx(4 / 6)  # P(0) >= 0.5: p1 <= 0.5
    assert flipped["roc_auc"] == pytest.approx(21 / 24)


def test_ties_and_multiclass_match_scikit_learn():
    rng = np.random.default_rng(3)
    n, k = 240, 4
    y = rng.integers(0, k, n)
    z = rng.normal(size=(n, k))
    z[np.arange(n), y] += 1.2
    p = np.round(softmax(z), 1)  # coarse: many tied scores
    p = p / p.sum(axis=1, keepdims=True)
    names = ["a", "b", "c", "d"]
    m = cm.classification_metrics(y, p, class_names=names)
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, p, multi_class="ovr",
                                                       average="macro"))
    pred = p.argmax(axis=1)
    conf = confusion_matrix(y, pred, labels=range(k))
    for c, name in enumerate(names):
        assert m[f"roc_auc_{name}"] == pytest.approx(roc_auc_score(y == c, p[:, c]))
        tp = conf[c, c]
        fn, fp = conf[c].sum() - tp, conf[:, c].sum() - tp
        tn = n - tp - fn - fp
        assert m[f"sensitivity_{name}"] == pytest.approx(tp / (tp + fn))
        assert m[f"specificity_{name}"] == pytest.approx(tn / (tn + fp))
        assert m[f"ppv_{name}"] == pytest.approx(tp / (tp + fp))
        assert m[f"npv_{name}"] == pytest.approx(tn / (tn + fn))
    assert m["accuracy"] == pytest.approx(np.mean(pred == y))
    assert "sensitivity" not in m  # no "positive class" with four classes


def pairwise_auc(scores, is_pos):
    """AUC by its definition: the share of (positive, negative) pairs ranked right, ties 1/2."""
    pos, neg = scores[is_pos][:, None], scores[~is_pos][None, :]
    return np.mean(pos > neg) + 0.5 * np.mean(pos == neg)


def reference_bootstrap(y, p, threshold, n_resamples, seed, confidence=0.95):
    """The same resampling algorithm as an explicit loop, one resample at a time, every
    metric counted from that resample's confusion matrix and pairs."""
    rng = np.random.default_rng(seed)
    k = p.shape[1]
    members = [np.flatnonzero(y == c) for c in range(k)]
    pred_all = cm.predict_labels(p, threshold=threshold)
    samples = []
    for start in range(0, n_resamples, cm.BOOTSTRAP_BLOCK):
        m = min(cm.BOOTSTRAP_BLOCK, n_resamples - start)
        draws = [rng.integers(0, len(idx), size=(m, len(idx))) for idx in members]
        for b in range(m):
            idx = np.concatenate([members[c][draws[c][b]] for c in range(k)])
            yt, pp, pr = y[idx], p[idx], pred_all[idx]
            conf = np.zeros((k, k), int)
            np.add.at(conf, (yt, pr), 1)
            row = {"accuracy": np.mean(yt == pr)}
            recalls = []
            for c in range(k):
                tp = conf[c, c]
                fn, fp = conf[c].sum() - tp, conf[:, c].sum() - tp
                tn = len(yt) - tp - fn - fp
                row[f"sensitivity_{c}"] = tp / (tp + fn)
                row[f"specificity_{c}"] = tn / (tn + fp)
                row[f"ppv_{c}"] = tp / (tp + fp) if tp + fp else math.nan
                row[f"npv_{c}"] = tn / (tn + fn) if tn + fn else math.nan
                recalls.append(row[f"sensitivity_{c}"])
            row["balanced_accuracy"] = np.mean(recalls)
            if k == 2:
                row["roc_auc"] = pairwise_auc(pp[:, 1], yt == 1)
            else:
                aucs = [pairwise_auc(pp[:, c], yt == c) for c in range(k)]
                row["roc_auc"] = np.mean(aucs)
                for c in range(k):
                    row[f"roc_auc_{c}"] = aucs[c]
            samples.append(row)
    alpha = (1 - confidence) / 2
    out = {}
    for key in samples[0]:
        values = np.array([s[key] for s in samples], dtype=float)
        defined = values[~np.isnan(values)]
        out[key] = (*np.quantile(defined, [alpha, 1 - alpha]), values.size - defined.size)
    return out


@pytest.mark.parametrize("case", ["binary-threshold", "three-class-argmax"])
def test_bootstrap_equals_an_explicit_loop_with_the_same_draws(case):
    rng = np.random.default_rng(11)
    if case == "binary-threshold":
        y = np.r_[np.zeros(14, int), np.ones(9, int)]
        p1 = np.round(rng.uniform(0.05, 0.55, len(y)), 2)  # ties at 2 decimals
        p1[[3, 20]] = 0.7, 0.8  # one negative and one positive above the threshold:
        p, threshold = np.stack([1 - p1, p1], axis=1), 0.6  # PPV is sometimes undefined
    else:
        y = np.r_[np.zeros(10, int), np.ones(8, int), np.full(6, 2)]
        z = np.round(rng.normal(size=(len(y), 3)), 1)
        z[np.arange(len(y)), y] += 1.0
        z[:, 2] -= 3.0
        z[[4, 22], 2] = 5.0  # class 2 predicted twice only: its PPV is sometimes undefined
        p, threshold = softmax(z), None
    n_resamples = 300  # more than one block of BOOTSTRAP_BLOCK
    result = cm.bootstrap_intervals(y, p, threshold=threshold, n_resamples=n_resamples,
                                    seed=5)
    expected = reference_bootstrap(y, p, threshold, n_resamples, seed=5)
    point = cm.classification_metrics(y, p, threshold=threshold)
    unsuffixed = {"sensitivity", "specificity", "ppv", "npv"}
    assert set(result.intervals) - unsuffixed == set(expected)
    for key, (low, high, undefined) in expected.items():
        got = result[key]
        assert (got.low, got.high) == pytest.approx((low, high), abs=1e-12), key
        assert got.n_undefined == undefined, key
        assert got.estimate == pytest.approx(point[key], nan_ok=True)
    # the case is small enough that some resamples have no prediction of a class
    assert sum(iv.n_undefined for iv in result.intervals.values()) > 0
    assert "stratified" in result.method and f"{n_resamples} resamples" in result.method
    assert "default_rng(5)" in result.method and result.seed == 5


def test_bootstrap_keeps_class_counts_is_seeded_and_fast():
    y = np.r_[np.zeros(7, int), np.ones(3, int), np.full(5, 2)]
    for weights in cm.bootstrap_weights(y, 600, seed=1):
        for c, n_c in enumerate((7, 3, 5)):
            assert np.all(weights[:, y == c].sum(axis=1) == n_c)
    rng = np.random.default_rng(0)
    n = 400
    y = rng.integers(0, 3, n)
    p = softmax(rng.normal(size=(n, 3)) + 2 * np.eye(3)[y])
    start = time.perf_counter()
    a = cm.bootstrap_intervals(y, p, n_resamples=2000, seed=7)
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0, f"2,000 resamples of 400 images took {elapsed:.2f} s"
    b = cm.bootstrap_intervals(y, p, n_resamples=2000, seed=7)
    c = cm.bootstrap_intervals(y, p, n_resamples=2000, seed=8)
    assert a.to_dict() == b.to_dict()
    assert a["accuracy"].low != c["accuracy"].low or a["roc_auc"].low != c["roc_auc"].low
    for iv in a.intervals.values():
        assert iv.low <= iv.estimate <= iv.high


def test_a_perfect_classifier_has_degenerate_intervals():
    y = np.r_[np.zeros(20, int), np.ones(20, int)]
    result = cm.bootstrap_intervals(y, np.where(y == 1, 0.9, 0.2), n_resamples=200)
    for key in ("roc_auc", "accuracy", "sensitivity", "specificity", "ppv", "npv"):
        assert (result[key].estimate, result[key].low, result[key].high) == (1.0, 1.0, 1.0)


def test_undefined_point_estimates_are_nan_not_errors():
    y = np.r_[np.zeros(10, int), np.ones(10, int)]
    p1 = np.linspace(0.05, 0.45, 20)  # nothing reaches 0.5: no positive prediction
    result = cm.bootstrap_intervals(y, p1, threshold=0.5, n_resamples=100)
    assert math.isnan(result["ppv"].estimate) and math.isnan(result["ppv"].low)
    assert result["ppv"].n_undefined == 100
    assert result["sensitivity"].estimate == 0.0 and result["npv"].estimate == 0.5


def test_95_percent_intervals_cover_the_truth_92_to_97_percent_of_the_time():
    """500 simulated test sets of n = 200 (100 diseased, 100 healthy, fixed as a test set's
    are) from a model whose scores are N(1, 1) logits for the diseased and N(-0.85, 1) for
    the healthy, thresholded at 0.5: true sensitivity Phi(1) = 0.841, specificity
    Phi(0.85) = 0.802, accuracy their mean, AUC Phi(1.85 / sqrt 2); seed = simulation number.

    1,000 resamples per set instead of the default 2,000, to halve the test's time: the
    number of resamples only sets the Monte Carlo noise of the endpoints, and noisier
    endpoints can only lower coverage a little. Measured on these same 500 sets: 1,000
    resamples cover 0.950 (accuracy) / 0.948 (sensitivity), 2,000 cover 0.952 / 0.948, 500
    cover 0.946 / 0.940; over 2,000 sets at 2,000 resamples: 0.946 / 0.948 (AUC 0.948)."""
    n_pos = n_neg = 100
    mu_pos, mu_neg = 1.0, -0.85
    truth = {"sensitivity": norm.cdf(mu_pos), "specificity": norm.cdf(-mu_neg),
             "roc_auc": norm.cdf((mu_pos - mu_neg) / math.sqrt(2))}
    truth["accuracy"] = (n_pos * truth["sensitivity"] + n_neg * truth["specificity"]) / 200
    y = np.r_[np.ones(n_pos, int), np.zeros(n_neg, int)]
    rng = np.random.default_rng(2024)
    hits = dict.fromkeys(truth, 0)
    n_sim = 500
    for sim in range(n_sim):
        logit = np.where(y == 1, rng.normal(mu_pos, 1, 200), rng.normal(mu_neg, 1, 200))
        result = cm.bootstrap_intervals(y, 1 / (1 + np.exp(-logit)), threshold=0.5,
                                        n_resamples=1000, seed=sim)
        for key, value in truth.items():
            hits[key] += result[key].low <= value <= result[key].high
    coverage = {key: h / n_sim for key, h in hits.items()}
    print("coverage of the 95% intervals over", n_sim, "simulations:", coverage)
    assert 0.92 <= coverage["accuracy"] <= 0.97, coverage
    assert 0.92 <= coverage["sensitivity"] <= 0.97, coverage
    assert 0.90 <= coverage["roc_auc"] <= 0.97, coverage  # percentile AUC runs a bit short


def test_ece_of_a_hand_computed_case():
    y = np.array([1, 0, 0, 1])
    p1 = np.array([0.95, 0.85, 0.3, 0.65])  # top-label confidences 0.95, 0.85, 0.7, 0.65
    rel = cm.reliability(y, p1, n_bins=5)
    # bin [0.8, 1.0): 2 images, accuracy 1/2, confidence 0.9; bin [0.6, 0.8): 2 images,
    # both right, confidence 0.675
    assert rel.counts.tolist() == [0, 0, 0, 2, 2]
    assert rel.ece == pytest.approx(0.5 * 0.4 + 0.5 * 0.325)
    assert cm.expected_calibration_error(y, p1, n_bins=5) == rel.ece
    assert math.isnan(rel.accuracy[0]) and rel.to_dict()["accuracy"][0] is None
    # a confidence of exactly 1 falls in the last bin
    assert cm.reliability([1, 0], [1.0, 0.0], n_bins=15).counts[-1] == 2


def overconfident(n, k, scale, seed):
    """Labels drawn from softmax(true logits): those probabilities are calibrated by
    construction; the model reports ``scale`` times the logits (over-confident if > 1)."""
    rng = np.random.default_rng(seed)
    true_logits = rng.normal(size=(n, k)) * 1.5
    p_true = softmax(true_logits)
    y = (p_true.cumsum(axis=1) > rng.random(n)[:, None]).argmax(axis=1)
    return scale * true_logits, y


def test_temperature_scaling_lowers_ece_on_held_out_data():
    logits, y = overconfident(4000, 3, scale=4.0, seed=1)
    fit, held = slice(0, 2000), slice(2000, None)
    calibrator = cm.fit_temperature(logits[fit], y[fit])
    assert calibrator.temperature == pytest.approx(4.0, rel=0.15)
    assert calibrator.nll_after < calibrator.nll_before
    before = cm.expected_calibration_error(y[held], softmax(logits[held]))
    after = cm.expected_calibration_error(y[held], calibrator.apply(logits[held]))
    assert before > 0.1 and after < before / 3, (before, after)
    # the ranking, hence every argmax, is unchanged
    assert np.array_equal(calibrator.apply(logits[held]).argmax(1), logits[held].argmax(1))
    # under-confidence: T < 1
    shy, y2 = overconfident(3000, 4, scale=0.3, seed=2)
    assert cm.fit_temperature(shy, y2).temperature == pytest.approx(0.3, rel=0.15)
    # round trip through JSON, and the stored formula re-applied with numpy alone
    stored = json.loads(json.dumps(calibrator.to_dict()))
    again = cm.calibrator_from_dict(stored)
    assert np.allclose(again.apply(logits[held]), calibrator.apply(logits[held]))
    assert np.allclose(softmax(logits[held] / stored["temperature"]),
                       calibrator.apply(logits[held]))


def test_temperature_scaling_of_hinge_margins():
    """A categorical-hinge head's margins are not logits of anything; softmax of them is no
    probability. Temperature scaling on validation margins makes them one."""
    logits, y = overconfident(4000, 3, scale=1.0, seed=4)
    margins = cm.logits_from_outputs(0.15 * logits + 0.3, "categorical_hinge")
    naive = softmax(margins)  # what pyfunc_model.probabilities does today
    calibrator = cm.fit_temperature(margins[:2000], y[:2000])
    before = cm.expected_calibration_error(y[2000:], naive[2000:])
    after = cm.expected_calibration_error(y[2000:], calibrator.apply(margins[2000:]))
    assert after < before / 3, (before, after)


def test_platt_scaling_lowers_ece_on_held_out_data():
    rng = np.random.default_rng(5)
    n = 6000
    x = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(1.5 * x - 0.5)))).astype(int)
    z = 4 * x + 2  # the model's logit: too steep and shifted
    calibrator = cm.fit_platt(z[:3000], y[:3000])
    # true P(y=1) = sigmoid(1.5 x - 0.5) = sigmoid(0.375 z - 1.25)
    assert calibrator.a == pytest.approx(0.375, rel=0.15)
    assert calibrator.b == pytest.approx(-1.25, abs=0.2)
    raw = np.stack([1 - 1 / (1 + np.exp(-z)), 1 / (1 + np.exp(-z))], axis=1)
    before = cm.expected_calibration_error(y[3000:], raw[3000:])
    after = cm.expected_calibration_error(y[3000:], calibrator.apply(z[3000:]))
    assert before > 0.1 and after < before / 3, (before, after)
    assert calibrator.nll_after < calibrator.nll_before
    # two-column logits give the same fit; a sigmoid head's outputs map to that logit
    two = cm.logits_from_outputs(raw[:3000, 1], "binary_crossentropy")
    assert np.allclose(two[:, 1], z[:3000], atol=1e-6)
    same = cm.fit_platt(two, y[:3000])
    assert same.a == pytest.approx(calibrator.a, rel=1e-4)
    again = cm.calibrator_from_dict(json.loads(json.dumps(calibrator.to_dict())))
    assert np.allclose(again.apply(z), calibrator.apply(z))
    # separable data stays finite thanks to Platt's smoothed targets
    sep = cm.fit_platt(np.r_[-np.ones(20), np.ones(20)], np.r_[np.zeros(20), np.ones(20)])
    assert np.isfinite(sep.a) and 0 < sep.apply(np.array([1.0]))[0, 1] < 1


def brute_force(y, p, score):
    """Every distinct operating point, ascending; the first (lowest) threshold of the best."""
    candidates = list(np.unique(p)) + [np.nextafter(p.max(), np.inf)]
    best, best_t = -np.inf, None
    for t in candidates:
        pred = p >= t
        sens = np.sum(pred & (y == 1)) / np.sum(y == 1)
        spec = np.sum(~pred & (y == 0)) / np.sum(y == 0)
        value = score(sens, spec, np.mean(pred == (y == 1)))
        if value > best:
            best, best_t = value, t
    return best_t


def noisy_binary(seed, n=150):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.35).astype(int)
    return y, np.round(1 / (1 + np.exp(-(1.4 * y - 0.7 + rng.normal(size=n)))), 2)  # ties


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_accuracy_and_youden_thresholds_equal_a_brute_force_search(seed):
    y, p = noisy_binary(seed)
    acc = cm.fit_threshold(y, p, "accuracy")
    assert acc.threshold == brute_force(y, p, lambda se, sp, a: a)
    assert acc.accuracy == pytest.approx(np.mean((p >= acc.threshold) == (y == 1)))
    youden = cm.fit_threshold(y, p, "youden")
    assert youden.threshold == brute_force(y, p, lambda se, sp, a: se + sp - 1)
    m = cm.classification_metrics(y, p, threshold=youden.threshold)
    assert (youden.sensitivity, youden.specificity) == pytest.approx(
        (m["sensitivity"], m["specificity"]))


@pytest.mark.parametrize("target", [0.8, 0.9, 0.95, 1.0])
def test_sensitivity_target_is_met_at_the_highest_specificity(target):
    y, p = noisy_binary(7, n=300)
    fit = cm.fit_threshold(y, p, {"sensitivity": target})
    m = cm.classification_metrics(y, p, threshold=fit.threshold)
    assert m["sensitivity"] >= target and fit.sensitivity == pytest.approx(m["sensitivity"])
    assert fit.specificity == pytest.approx(m["specificity"]) and fit.target == target
    # no operating point with a higher specificity keeps the sensitivity at the target
    for t in cm.threshold_candidates(p):
        pred = p >= t
        sens = np.sum(pred & (y == 1)) / np.sum(y == 1)
        spec = np.sum(~pred & (y == 0)) / np.sum(y == 0)
        if spec > fit.specificity + 1e-12:
            assert sens < target
        elif spec == pytest.approx(fit.specificity):
            assert sens <= fit.sensitivity  # ties go to the higher sensitivity
    assert json.loads(json.dumps(fit.to_dict()))["rule"] == "sensitivity"


def test_ties_go_to_the_lower_threshold():
    y, p = np.array([0, 1, 0, 1]), np.array([0.1, 0.2, 0.3, 0.4])
    # accuracy 3/4 at 0.2 and at 0.4 (sensitivity 1 and 1/2): the lower one wins
    for rule in ("accuracy", "youden"):
        fit = cm.fit_threshold(y, p, rule)
        assert (fit.threshold, fit.accuracy, fit.sensitivity) == (0.2, 0.75, 1.0), rule
        assert fit.threshold == brute_force(y, p, lambda se, sp, a: a)


def test_nothing_positive_can_be_the_best_accuracy():
    y = np.r_[np.zeros(9, int), np.ones(1, int)]
    p = np.r_[np.linspace(0.5, 0.9, 9), 0.1]  # the only positive scores lowest
    fit = cm.fit_threshold(y, p, "accuracy")
    assert fit.threshold > 0.9 and fit.accuracy == 0.9 and fit.sensitivity == 0.0


def test_small_sample_warning():
    assert cm.small_sample_warning(np.r_[np.zeros(100), np.ones(100)]) is None
    few = cm.small_sample_warning(np.r_[np.zeros(120), np.ones(79)])
    assert "199 images" in few and "wide" in few
    rare = cm.small_sample_warning(np.r_[np.zeros(180), np.ones(29)],
                                   class_names=["normal", "covid"])
    assert "covid: 29" in rare and "images (under" not in rare and "normal" not in rare
    absent = cm.small_sample_warning(np.r_[np.zeros(150), np.ones(150)], n_classes=3)
    assert "2: 0" in absent


def test_logits_from_outputs_of_each_head():
    p = np.array([0.1, 0.5, 0.9])
    z = cm.logits_from_outputs(p.reshape(-1, 1), "binary_crossentropy")
    assert np.allclose(softmax(z)[:, 1], p)
    assert np.allclose(cm.logits_from_outputs(np.array([[-0.4], [0.7]]), "hinge"),
                       [[0, -0.4], [0, 0.7]])
    soft = softmax(np.array([[1.0, 2.0, 0.5]]))
    assert np.allclose(softmax(cm.logits_from_outputs(soft, "categorical_crossentropy")), soft)
    with pytest.raises(ValueError, match="categorical_hinge"):
        cm.logits_from_outputs(np.array([[3.0, -2.0]]), "categorical_crossentropy")
    with pytest.raises(ValueError, match="unknown loss"):
        cm.logits_from_outputs(soft, "mse")


P2 = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.1, 0.9]])
Y2 = np.array([0, 1, 0, 1])


@pytest.mark.parametrize("call, message", [
    (lambda: cm.classification_metrics(Y2[:3], P2), "3 labels but scores has 4 rows"),
    (lambda: cm.classification_metrics(np.zeros(4, int), P2), "one class only"),
    (lambda: cm.classification_metrics(Y2, P2 * 1.5), r"probabilities in \[0, 1\]"),
    (lambda: cm.classification_metrics(Y2, P2 - 0.5), r"probabilities in \[0, 1\]"),
    (lambda: cm.classification_metrics(Y2, P2 * 0.5), "sum to 1"),
    (lambda: cm.classification_metrics(Y2, np.c_[P2, np.zeros(4)]), r"class\(es\) \[2\]"),
    (lambda: cm.classification_metrics(Y2 + 0.5, P2), "integer class ids"),
    (lambda: cm.classification_metrics(Y2 * 2, P2), "expected 0..1"),
    (lambda: cm.classification_metrics(Y2, P2[:, :1]), "k >= 2"),
    (lambda: cm.classification_metrics(Y2, np.where(P2 > 0.5, np.nan, P2)), "NaN"),
    (lambda: cm.classification_metrics(Y2, P2, threshold=1.5), "threshold must be"),
    (lambda: cm.classification_metrics(Y2, P2, class_names=["a"]), "1 class names for 2"),
    (lambda: cm.classification_metrics([0, 1, 2], np.eye(3), threshold=0.5),
     "two classes only"),
    (lambda: cm.bootstrap_intervals(Y2, P2, n_resamples=0), "n_resamples"),
    (lambda: cm.bootstrap_intervals(Y2, P2, confidence=95), "confidence"),
    (lambda: cm.reliability(Y2, P2, n_bins=0), "n_bins"),
    (lambda: cm.fit_temperature(np.ones((3, 2)), Y2), "4 labels but logits has 3"),
    (lambda: cm.fit_temperature(np.ones((4, 2)), np.ones(4, int)), "one class only"),
    (lambda: cm.fit_platt(np.ones((3, 3)), [0, 1, 2]), "binary"),
    (lambda: cm.fit_threshold(Y2, P2[:, 1], "f1"), "unknown threshold rule"),
    (lambda: cm.fit_threshold(Y2, P2[:, 1], {"sensitivity": 1.2}), r"in \(0, 1\]"),
    (lambda: cm.fit_threshold(Y2, P2[:, 1] + 1, "youden"), "calibrate first"),
    (lambda: cm.fit_threshold(Y2, P2[:3, 1], "youden"), "4 labels but prob_positive has 3"),
    (lambda: cm.fit_threshold(np.ones(4, int), P2[:, 1], "youden"), "one class only"),
])
def test_bad_input_raises_a_clear_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()
