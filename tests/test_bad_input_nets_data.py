"""Bad input to jaxdyn.nets, jaxdyn.infinite and jaxdyn.data: each case raises a TypeError or
ValueError that names the argument and the received value (first-run quality issue), and
valid inputs that used to be refused are read back exactly."""

import gzip
import math
import pathlib
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdyn
from jaxdyn import data, infinite, nets

NAN, INF = float("nan"), float("inf")


def idx_bytes(a):
    """IDX encoding of `a` (uint8 only here): magic 00 00 08 ndim, big-endian sizes, data."""
    a = np.asarray(a, np.uint8)
    return bytes([0, 0, 0x08, a.ndim]) + np.asarray(a.shape, ">u4").tobytes() + a.tobytes()


# --------------------------------------------------------------------------- nets: inputs


@pytest.fixture(scope="module")
def mlp():
    init_fn, apply_fn, kernel_fn = nets.serial(nets.Dense(4), nets.Relu(), nets.Dense(1))
    _, params = init_fn(jax.random.PRNGKey(0), (-1, 3))
    return apply_fn, params, kernel_fn


def test_dense_reports_the_users_shape(mlp):
    apply_fn, params, _ = mlp
    # one example without its batch axis: the user's shape, and how to fix it
    with pytest.raises(
        ValueError,
        match=r"Dense needs inputs of shape \(n, features\); "
        r"got shape \(3,\) .*x\[None\]",
    ):
        apply_fn(params, jnp.ones(3))
    # a feature count the params were not made for: no raw dot_general error
    with pytest.raises(
        ValueError,
        match=r"Dense\(4\) needs inputs with 3 features \(its params W "
        r"have shape \(3, 4\)\); got shape \(2, 5\)",
    ):
        apply_fn(params, jnp.ones((2, 5)))
    # through empirical_ntk, which evaluates the model per example: the message must still say
    # what to do (or show the user's shape), not only the internal (1,)
    with pytest.raises(ValueError, match=r"x\[None\]|\(3,\)"):
        jaxdyn.empirical_ntk(apply_fn, params, jnp.ones(3))


def test_conv_reports_channel_mismatch():
    init_fn, apply_fn, _ = nets.Conv(2, (2, 2))
    _, params = init_fn(jax.random.PRNGKey(0), (-1, 4, 4, 2))
    with pytest.raises(
        ValueError,
        match=r"Conv\(2\) needs inputs with 2 channels .*"
        r"got shape \(1, 4, 4, 3\)",
    ):
        apply_fn(params, jnp.ones((1, 4, 4, 3)))
    with pytest.raises(TypeError, match=r"`Conv params` must be a pair \(W, b\)"):
        apply_fn({"W": params[0]}, jnp.ones((1, 4, 4, 2)))


def test_kernel_fn_rejects_nan_inputs_and_still_jits():
    W_std, b_std = 1.5, 0.1
    kernel_fn = nets.Dense(1, W_std=W_std, b_std=b_std).kernel_fn
    x = np.arange(12.0).reshape(4, 3) / 10
    bad = x.copy()
    bad[1, 0] = NAN
    with pytest.raises(
        ValueError,
        match=r"`x1` must be finite; got 1 NaN/Inf value\(s\), first "
        r"at index \(1, 0\)",
    ):
        kernel_fn(bad)
    bad2 = x[:2].copy()
    bad2[0, 2] = INF
    with pytest.raises(ValueError, match=r"`x2` must be finite.*index \(0, 2\)"):
        kernel_fn(x, bad2, "ntk")
    with pytest.raises(ValueError, match=r"`x1` must be a non-empty batch.*got shape \(0, 3\)"):
        kernel_fn(np.zeros((0, 3)))
    with pytest.raises(TypeError, match=r"`x1` must be a real array.*complex"):
        kernel_fn(x.astype(complex))
    # A single Dense layer's NNGP in closed form: W_std^2 x x^T / d + b_std^2.
    want = W_std**2 * x @ x.T / 3 + b_std**2
    np.testing.assert_allclose(kernel_fn(x, None, "nngp"), want, rtol=1e-14)
    # The check looks at concrete values only: under jit it is skipped, not an error.
    jitted = jax.jit(lambda a: kernel_fn(a, None, "nngp"))
    np.testing.assert_allclose(jitted(x), want, rtol=1e-14)
    assert np.isnan(np.asarray(jitted(bad))[1, 1])


