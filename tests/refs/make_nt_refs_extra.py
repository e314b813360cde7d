"""More infinite-width reference kernels from neural-tangents 0.6.5, for jaxdyn.nets.

Same environment as make_nt_refs.py:
  JAX_ENABLE_X64=1 /tmp/ntref/bin/python make_nt_refs_extra.py OUTDIR
Writes OUTDIR/nt_refs_extra.npz (every array float64). Keys:
- `x1_s{seed}` (8, 5), `x2_s{seed}` (6, 5): vector inputs for seed in SEEDS.
- `inf_{arch}_s{seed}_w{scale}_{nngp|ntk}_{11|21}`: k(x1, x1) and k(x2, x1) for the dense
  architectures in `dense_archs(scale)`, each at every (seed, scale) in CASES.
- `img1` (4, 6, 6, 2), `img2` (3, 6, 6, 2): images; `inf_{arch}_{nngp|ntk}_{11|21}` for the
  conv architectures in `conv_archs()`, on (img1, None) and (img2, img1).
"""
import sys

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)
from neural_tangents import stax

SEEDS = (1, 2)
CASES = [(1, 1.0), (2, 0.7), (2, 1.3)]  # (seed, factor on every W_std)


def dense_archs(S):
    """name -> stax layers (NTK parameterization unless stated)."""
    D = lambda w, b, **kw: stax.Dense(512, W_std=S * w, b_std=b, **kw)
    return {
        "relu2": [D(1.5, 0.1), stax.Relu(), D(1.5, 0.1), stax.Relu(), stax.Dense(1, W_std=S * 1.5, b_std=0.1)],
        "erf2": [D(1.3, 0.2), stax.Erf(), D(1.3, 0.2), stax.Erf(), stax.Dense(1, W_std=S * 1.3, b_std=0.2)],
        "erfabc": [D(1.2, 0.1), stax.Erf(a=0.7, b=1.4, c=0.3), stax.Dense(1, W_std=S * 1.2, b_std=0.1)],
        "leaky2": [D(1.4, 0.1), stax.LeakyRelu(0.1), D(1.4, 0.1), stax.LeakyRelu(0.1),
                   stax.Dense(1, W_std=S * 1.4, b_std=0.1)],
        "abrelu": [D(1.2, 0.05), stax.ABRelu(-0.5, 1.2), D(1.2, 0.05), stax.ABRelu(-0.5, 1.2),
                   stax.Dense(1, W_std=S * 1.2, b_std=0.05)],
        "sin2": [D(1.1, 0.2), stax.Sin(), D(1.1, 0.2), stax.Sin(), stax.Dense(1, W_std=S * 1.1, b_std=0.2)],
        "sinabc": [D(1.0, 0.1), stax.Sin(a=1.3, b=0.8, c=0.4), stax.Dense(1, W_std=S * 1.0, b_std=0.1)],
        "gelu2": [D(1.3, 0.1), stax.Gelu(), D(1.3, 0.1), stax.Gelu(), stax.Dense(1, W_std=S * 1.3, b_std=0.1)],
        "ident": [D(1.3, 0.3), stax.Identity(), stax.Dense(1, W_std=S * 0.9, b_std=0.2)],
        "resnet": [D(1.5, 0.1),
                   stax.FanOut(2), stax.parallel(stax.serial(stax.Relu(), D(1.2, 0.1)), stax.Identity()),
                   stax.FanInSum(), stax.Relu(), stax.Dense(1, W_std=S * 1.5, b_std=0.1)],
        "erf_std": [D(1.3, 0.1, parameterization="standard"), stax.Erf(),
                    stax.Dense(256, W_std=S * 1.3, b_std=0.1, parameterization="standard"), stax.Erf(),
                    stax.Dense(1, W_std=S * 1.3, b_std=0.1, parameterization="standard")],
    }


def conv_archs():
    C = lambda **kw: stax.Conv(8, (3, 3), **{"W_std": 1.5, "b_std": 0.1, **kw})
    return {
        "cnn_flat": [C(padding="SAME"), stax.Relu(), C(padding="SAME"), stax.Relu(), stax.Flatten(),
                     stax.Dense(1, W_std=1.5, b_std=0.1)],
        "cnn_gap": [C(padding="SAME"), stax.Relu(), C(padding="SAME"), stax.Relu(), stax.GlobalAvgPool(),
                    stax.Dense(1, W_std=1.5, b_std=0.1)],
        "cnn_valid_stride": [C(padding="VALID", strides=(2, 2)), stax.Erf(), stax.Conv(8, (2, 2), W_std=1.3, b_std=0.2),
                             stax.Relu(), stax.GlobalAvgPool(), stax.Dense(1, W_std=1.2, b_std=0.0)],
        "cnn_std": [C(padding="SAME", parameterization="standard"), stax.Relu(),
                    stax.Conv(16, (2, 3), padding="VALID", W_std=1.4, b_std=0.1, parameterization="standard"),
                    stax.Relu(), stax.Flatten(), stax.Dense(1, W_std=1.5, b_std=0.1, parameterization="standard")],
        "cnn_res": [C(padding="SAME"), stax.FanOut(2),
                    stax.parallel(stax.serial(stax.Relu(), C(padding="SAME")), stax.Identity()),
                    stax.FanInSum(), stax.Relu(), stax.GlobalAvgPool(), stax.Dense(1, W_std=1.5, b_std=0.1)],
    }


def kernels(layers, a, b):
    _, _, kfn = stax.serial(*layers)
    k = kfn(a, b, ("nngp", "ntk"))
    return np.asarray(k.nngp), np.asarray(k.ntk)


out = {}
for seed in SEEDS:
    rng = np.random.default_rng(seed)
    out[f"x1_s{seed}"], out[f"x2_s{seed}"] = rng.normal(size=(8, 5)), rng.normal(size=(6, 5))
for seed, S in CASES:
    x1, x2 = out[f"x1_s{seed}"], out[f"x2_s{seed}"]
    for name, layers in dense_archs(S).items():
        for a, b, tag in [(x1, None, "11"), (x2, x1, "21")]:
            nngp, ntk = kernels(layers, a, b)
            out[f"inf_{name}_s{seed}_w{S:g}_nngp_{tag}"] = nngp
            out[f"inf_{name}_s{seed}_w{S:g}_ntk_{tag}"] = ntk

rng = np.random.default_rng(7)
img1, img2 = rng.normal(size=(4, 6, 6, 2)), rng.normal(size=(3, 6, 6, 2))
out["img1"], out["img2"] = img1, img2
for name, layers in conv_archs().items():
    for a, b, tag in [(img1, None, "11"), (img2, img1, "21")]:
        nngp, ntk = kernels(layers, a, b)
        out[f"inf_{name}_nngp_{tag}"], out[f"inf_{name}_ntk_{tag}"] = nngp, ntk

np.savez_compressed(f"{sys.argv[1]}/nt_refs_extra.npz",
                    **{k: np.asarray(v, dtype=np.float64) for k, v in out.items()})
print("wrote", len(out), "arrays")
