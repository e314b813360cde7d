"""jaxdyn.analysis.emc: the search against oracles whose threshold is known exactly, Cover's
function-counting theorem as an independent reference for capacity (a linear separator found
by an LP whenever one exists), `fits` against a direct evaluation of the trained model and
against runs trained one at a time, the stopping rule, data variations and bad inputs."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linprog

from jaxdyn import sweep as sweep_mod
from jaxdyn.analysis import emc

# --------------------------------------------------------------------------- search


@pytest.mark.parametrize("threshold", [1, 2, 7, 64, 65, 333, 999])
def test_search_finds_a_monotone_threshold_exactly(threshold):
    calls = []

    def fits_at(n, seed):
        calls.append(n)
        return n <= threshold

    res = emc.search(fits_at, n_min=1, n_max=1000, precision=0.0)
    assert res.emc == threshold and res.bracket == (threshold, threshold + 1)
    assert res.status == "bracketed"
    assert len(calls) == len(set(calls))  # each n tried once
    # geometric phase then bisection: about 2 log2(threshold) tries
    assert len(calls) <= 2 * math.ceil(math.log2(threshold + 1)) + 2


def test_search_precision_bounds_the_bracket():
    threshold = 777
    res = emc.search(lambda n, s: n <= threshold, n_min=10, n_max=5000, precision=0.05)
    lo, hi = res.bracket
    assert lo <= threshold < hi and hi - lo <= max(1, math.floor(0.05 * lo))
    assert res.emc == lo


def test_search_all_fit_and_none_fit():
    res = emc.search(lambda n, s: True, n_min=3, n_max=100)
    assert (res.emc, res.bracket, res.status) == (100, (100, None), "all_fit")
    assert res.tried[-1] == 100 and res.tried[0] == 3
    res = emc.search(lambda n, s: False, n_min=3, n_max=100)
    assert (res.emc, res.bracket, res.status, res.tried) == (None, (None, 3), "none_fit", (3,))
    res = emc.search(lambda n, s: True, n_min=5, n_max=5)
    assert (res.emc, res.status, res.tried) == (5, "all_fit", (5,))


@pytest.mark.parametrize("rule", ["half", "majority", "all", "any", 0.6])
def test_noisy_oracle_follows_the_seed_rule(rule):
    # each seed has its own threshold; n fits for seed s iff n <= t[s]
    thresholds = {0: 40, 1: 95, 2: 61, 3: 120, 4: 77}
    seeds = tuple(thresholds)
    res = emc.search(
        lambda n, s: n <= thresholds[s], n_min=1, n_max=500, seeds=seeds, rule=rule, precision=0
    )
    # brute force: the largest n whose count of fitting seeds passes the rule
    need = {"half": 3, "majority": 3, "all": 5, "any": 1, 0.6: 3}[rule]
    expected = max(n for n in range(1, 501) if sum(n <= t for t in thresholds.values()) >= need)
    assert res.emc == expected
    assert emc.passes(need, 5, rule) and not emc.passes(need - 1, 5, rule)


def test_alternatives_any_passing_counts_and_best_is_recorded():
    # two "learning rates": the second fits up to 50, the first up to 30, on both seeds
    def fits_at(n, seeds):
        return {"fitted": [[n <= 30] * len(seeds), [n <= 50] * len(seeds)]}

    res = emc.search(fits_at, n_min=1, n_max=200, seeds=(0, 1), batched=True, precision=0)
    assert res.emc == 50 and res.trial(50).best == 1 and res.trial(50).counts == (0, 2)
    assert res.trial(16).counts == (2, 2) and res.trial(16).best == 0


def test_capped_runs_are_flagged():
    def fits_at(n, seed):
        return {"fitted": n <= 20, "reason": "fitted" if n <= 20 else "cap"}

    res = emc.search(fits_at, n_min=4, n_max=100, precision=0)
    assert res.emc == 20 and res.capped and all(n > 20 for n in res.capped)


def test_search_resumes_without_refitting(tmp_path):
    threshold, seeds = 123, (0, 1, 2)
    calls = []

    def oracle(n, seed):
        calls.append((n, seed))
        return {"fitted": n <= threshold + seed, "note": f"n{n}"}

    key = {"model": "m1", "labels": "random"}
    full = emc.search(oracle, n_min=2, n_max=1000, seeds=seeds, precision=0)
    n_calls = len(calls)

    class Interrupt(Exception):
        pass

    def interrupted(n, seed):
        if len(calls) >= n_calls + 7:
            raise Interrupt
        return oracle(n, seed)

    out = tmp_path / "run"
    with pytest.raises(Interrupt):
        emc.search(
            interrupted, n_min=2, n_max=1000, seeds=seeds, precision=0,
            sweep=sweep_mod.open_sweep(out, {"s": 1}), key=key,
        )  # fmt: skip
    assert len(calls) == n_calls + 7
    done = set(calls[n_calls:])
    calls.clear()
    res = emc.search(
        oracle, n_min=2, n_max=1000, seeds=seeds, precision=0,
        sweep=sweep_mod.open_sweep(out, {"s": 1}), key=key,
    )  # fmt: skip
    assert not done & set(calls)  # nothing finished before the interruption is refitted
    assert len(calls) == n_calls - 7
    assert res.emc == full.emc == threshold + 1 and res.tried == full.tried
    assert res.trial(res.emc).records[0]["note"] == f"n{res.emc}"


def test_search_bad_inputs():
    ok = lambda n, s: True  # noqa: E731
    with pytest.raises(ValueError, match="`n_min` must be <= n_max"):
        emc.search(ok, n_min=10, n_max=5)
    with pytest.raises(ValueError, match="`n_min` must be a positive int"):
        emc.search(ok, n_min=0, n_max=5)
    with pytest.raises(TypeError, match="`fits_at` must be callable"):
        emc.search(3, n_min=1, n_max=5)
    with pytest.raises(ValueError, match="`rule` must be one of"):
        emc.search(ok, n_min=1, n_max=5, rule="most")
    with pytest.raises(TypeError, match=r"`fits_at\(1, 0\)` must be a bool"):
        emc.search(lambda n, s: "yes", n_min=1, n_max=5)
    with pytest.raises(TypeError, match="`key` must be a dict"):
        emc.search(ok, n_min=1, n_max=5, sweep=sweep_mod.open_sweep(None))


# --------------------------------------------------------------------------- Cover's theorem


def _separable(x, y):
    """An exact test: is there (w, b) with y_i (w . x_i + b) >= 1 for all i? (LP feasibility;
    a strict separator can always be rescaled to margin 1.)"""
    n, d = x.shape
    a_ub = -y[:, None] * np.concatenate([x, np.ones((n, 1))], axis=1)
    res = linprog(np.zeros(d + 1), A_ub=a_ub, b_ub=-np.ones(n), bounds=(None, None))
    assert res.status in (0, 2), res.message
    return res.status == 0


def _cover_probability(n, dim):
    """Cover (1965): n points in general position in `dim` dimensions (homogeneous), random
    labels, are linearly separable with probability 2^(1-n) sum_{k<dim} C(n-1, k)."""
    return sum(math.comb(n - 1, k) for k in range(dim)) / 2 ** (n - 1)


@pytest.mark.parametrize("d", [10, 20, 40])
def test_linear_classifier_emc_matches_cover(d):
    def fits_at(n, seed):
        rng = np.random.default_rng([d, n, seed])  # fresh points and labels per n and seed
        x = rng.standard_normal((n, d))
        return _separable(x, rng.choice([-1.0, 1.0], size=n))

    res = emc.search(fits_at, n_min=d // 2, n_max=8 * d, seeds=range(7), precision=0.0)
    # d inputs plus a bias: dim = d + 1, and P(separable) = 1/2 exactly at n = 2 (d + 1)
    assert _cover_probability(2 * (d + 1), d + 1) == pytest.approx(0.5)
    assert abs(res.emc - 2 * d) <= 0.25 * 2 * d
    # every size at or below dim is separable (P = 1): the LP never misses a separator there
    assert all(t.fitted for t in res.trials if t.n <= d + 1)


def test_seeds_must_be_a_sequence():
    with pytest.raises(TypeError, match="`seeds` must be a non-empty sequence"):
        emc.search(lambda n, s: True, n_min=1, n_max=3, seeds=5)


# --------------------------------------------------------------------------- fits


@pytest.fixture(scope="module")
def task():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((24, 6))
    labels = rng.integers(0, 3, size=24)
    x_test = rng.standard_normal((10, 6))
    return x, labels, x_test, rng.integers(0, 3, size=10)


@pytest.fixture(scope="module")
def tiny_model():
    return emc.mlp((6,), 3, width=16, depth=1, dtype=jnp.float64)


@pytest.fixture(scope="module")
def outcome(task, tiny_model):
    x, labels, x_test, labels_test = task
    return emc.fits(
        tiny_model, x, labels, learning_rates=(1e-4, 0.5), seeds=(0, 3), batch_size=8,
        max_steps=600, patience=10**6, chunk_steps=100, x_test=x_test,
        labels_test=labels_test, return_params=True, dtype=jnp.float64,
    )  # fmt: skip


def _direct(model, params, x, labels):
    logits = np.asarray(model.apply(params, jnp.asarray(x)))
    z = logits - logits.max(axis=1, keepdims=True)
    ce = np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(labels)), labels]
    return float(np.mean(logits.argmax(axis=1) == labels)), float(ce.mean())


def test_fits_accuracy_is_a_direct_evaluation_of_the_trained_model(task, tiny_model, outcome):
    x, labels, x_test, labels_test = task
    assert outcome.fitted.shape == (2, 2) and outcome.n == 24
    for r in range(2):
        for s in range(2):
            p = jax.tree_util.tree_map(lambda a, r=r, s=s: a[r, s], outcome.params)
            acc, loss = _direct(tiny_model, p, x, labels)
            assert outcome.train_accuracy[r, s] == pytest.approx(acc, abs=1e-12)
            assert outcome.loss[r, s] == pytest.approx(loss, rel=1e-9)
            assert outcome.test_accuracy[r, s] == pytest.approx(
                _direct(tiny_model, p, x_test, labels_test)[0], abs=1e-12
            )
            assert outcome.fitted[r, s] == (acc == 1.0)
    # the tiny rate hits the cap without fitting, the large one fits before it
    assert outcome.reason[0].tolist() == ["cap", "cap"] and not outcome.fitted[0].any()
    assert outcome.steps[0].tolist() == [600, 600]
    assert outcome.reason[1].tolist() == ["fitted", "fitted"] and outcome.fitted[1].all()
    assert (outcome.steps[1] < 600).all()
    assert outcome.num_params == 6 * 16 + 16 + 16 * 3 + 3 == tiny_model.num_params
    rec = outcome.record()
    assert "params" not in rec and rec["reason"][1] == ["fitted", "fitted"]


def test_vmapped_runs_do_not_interact(task, tiny_model, outcome):
    # the same (rate, seed) runs at other positions of the vmapped batch, beside other runs
    # (same shapes, so no new compilation): every run is the run it would be alone
    x, labels, _, _ = task
    swapped = emc.fits(
        tiny_model, x, labels, learning_rates=(0.5, 1e-4), seeds=(3, 0), batch_size=8,
        max_steps=600, patience=10**6, chunk_steps=100, return_params=True, dtype=jnp.float64,
    )  # fmt: skip
    for (r, s), (r2, s2) in {(0, 0): (1, 1), (1, 1): (0, 0), (0, 1): (1, 0)}.items():
        assert swapped.steps[r, s] == outcome.steps[r2, s2]
        assert swapped.reason[r, s] == outcome.reason[r2, s2]
        for a, b in zip(
            jax.tree_util.tree_leaves(swapped.params), jax.tree_util.tree_leaves(outcome.params)
        ):
            np.testing.assert_allclose(a[r, s], b[r2, s2], rtol=1e-12, atol=1e-14)


def test_plateau_and_divergence_stop_early(task, tiny_model):
    x, labels, _, _ = task
    # the same compiled chunk as `outcome` (same shapes): only traced stopping parameters differ
    out = emc.fits(
        tiny_model, x, labels, learning_rates=(1e-4, 1e30), seeds=(0, 3), batch_size=8,
        max_steps=600, patience=30, rel_tol=0.5, chunk_steps=100, dtype=jnp.float64,
    )  # fmt: skip
    assert out.reason[0].tolist() == ["plateau", "plateau"]
    assert (out.steps[0] < 600).all() and not out.fitted.any()
    assert out.reason[1].tolist() == ["diverged", "diverged"]


def test_fits_bad_inputs(task, tiny_model):
    x, labels, _, _ = task
    with pytest.raises(ValueError, match=r"`labels` must be class labels in \[0, 3\)"):
        emc.fits(tiny_model, x, np.where(labels == 0, 3, labels))
    with pytest.raises(ValueError, match=r"`labels` must be class labels in \[0, 3\)"):
        emc.fits(tiny_model, x, labels - 1)
    with pytest.raises(ValueError, match=r"`model` must be a model whose output is \(n, num_cl"):
        emc.fits(tiny_model, x, labels, num_classes=4)
    with pytest.raises(ValueError, match=r"`x` must be inputs of shape \(n, 6\)"):
        emc.fits(tiny_model, x[:, :5], labels)
    with pytest.raises(TypeError, match="`labels` must be an int array of shape"):
        emc.fits(tiny_model, x, labels.astype(float))
    with pytest.raises(ValueError, match="`optimizer` must be one of"):
        emc.fits(tiny_model, x, labels, optimizer="lbfgs")
    with pytest.raises(ValueError, match=r"`learning_rates\[0\]` must be a positive float"):
        emc.fits(tiny_model, x, labels, learning_rates=(0.0,))
    with pytest.raises(TypeError, match="`model` must be a model with init"):
        emc.fits(object(), x, labels)
    with pytest.raises(ValueError, match="`n_max` must be <= the 24 samples of `x`"):
        emc.measure(tiny_model, x, labels, n_min=2, n_max=25)
    with pytest.raises(ValueError, match="`n_min` must be <= n_max"):
        emc.measure(tiny_model, x, labels, n_min=20, n_max=10)


# --------------------------------------------------------------------------- models, data


@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda: emc.mlp((40,), 10, width=8, depth=3, activation="tanh"), (40,)),
        (lambda: emc.mlp((40,), 10, width=8, depth=0), (40,)),
        (lambda: emc.cnn((40,), 10, width=4, depth=2, kernel_size=3), (40,)),
        (lambda: emc.cnn((8, 8), 5, width=3, depth=2, kernel_size=3), (8, 8)),
    ],
)
def test_models_count_their_parameters(make, shape):
    m = make()
    params = jax.eval_shape(m.init, jax.random.PRNGKey(0))  # shapes only: nothing compiles
    assert emc.count_params(params) == m.num_params
    out = jax.eval_shape(m.apply, params, jax.ShapeDtypeStruct((3, *shape), jnp.float32))
    assert out.shape == (3, m.num_classes)


def test_variants():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((300, 12)), rng.integers(0, 10, size=300)
    xt, yt = rng.standard_normal((50, 12)), rng.integers(0, 10, size=50)
    v = emc.make_variant(x, y, xt, yt, num_classes=10, classes=3, seed=4)
    assert v.num_classes == 3 and sorted(set(v.class_map.tolist())) == [0, 1, 2]
    assert np.bincount(v.class_map).tolist() == [4, 3, 3]  # as equal as possible
    np.testing.assert_array_equal(v.labels_train, v.class_map[y])
    np.testing.assert_array_equal(v.x_train, x)
    p = emc.make_variant(x, y, xt, yt, num_classes=10, inputs="permuted", labels="random")
    cols = [int(np.argmax(np.all(p.x_train == x[:, [j]], axis=0))) for j in range(12)]
    assert sorted(cols) == list(range(12))  # a permutation of the features
    np.testing.assert_array_equal(p.x_test, xt[:, np.argsort(cols)])
    assert np.mean(p.labels_train == y) < 0.3 and p.settings["labels"] == "random"
    np.testing.assert_array_equal(p.labels_test, yt)
    g = emc.make_variant(x, y, xt, yt, num_classes=10, inputs="gaussian")
    assert g.x_train.shape == x.shape and not np.allclose(g.x_train, x)
    with pytest.raises(ValueError, match=r"`labels_train` must be class labels in \[0, 10\)"):
        emc.make_variant(x, y + 1, xt, yt, num_classes=10)
    with pytest.raises(ValueError, match="`classes` must be an int in"):
        emc.make_variant(x, y, xt, yt, num_classes=10, classes=11)


def test_emc_gap():
    assert emc.emc_gap(1000, 250) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="`emc_semantic` must be a positive float"):
        emc.emc_gap(0, 1)
