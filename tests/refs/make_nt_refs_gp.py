"""Reference values of `neural_tangents.predict.gp_inference` (neural-tangents 0.6.5).

`nt_refs_gp.npz` beside this script was written by it (tests/test_gp_inference.py reads it).
Run in the environment of `make_nt_refs.py`:
  python3 -m venv /tmp/ntref && /tmp/ntref/bin/pip install "jax==0.4.23" "jaxlib==0.4.23" \
      "neural-tangents==0.6.5" "numpy<2" "scipy<1.13"
  JAX_ENABLE_X64=1 /tmp/ntref/bin/python make_nt_refs_gp.py OUTDIR
Writes OUTDIR/nt_refs_gp.npz (copy it to tests/refs/). Every array is float64.

Inputs are those of `make_nt_refs.py` (default seed): x1 (8, 5) train, x2 (6, 5) test, the
relu1_ntk stax network, y = pred_y (8, 1). Keys: `gp_reg{r}_{get}_{mean|cov}` for
get in {nngp, ntk, ntkgp} and r in {0, 0.0001} (relative diag_reg, NT's default
diag_reg_absolute_scale=False), test-set mean (6, 1) and covariance (6, 6).
"""
import sys, numpy as np, jax
jax.config.update("jax_enable_x64", True)
import neural_tangents as nt
from neural_tangents import stax

SEED = 20261122
rng = np.random.default_rng(SEED)
x1 = rng.normal(size=(8, 5)); x2 = rng.normal(size=(6, 5))  # the draws of make_nt_refs.py
_, _, kfn = stax.serial(stax.Dense(512, W_std=1.5, b_std=0.05), stax.Relu(),
                        stax.Dense(1, W_std=1.5, b_std=0.05))
y = rng.normal(size=(8, 1))  # = pred_y of make_nt_refs.py (its next draw after x1, x2)
out = {"x1": x1, "x2": x2, "y": y}
k_dd = kfn(x1, None, ("nngp", "ntk"))
k_td = kfn(x2, x1, ("nngp", "ntk"))
k_tt_nngp = kfn(x2, None, "nngp")
k_tt = kfn(x2, None, ("nngp", "ntk"))
for reg in [0.0, 1e-4]:
    predict = nt.predict.gp_inference(k_dd, y, diag_reg=reg)
    for get in ["nngp", "ntk", "ntkgp"]:
        r = predict(get=get, k_test_train=k_td, k_test_test=k_tt)
        out[f"gp_reg{reg:g}_{get}_mean"] = np.asarray(r.mean)
        out[f"gp_reg{reg:g}_{get}_cov"] = np.asarray(r.covariance)
np.savez_compressed(f"{sys.argv[1]}/nt_refs_gp.npz",
                    **{k: np.asarray(v, dtype=np.float64) for k, v in out.items()})