@pytest.mark.parametrize(
    "make, exc, pattern",
    [
        (
            lambda: nets.Dense(16, W_std=NAN),
            ValueError,
            r"`W_std` must be a non-negative float; got nan",
        ),
        (lambda: nets.Dense(16, W_std=np.float32(INF)), ValueError, r"`W_std` .*got inf"),
        (
            lambda: nets.Dense(16, b_std=-0.5),
            ValueError,
            r"`b_std` must be a non-negative float or None; got -0.5",
        ),
        (
            lambda: nets.Dense(16, W_std="1"),
            TypeError,
            r"`W_std` must be a non-negative float; got '1'",
        ),
        (lambda: nets.Dense(16, W_std=True), TypeError, r"`W_std` .*got True"),
        (lambda: nets.Dense(16.0), TypeError, r"`out` must be a positive int; got 16.0"),
        (
            lambda: nets.Dense(16, parameterization=None),
            ValueError,
            r"`parameterization` must be one of 'ntk', 'standard'; got None",
        ),
        (lambda: nets.Conv(3, (3, 3), W_std=NAN), ValueError, r"`W_std` .*got nan"),
        (lambda: nets.Conv(3, (3, 3), b_std=INF), ValueError, r"`b_std` .*got inf"),
        (
            lambda: nets.Conv(3, (2.5, 3)),
            TypeError,
            r"`filter_shape\[0\]` must be a positive int; got 2.5",
        ),
        (
            lambda: nets.Conv(3, 3),
            TypeError,
            r"`filter_shape` must be 2 positive ints \(fh, fw\); got 3",
        ),
        (
            lambda: nets.Conv(3, (3, 3), strides=(1, 0)),
            ValueError,
            r"`strides\[1\]` must be a positive int; got 0",
        ),
        (
            lambda: nets.Conv(3, (3, 3), padding=1),
            ValueError,
            r"`padding` must be 'VALID' or 'SAME'; got 1",
        ),
        (lambda: nets.ABRelu(NAN, 1.0), ValueError, r"`a` must be a finite float; got nan"),
        (lambda: nets.LeakyRelu(INF), ValueError, r"`alpha` must be a finite float; got inf"),
        (lambda: nets.Erf(b=NAN), ValueError, r"`b` must be a finite float; got nan"),
        (lambda: nets.Sin(c=INF), ValueError, r"`c` must be a finite float; got inf"),
        (lambda: nets.Sin(a=1j), TypeError, r"`a` must be a finite float; got 1j"),
        (lambda: nets.FanOut(0), ValueError, r"`num` must be a positive int; got 0"),
        (
            lambda: nets.Tanh(deg=np.int64(300)),
            ValueError,
            r"`deg` must be an int in \[1, 200\]; got 300",
        ),
        (
            lambda: nets.Gelu(angular_deg=2.0),
            TypeError,
            r"`angular_deg` must be an int in \[1, 200\]; got 2.0",
        ),
        (
            lambda: infinite.gaussian_expectation(
                jnp.multiply, jnp.zeros(1), jnp.ones(1), jnp.ones(1), deg=0
            ),
            ValueError,
            r"`deg` must be an int in \[1, 200\]; got 0",
        ),
        (lambda: infinite.quadrature_kernel(3), TypeError, r"`phi` must be callable; got int"),
        (
            lambda: nets.Elementwise(jnp.tanh, name=3),
            TypeError,
            r"`name` must be a str or None; got 3",
        ),
        (
            lambda: nets.Dense(3).init_fn(jax.random.PRNGKey(0), "ab"),
            TypeError,
            r"`Dense.init_fn\(input_shape\)` must be a tuple of ints.*; got 'ab'",
        ),
        (
            lambda: nets.Conv(3, (2, 2)).init_fn(jax.random.PRNGKey(0), None),
            TypeError,
            r"`Conv.init_fn\(input_shape\)` must be a tuple of ints.*; got None",
        ),
        (
            lambda: nets.Dense(2).apply_fn((jnp.ones((3, 2)), jnp.ones(2)), [[1.0, 2.0, 3.0]]),
            TypeError,
            r"`x` must be an array .*got \[\[1.0, 2.0, 3.0\]\]",
        ),
        (lambda: infinite.radial_rule(True), TypeError, r"`deg` .*got True"),
    ],
)
def test_layer_hyperparameters(make, exc, pattern):
    with pytest.raises(exc, match=pattern):
        make()


def test_valid_hyperparameters_of_numpy_types_are_accepted():
    # NumPy scalars and upper-case names are fine; they give the same kernel as Python values.
    x = np.linspace(-1, 1, 6).reshape(3, 2)
    a = nets.serial(
        nets.Dense(np.int64(5), W_std=np.float32(1.5), b_std=np.int64(0), parameterization="NTK"),
        nets.Erf(a=np.float64(2.0)),
    )
    b = nets.serial(nets.Dense(5, W_std=1.5, b_std=0.0), nets.Erf(a=2.0))
    np.testing.assert_array_equal(a.kernel_fn(x, None, "ntk"), b.kernel_fn(x, None, "ntk"))
    assert nets.Conv(2, np.array([2, 2]), strides=[1, 1]).init_fn(
        jax.random.PRNGKey(0), (-1, 3, 3, 1)
    )[0] == (-1, 2, 2, 2)


def test_gets_is_defined_once():
    assert nets.GETS is infinite.GETS == ("nngp", "ntk") == infinite.Kernel._fields


def test_no_local_copies_of_the_shared_checks():
    root = pathlib.Path(jaxdyn.__file__).parent
    sources = [
        root / "nets.py",
        root / "_nets_kernel.py",
        root / "infinite.py",
        *sorted((root / "data").glob("*.py")),
    ]
    for path in sources:
        text = path.read_text()
        for copy in (
            "def _check_int(",
            "def _check_float(",
            "def _check_bool(",
            "def _check_batch_size(",
            "def _check_width(",
            "GETS = (",
        ):
            assert copy not in text, f"{path.name} defines its own {copy}"


# --------------------------------------------------------------------------- data: readers


@pytest.mark.parametrize("reader", [data.read_idx, data.read_cifar10_binary])
@pytest.mark.parametrize("path", [None, 3, b"bytes.idx"])
def test_readers_name_a_bad_path(reader, path):
    name = reader.__name__
    with pytest.raises(
        TypeError,
        match=rf"`{name}\(path\)` must be a str or os.PathLike file "
        rf"path; got {type(path).__name__} ",
    ):
        reader(path)


def test_read_idx_reads_multi_member_gzip_exactly(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, size=(7, 5, 3), dtype=np.uint8)
    raw = idx_bytes(a)
    # `cat a.gz b.gz`: three members, split inside the header and inside the data
    cuts = [0, 6, 50, len(raw)]
    members = b"".join(gzip.compress(raw[i:j]) for i, j in zip(cuts[:-1], cuts[1:]))
    path = tmp_path / "multi.gz"
    path.write_bytes(members)
    assert gzip.decompress(members) == raw  # what gunzip reads
    got = data.read_idx(path)
    assert got.dtype == np.uint8 and got.shape == (7, 5, 3)
    np.testing.assert_array_equal(got, a)
    # a member too few or too many: the size is counted over every member
    short = tmp_path / "short.gz"
    short.write_bytes(gzip.compress(raw[:50]) + gzip.compress(raw[50:-1]))
    with pytest.raises(
        ValueError,
        match=rf"expected {len(raw)} bytes .* after decompression, "
        rf"got {len(raw) - 1}\.",
    ):
        data.read_idx(short)
    long = tmp_path / "long.gz"
    long.write_bytes(members + gzip.compress(b"\x00\x01"))
    with pytest.raises(ValueError, match=rf"expected {len(raw)} bytes .*got {len(raw) + 2}\."):
        data.read_idx(long)
    # a multi-member file whose second member is cut: refused, not a raw EOFError
    cut = tmp_path / "cut.gz"
    cut.write_bytes(gzip.compress(raw[:50]) + gzip.compress(raw[50:])[:-9])
    with pytest.raises(ValueError, match="cut.gz"):
        data.read_idx(cut)


def test_idx_loader_reads_multi_member_files(tmp_path):
    rng = np.random.default_rng(1)
    for part, n in (("train", 20), ("t10k", 10)):
        images = rng.integers(0, 256, size=(n, 2, 2), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        for kind, arr in (("images-idx3", images), ("labels-idx1", labels)):
            raw = idx_bytes(arr)
            (tmp_path / f"{part}-{kind}-ubyte.gz").write_bytes(
                gzip.compress(raw[:9]) + gzip.compress(raw[9:])
            )
        if part == "train":
            want_x, want_l = images, labels
    ds = data.fashion_mnist(tmp_path)
    np.testing.assert_allclose(ds.x_train, want_x.reshape(20, 4) / 255.0, rtol=0, atol=0)
    np.testing.assert_array_equal(ds.labels_train, want_l)


def test_readers_refuse_pickles_without_unpickling(tmp_path):
    payload = pickle.dumps({"data": np.zeros(3)}, protocol=4)
    (tmp_path / "p.idx").write_bytes(payload)
    (tmp_path / "p.bin").write_bytes(payload)
    with pytest.raises(ValueError, match="not an IDX file"):
        data.read_idx(tmp_path / "p.idx")
    with pytest.raises(ValueError, match="is a Python pickle"):
        data.read_cifar10_binary(tmp_path / "p.bin")
    root = pathlib.Path(data.__file__).parent
    for path in root.glob("*.py"):
        text = path.read_text()
        assert "import pickle" not in text and "allow_pickle=True" not in text, path.name


# --------------------------------------------------------------------------- data: loaders


@pytest.mark.parametrize("name, subdir", [("cifar10", "cifar10"), ("mnist", "mnist")])
def test_missing_files_without_any_folder_say_how_to_pass_data_dir(name, subdir, monkeypatch):
    monkeypatch.delenv("JAXDYN_DATA", raising=False)
    with pytest.raises(FileNotFoundError) as e:
        data.load(name)
    msg = str(e.value)
    assert "in any of:" not in msg  # no empty list of folders
    assert "no folder to search" in msg and "`data_dir` is None" in msg
    assert f"{name}(data_dir=...)" in msg and "JAXDYN_DATA" in msg, msg


def test_missing_files_list_the_folders_searched(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXDYN_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError) as e:
        data.load("cifar10")
    lines = str(e.value).splitlines()
    assert f"  {tmp_path / 'cifar10'}" in lines
    assert f"  {tmp_path / 'cifar10' / 'cifar-10-batches-bin'}" in lines


@pytest.mark.parametrize(
    "call, exc, pattern",
    [
        (
            lambda: data.fashion_mnist(data_dir=3),
            TypeError,
            r"`fashion_mnist\(data_dir\)` must be a folder path .*got int 3",
        ),
        (
            lambda: data.cifar10(data_dir=["a"]),
            TypeError,
            r"`cifar10\(data_dir\)` must be a folder path",
        ),
        (
            lambda: data.split(np.zeros(4), np.zeros(4), 2.0, 1),
            TypeError,
            r"`n_train` must be a non-negative int; got 2.0",
        ),
        (
            lambda: data.mnist1d(10, 10, scale_coeff=NAN),
            ValueError,
            r"`scale_coeff` must be a non-negative float; got nan",
        ),
        (
            lambda: data.mnist1d(10, 10, iid_noise_scale=-1.0),
            ValueError,
            r"`iid_noise_scale` .*got -1.0",
        ),
        (
            lambda: data.two_points(angle=INF),
            ValueError,
            r"`angle` must be a finite float; got inf",
        ),
        (
            lambda: data.modular_addition(5, NAN),
            ValueError,
            r"`train_fraction` must be a finite float; got nan",
        ),
        (
            lambda: data.digits(test_fraction="0.2"),
            TypeError,
            r"`test_fraction` must be a finite float; got '0.2'",
        ),
        (lambda: data.digits(center=1), TypeError, r"`center` must be True or False; got 1"),
        (
            lambda: data.digits(one_hot="no"),
            TypeError,
            r"`one_hot` must be True or False; got 'no'",
        ),
        (lambda: data.parity(n_bits=4.0), TypeError, r"`n_bits` must be a positive int; got 4.0"),
        (lambda: data.xor(seed=-2), ValueError, r"`seed` must be a non-negative int; got -2"),
        (
            lambda: data.load("xor", n_train=0),
            ValueError,
            r"`n_train` must be a positive int; got 0",
        ),
        (lambda: data.load(None), TypeError, r"`name` must be a str, one of .*; got NoneType"),
        (
            lambda: data.multi_frequency_1d(frequencies="abc"),
            TypeError,
            r"`frequencies` must be a non-empty 1D sequence of finite numbers; got 'abc'",
        ),
        (
            lambda: data.multi_frequency_1d(amplitudes=["x", 1, 2]),
            TypeError,
            r"`amplitudes` must be one finite number per frequency \(3\); got \['x', 1, 2\]",
        ),
        (
            lambda: data.two_points(norms="ab"),
            TypeError,
            r"`norms` must be two positive .*got 'ab'",
        ),
        (lambda: data.two_points(targets={"a": 1}), TypeError, r"`targets` must be finite numbers"),
    ],
)
def test_loader_arguments(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_numpy_integers_are_valid_counts_and_seeds():
    a = data.xor(np.int64(5), np.int32(3), seed=np.int64(1))
    b = data.xor(5, 3, seed=1)
    assert a.x_train.shape == (5, 2) and a.x_test.shape == (3, 2)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    # xor's defining property holds exactly
    np.testing.assert_array_equal(a.y_train[:, 0], np.sign(a.x_train[:, 0] * a.x_train[:, 1]))
    assert math.isclose(data.two_points(angle=np.float32(0.5)).info["angle"], 0.5, rel_tol=1e-7)
