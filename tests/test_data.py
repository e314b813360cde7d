"""Tests of jaxdyn.data: file readers on small files written here, loaders, synthetic tasks."""

import gzip

import numpy as np
import pytest

from jaxdyn import data

# --------------------------------------------------------------------------- file writers

_CODES = {
    np.dtype("uint8"): 0x08,
    np.dtype("int8"): 0x09,
    np.dtype("int16"): 0x0B,
    np.dtype("int32"): 0x0C,
    np.dtype("float32"): 0x0D,
    np.dtype("float64"): 0x0E,
}


def idx_bytes(a, code=None, ndim=None):
    """IDX encoding of `a` (big-endian), optionally with a forged type code or ndim."""
    a = np.asarray(a)
    code = _CODES[a.dtype] if code is None else code
    ndim = a.ndim if ndim is None else ndim
    head = bytes([0, 0, code, ndim]) + np.asarray(a.shape, ">u4").tobytes()
    return head + a.astype(a.dtype.newbyteorder(">")).tobytes()


def write(path, payload, gz=False):
    if gz:
        payload = gzip.compress(payload)
    path.write_bytes(payload)
    return path


def write_mnist_dir(d, n_train=30, n_test=12, side=4, gz=True, seed=0):
    """Four IDX files with tiny images; label i has all pixels equal to 20 * i + noise-free."""
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    out = {}
    for part, n in (("train", n_train), ("t10k", n_test)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        rng.shuffle(labels)
        images = rng.integers(0, 256, size=(n, side, side), dtype=np.uint8)
        images[:, 0, 0] = labels * 20  # ties each image to its label, for checking order
        suffix = ".gz" if gz else ""
        write(d / f"{part}-images-idx3-ubyte{suffix}", idx_bytes(images), gz)
        write(d / f"{part}-labels-idx1-ubyte{suffix}", idx_bytes(labels), gz)
        out[part] = (images, labels)
    return out


def cifar_records(labels, rng):
    """CIFAR-10 binary bytes and the expected NHWC images for the given labels."""
    n = len(labels)
    chw = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    rec = np.concatenate([np.asarray(labels, np.uint8)[:, None], chw.reshape(n, -1)], axis=1)
    return rec.tobytes(), chw.transpose(0, 2, 3, 1)


def write_cifar_dir(d, per_batch=2, seed=0):
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    xs, ls = [], []
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        labels = rng.integers(0, 10, size=per_batch)
        raw, images = cifar_records(labels, rng)
        (d / name).write_bytes(raw)
        xs.append(images)
        ls.append(labels)
    return np.concatenate(xs[:5]), np.concatenate(ls[:5]), xs[5], ls[5]


# --------------------------------------------------------------------------- read_idx


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_ubyte_images_and_labels(tmp_path, gz):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 3, 4), dtype=np.uint8)
    labels = np.arange(5, dtype=np.uint8)
    got_i = data.read_idx(write(tmp_path / "im", idx_bytes(images), gz))
    got_l = data.read_idx(write(tmp_path / "lab", idx_bytes(labels), gz))
    assert got_i.dtype == np.uint8 and got_i.shape == (5, 3, 4)
    np.testing.assert_array_equal(got_i, images)
    np.testing.assert_array_equal(got_l, labels)


@pytest.mark.parametrize("dtype", ["float32", "float64", "int16", "int32", "int8"])
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_multibyte_types_are_big_endian(tmp_path, dtype, gz):
    a = (np.arange(24).reshape(2, 3, 4) - 7).astype(dtype) * (1.5 if dtype[0] == "f" else 1)
    got = data.read_idx(write(tmp_path / "a", idx_bytes(a), gz))
    assert got.dtype == np.dtype(dtype) and got.dtype.isnative
    np.testing.assert_array_equal(got, a)


def test_read_idx_truncated_and_oversized(tmp_path):
    raw = idx_bytes(np.zeros((4, 5), np.uint8))  # 4 + 8 header + 20 data = 32 bytes
    with pytest.raises(ValueError, match=r"expected 32 bytes .* got 31"):
        data.read_idx(write(tmp_path / "short", raw[:-1]))
    with pytest.raises(ValueError, match=r"expected 32 bytes .* got 33"):
        data.read_idx(write(tmp_path / "long", raw + b"\x00"))
    with pytest.raises(ValueError, match=r"expected 32 bytes"):
        data.read_idx(write(tmp_path / "short.gz", raw[:-1], gz=True))
    with pytest.raises(ValueError, match=r"expected 32 bytes"):
        data.read_idx(write(tmp_path / "long.gz", raw + b"\x00", gz=True))
    with pytest.raises(ValueError, match="truncated IDX header"):
        data.read_idx(write(tmp_path / "tiny", b"\x00\x00"))
    # A gzip file cut in the middle of the stream: its trailer is gone, so it must not parse.
    with pytest.raises(ValueError):
        data.read_idx(write(tmp_path / "cut.gz", gzip.compress(raw)[:-6]))


def test_read_idx_bad_magic_and_type(tmp_path):
    raw = idx_bytes(np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match="magic must start with bytes 00 00; got 01 02"):
        data.read_idx(write(tmp_path / "m", b"\x01\x02" + raw[2:]))
    with pytest.raises(ValueError, match="unknown IDX type code 0x0A"):
        data.read_idx(write(tmp_path / "t", idx_bytes(np.zeros(3, np.uint8), code=0x0A)))
    with pytest.raises(ValueError, match="0 dimensions"):
        data.read_idx(write(tmp_path / "z", b"\x00\x00\x08\x00"))
    with pytest.raises(FileNotFoundError, match="no IDX file"):
        data.read_idx(tmp_path / "absent")


def test_read_idx_ndim_does_not_match_dims(tmp_path):
    a = np.arange(6, dtype=np.uint8).reshape(2, 3)
    # Header claims 3 dims: the third size is read from the data, so sizes disagree.
    raw = bytes([0, 0, 0x08, 3]) + np.asarray((2, 3), ">u4").tobytes() + a.tobytes()
    with pytest.raises(ValueError, match="size mismatch .* expected .* bytes"):
        data.read_idx(write(tmp_path / "a", raw))
    # A gzip header claiming far more data than the file can hold is refused before allocating.
    huge = bytes([0, 0, 0x08, 2]) + np.asarray((60000, 60000), ">u4").tobytes()
    with pytest.raises(ValueError, match="more than a .*-byte gzip file can hold"):
        data.read_idx(write(tmp_path / "huge.gz", huge, gz=True))


# --------------------------------------------------------------------------- CIFAR-10


def test_read_cifar10_binary_two_batches(tmp_path):
    rng = np.random.default_rng(1)
    for name, labels in (("data_batch_1.bin", [3, 0, 9]), ("test_batch.bin", [7])):
        raw, want = cifar_records(labels, rng)
        x, lab = data.read_cifar10_binary(write(tmp_path / name, raw))
        assert x.shape == (len(labels), 32, 32, 3) and x.dtype == np.uint8
        np.testing.assert_array_equal(x, want)
        np.testing.assert_array_equal(lab, labels)
    # Layout check on one pixel: channel c, row h, column w sits at 1 + 1024 c + 32 h + w.
    rec = np.frombuffer(raw, np.uint8)
    assert x[0, 5, 7, 2] == rec[1 + 1024 * 2 + 32 * 5 + 7]


def test_read_cifar10_binary_bad_files(tmp_path):
    rng = np.random.default_rng(2)
    raw, _ = cifar_records([1, 2], rng)
    with pytest.raises(ValueError, match="multiple of 3073 bytes, got 6145"):
        data.read_cifar10_binary(write(tmp_path / "a.bin", raw[:-1]))
    with pytest.raises(ValueError, match="multiple of 3073 bytes, got 0"):
        data.read_cifar10_binary(write(tmp_path / "e.bin", b""))
    bad = bytearray(raw)
    bad[3073] = 10
    with pytest.raises(ValueError, match="record 1 has label 10"):
        data.read_cifar10_binary(write(tmp_path / "b.bin", bytes(bad)))


def test_cifar10_refuses_pickled_python_version(tmp_path):
    # Opening bytes of a protocol-4 pickle; written by hand, nothing here uses pickle.
    fake = b"\x80\x04\x95" + bytes(100)
    with pytest.raises(ValueError, match="never unpickles"):
        data.read_cifar10_binary(write(tmp_path / "batch.bin", fake))
    with pytest.raises(ValueError, match="cifar-10-binary.tar.gz"):
        data.read_cifar10_binary(write(tmp_path / "data_batch_1", fake))
    py = tmp_path / "root" / "cifar-10-batches-py"
    py.mkdir(parents=True)
    write(py / "data_batch_1", fake)
    with pytest.raises(ValueError, match="Python version"):
        data.cifar10(tmp_path / "root")


def test_cifar10_loader(tmp_path, monkeypatch):
    x_tr, l_tr, x_te, l_te = write_cifar_dir(tmp_path / "c" / "cifar-10-batches-bin")
    ds = data.cifar10(tmp_path / "c", flatten=False)
    assert ds.x_train.shape == (10, 32, 32, 3) and ds.x_test.shape == (2, 32, 32, 3)
    np.testing.assert_allclose(ds.x_train, x_tr / 255.0)
    np.testing.assert_allclose(ds.x_test, x_te / 255.0)
    np.testing.assert_array_equal(ds.labels_train, l_tr)
    np.testing.assert_array_equal(ds.labels_test, l_te)
    assert ds.y_train.shape == (10, 10)
    monkeypatch.setenv("JAXDYN_DATA", str(tmp_path / "env"))
    write_cifar_dir(tmp_path / "env" / "cifar10")
    assert data.cifar10().x_train.shape == (10, 3072)
    with pytest.raises(FileNotFoundError, match=r"(?s)test_batch.bin.*nowhere"):
        data.cifar10(tmp_path / "nowhere")


# --------------------------------------------------------------------------- (Fashion-)MNIST


@pytest.mark.parametrize("gz", [False, True])
def test_fashion_mnist_from_data_dir(tmp_path, gz):
    files = write_mnist_dir(tmp_path, gz=gz)
    ds = data.fashion_mnist(data_dir=tmp_path)
    images, labels = files["train"]
    assert ds.x_train.shape == (30, 16) and ds.x_test.shape == (12, 16)
    np.testing.assert_allclose(ds.x_train, images.reshape(30, -1) / 255.0)
    np.testing.assert_array_equal(ds.labels_train, labels)
    np.testing.assert_array_equal(ds.y_train, np.eye(10)[labels])
    assert ds.name == "fashion_mnist" and len(ds.info["source"]) == 4

    sub = data.fashion_mnist(tmp_path, classes=(2, 7), flatten=False, n_train=5, seed=3)
    assert sub.x_train.shape == (5, 4, 4, 1) and set(np.unique(sub.y_train)) <= {-1.0, 1.0}
    # Pixel (0, 0) encodes the original label, so the +-1 targets can be checked against it.
    orig = np.round(sub.x_train[:, 0, 0, 0] * 255 / 20).astype(int)
    np.testing.assert_array_equal(np.where(orig == 2, -1.0, 1.0), sub.y_train[:, 0])
    assert sub.info["classes"] == (2, 7)


def test_idx_loaders_search_env_var_and_system_dir(tmp_path, monkeypatch):
    write_mnist_dir(tmp_path / "env" / "fashion-mnist", n_train=20)
    write_mnist_dir(tmp_path / "env" / "mnist", n_train=10)
    monkeypatch.setenv("JAXDYN_DATA", str(tmp_path / "env"))
    assert data.fashion_mnist().x_train.shape[0] == 20
    assert data.mnist().x_train.shape[0] == 10
    assert data.load("mnist", n_test=3).x_test.shape[0] == 3

    monkeypatch.delenv("JAXDYN_DATA")
    write_mnist_dir(tmp_path / "system", n_train=15, gz=True)
    monkeypatch.setattr(data, "FASHION_MNIST_SYSTEM_DIR", str(tmp_path / "system"))
    assert data.fashion_mnist().x_train.shape[0] == 15


def test_idx_loaders_missing_files_say_where_and_how(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXDYN_DATA", str(tmp_path / "env"))
    monkeypatch.setattr(data, "FASHION_MNIST_SYSTEM_DIR", str(tmp_path / "sys"))
    with pytest.raises(FileNotFoundError) as e:
        data.fashion_mnist()
    msg = str(e.value)
    assert str(tmp_path / "env" / "fashion-mnist") in msg and str(tmp_path / "sys") in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "JAXDYN_DATA" in msg
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        data.mnist(tmp_path / "nothing")


def test_idx_loader_rejects_inconsistent_files(tmp_path):
    write_mnist_dir(tmp_path)
    write(tmp_path / "train-labels-idx1-ubyte.gz", idx_bytes(np.zeros(29, np.uint8)), gz=True)
    with pytest.raises(ValueError, match=r"one label per image \(30\)"):
        data.fashion_mnist(tmp_path)
    write(tmp_path / "train-labels-idx1-ubyte.gz", idx_bytes(np.full(30, 11, np.uint8)), True)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 10\); got 11"):
        data.fashion_mnist(tmp_path)


# --------------------------------------------------------------------------- digits


def test_digits_shapes_and_split():
    ds = data.digits()
    assert ds.x_train.shape[0] + ds.x_test.shape[0] == 1797
    assert ds.x_train.shape[1:] == (64,) and ds.y_train.shape == (ds.x_train.shape[0], 10)
    assert ds.x_train.min() >= 0.0 and ds.x_train.max() <= 1.0
    assert data.digits(flatten=False).x_test.shape[1:] == (8, 8, 1)
    # Real data: a least-squares linear classifier is far above chance.
    xtr = np.c_[ds.x_train, np.ones(len(ds.x_train))]
    w = np.linalg.lstsq(xtr, ds.y_train, rcond=None)[0]
    pred = np.argmax(np.c_[ds.x_test, np.ones(len(ds.x_test))] @ w, axis=1)
    assert np.mean(pred == ds.labels_test) > 0.9

    again, other = data.digits(seed=0), data.digits(seed=1)
    np.testing.assert_array_equal(ds.x_train, again.x_train)
    assert not np.array_equal(ds.x_train, other.x_train)
    small = data.digits(100, 50)
    assert small.x_train.shape[0] == 100 and small.x_test.shape[0] == 50


def test_digits_standardize_uses_train_statistics_only():
    ds = data.digits(standardize=True)
    raw = data.digits()
    np.testing.assert_allclose(ds.x_train.mean(axis=0), 0.0, atol=1e-12)
    assert np.max(np.abs(ds.x_test.mean(axis=0))) > 1e-3
    np.testing.assert_allclose(ds.info["standardize_mean"], raw.x_train.mean(axis=0))
    std = ds.x_train.std(axis=0)
    constant = raw.x_train.std(axis=0) == 0
    assert constant.any()  # digits has always-blank border pixels
    np.testing.assert_allclose(std[~constant], 1.0)
    np.testing.assert_array_equal(ds.x_train[:, constant], 0.0)
    assert np.all(np.isfinite(ds.x_test))


def test_digits_binary_classes_and_encodings():
    ds = data.digits(classes=(0, 1))
    # load_digits has 178 zeros and 182 ones.
    assert ds.x_train.shape[0] + ds.x_test.shape[0] == 360
    assert ds.y_train.shape == (ds.x_train.shape[0], 1)
    assert set(np.unique(ds.y_train)) == {-1.0, 1.0}
    np.testing.assert_array_equal(ds.y_train[:, 0], np.where(ds.labels_train == 0, -1.0, 1.0))
    n_minus = np.sum(ds.y_train == -1) + np.sum(ds.y_test == -1)
    assert n_minus == 178 and ds.info["classes"] == (0, 1)
    np.testing.assert_array_equal(data.digits(classes=np.array([0, 1])).y_train, ds.y_train)

    oh = data.digits(classes=(3, 1, 4), one_hot=True, center=True, dtype=np.float32)
    assert oh.y_train.shape[1] == 3 and oh.y_train.dtype == np.float32
    np.testing.assert_allclose(oh.y_train.sum(axis=1), 0.0, atol=1e-6)
    np.testing.assert_allclose(oh.y_train.max(axis=1), 2.0 / 3.0, rtol=1e-6)
    lab = data.digits(one_hot=False)
    np.testing.assert_array_equal(lab.y_train[:, 0], lab.labels_train)


# --------------------------------------------------------------------------- MNIST-1D


def test_mnist1d_shapes_balance_determinism_and_signal():
    ds = data.mnist1d()
    assert ds.x_train.shape == (4000, 40) and ds.x_test.shape == (1000, 40)
    assert ds.y_train.shape == (4000, 10)
    all_labels = np.concatenate([ds.labels_train, ds.labels_test])
    np.testing.assert_array_equal(np.bincount(all_labels), np.full(10, 500))
    assert np.all(np.abs(np.bincount(ds.labels_train) - 400) < 50)
    both = np.concatenate([ds.x_train, ds.x_test])
    np.testing.assert_allclose([both.mean(), both.std()], [0.0, 1.0], atol=1e-12)

    small = data.mnist1d(200, 50, seed=5)
    np.testing.assert_array_equal(small.x_train, data.mnist1d(200, 50, seed=5).x_train)
    assert not np.array_equal(small.x_train, data.mnist1d(200, 50, seed=6).x_train)
    # Linear models reach roughly 25-30% on MNIST-1D: above chance, far from solved.
    xtr = np.c_[ds.x_train, np.ones(4000)]
    w = np.linalg.solve(xtr.T @ xtr + 1e-3 * np.eye(41), xtr.T @ ds.y_train)
    acc = np.mean(np.argmax(np.c_[ds.x_test, np.ones(1000)] @ w, axis=1) == ds.labels_test)
    assert 0.17 < acc < 0.45


def test_mnist1d_templates_are_distinct_and_start_at_zero():
    t = data._mnist1d_templates()
    assert t.shape == (10, 12)
    np.testing.assert_array_equal(t[:, 0], 0.0)
    d = np.linalg.norm(t[:, None] - t[None], axis=-1)
    assert np.all(d[~np.eye(10, dtype=bool)] > 0.1)


# --------------------------------------------------------------------------- synthetic tasks


def test_multi_frequency_1d_matches_formula():
    ds = data.multi_frequency_1d(50, 101, frequencies=(1, 4), amplitudes=(2.0, 0.5), seed=3)
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        np.testing.assert_allclose(
            y[:, 0],
            2.0 * np.sin(np.pi * x[:, 0]) + 0.5 * np.sin(4 * np.pi * x[:, 0]),
            rtol=0,
            atol=1e-14,
        )
        assert np.all(np.abs(x) <= 1.0)
    np.testing.assert_array_equal(ds.x_test[:, 0], np.linspace(-1, 1, 101))
    assert ds.labels_train is None
    default = data.multi_frequency_1d()
    np.testing.assert_allclose(
        default.y_test[:, 0],
        sum(np.sin(np.pi * f * default.x_test[:, 0]) for f in (1, 3, 5)),
        atol=1e-14,
    )


def test_xor_targets_are_sign_products():
    ds = data.xor(300, 100, seed=1)
    for x, y, lab in (
        (ds.x_train, ds.y_train, ds.labels_train),
        (ds.x_test, ds.y_test, ds.labels_test),
    ):
        np.testing.assert_array_equal(y[:, 0], np.sign(x[:, 0]) * np.sign(x[:, 1]))
        np.testing.assert_array_equal(lab, (y[:, 0] > 0).astype(int))
    assert ds.x_train.shape == (300, 2) and ds.y_test.shape == (100, 1)


def test_parity_is_product_of_support_bits():
    ds = data.parity(12, 4, 500, 200, seed=2)
    supp = list(ds.info["support"])
    assert len(supp) == 4 and len(set(supp)) == 4
    assert set(np.unique(ds.x_train)) == {-1.0, 1.0}
    np.testing.assert_array_equal(ds.y_train[:, 0], np.prod(ds.x_train[:, supp], axis=1))
    np.testing.assert_array_equal(ds.y_test[:, 0], np.prod(ds.x_test[:, supp], axis=1))
    fixed = data.parity(5, n_train=64, n_test=8, support=(0, 4))
    np.testing.assert_array_equal(fixed.y_train[:, 0], fixed.x_train[:, 0] * fixed.x_train[:, 4])


def test_two_points_geometry():
    ds = data.two_points(input_dim=5, angle=0.7, norms=(2.0, 0.5), targets=[[1.0, 0.0], [0.0, 3.0]])
    x = ds.x_train
    assert x.shape == (2, 5) and ds.y_train.shape == (2, 2)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), [2.0, 0.5])
    cos = x[0] @ x[1] / (2.0 * 0.5)
    np.testing.assert_allclose(cos, np.cos(0.7))
    rot = data.two_points(input_dim=5, angle=0.7, norms=(2.0, 0.5), seed=4)
    np.testing.assert_allclose(rot.x_train @ rot.x_train.T, x @ x.T, atol=1e-12)
    assert np.count_nonzero(np.abs(rot.x_train) > 1e-12) > 4
    np.testing.assert_array_equal(rot.y_train, [[1.0], [-1.0]])


def test_modular_addition_targets_every_row():
    p = 7
    ds = data.modular_addition(p, 0.4, seed=1)
    n_tr = round(0.4 * 49)
    assert ds.x_train.shape == (n_tr, 2 * p) and ds.x_test.shape == (49 - n_tr, 2 * p)
    for x, y, lab, pairs in (
        (ds.x_train, ds.y_train, ds.labels_train, ds.info["pairs_train"]),
        (ds.x_test, ds.y_test, ds.labels_test, ds.info["pairs_test"]),
    ):
        a, b = np.argmax(x[:, :p], axis=1), np.argmax(x[:, p:], axis=1)
        np.testing.assert_array_equal(x.sum(axis=1), 2.0)
        np.testing.assert_array_equal(np.argmax(y, axis=1), (a + b) % p)
        np.testing.assert_array_equal(y.sum(axis=1), 1.0)
        np.testing.assert_array_equal(lab, (a + b) % p)
        np.testing.assert_array_equal(pairs, np.stack([a, b], axis=1))
    every = np.concatenate([ds.info["pairs_train"], ds.info["pairs_test"]])
    assert len({tuple(r) for r in every}) == 49


# --------------------------------------------------------------------------- split and errors


def test_split_is_a_seeded_disjoint_permutation():
    x = np.arange(20)[:, None]
    s = data.split(x, x[:, 0] * 10, 12, 5, seed=7)
    np.testing.assert_array_equal(s.y_train, s.x_train[:, 0] * 10)
    assert not set(s.x_train[:, 0]) & set(s.x_test[:, 0])
    np.testing.assert_array_equal(s.x_train, data.split(x, x, 12, 5, seed=7).x_train)
    assert not np.array_equal(s.x_train, data.split(x, x, 12, 5, seed=8).x_train)
    with pytest.raises(ValueError, match=r"<= the 20 available examples; got 12 \+ 9"):
        data.split(x, x, 12, 9)
    with pytest.raises(ValueError, match="same number of examples"):
        data.split(x, x[:3], 1, 1)


def test_load_dispatch_and_unknown_name():
    assert set(data.DATASETS) == set(data._LOADERS)
    a, b = data.load("xor", n_train=10, n_test=4, seed=2), data.xor(10, 4, seed=2)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    with pytest.raises(ValueError, match=r"one of \('digits', 'mnist1d'.*'cifar10'\); got 'nope'"):
        data.load("nope")
    with pytest.raises(TypeError, match="`name` must be a str"):
        data.load(3)


@pytest.mark.parametrize(
    "call, exc, pattern",
    [
        (
            lambda: data.digits(classes=(0, 10)),
            ValueError,
            r"`classes` entries must be in \[0, 10\)",
        ),
        (lambda: data.digits(classes=(1, 1)), ValueError, "two distinct"),
        (lambda: data.digits(classes="01"), TypeError, "`classes` must be a sequence"),
        (
            lambda: data.digits(classes=(0, 1), n_train=400),
            ValueError,
            r"<= the 360 available examples .* got 400 \+ 72",
        ),
        (lambda: data.mnist1d(0, 10), ValueError, "`n_train` must be a positive int; got 0"),
        (
            lambda: data.mnist1d(10, 10, seed=-1),
            ValueError,
            "`seed` must be a non-negative int; got -1",
        ),
        (
            lambda: data.mnist1d(10, 10, seed=1.5),
            TypeError,
            "`seed` must be a non-negative int; got 1.5",
        ),
        (lambda: data.mnist1d(10, 10, padding=(5, 2)), ValueError, "`padding` must be a pair"),
        (lambda: data.digits(dtype=np.int32), TypeError, "`dtype` must be a numpy floating dtype"),
        (lambda: data.digits(one_hot=False, center=True), ValueError, "`center=True` applies"),
        (
            lambda: data.digits(test_fraction=1.0),
            ValueError,
            r"`test_fraction` must be in \(0, 1\)",
        ),
        (
            lambda: data.digits(standardize="yes"),
            TypeError,
            "`standardize` must be True or False; got 'yes'",
        ),
        (lambda: data.xor(n_train=True), TypeError, "`n_train` must be a positive int; got True"),
        (lambda: data.parity(4, 5), ValueError, "`k` must be <= n_bits=4; got 5"),
        (lambda: data.parity(4, support=(0, 4)), ValueError, r"`support` must be distinct"),
        (
            lambda: data.multi_frequency_1d(frequencies=(1, 2), amplitudes=(1,)),
            ValueError,
            "one finite number per frequency",
        ),
        (lambda: data.two_points(input_dim=1), ValueError, "`input_dim` must be an int >= 2"),
        (lambda: data.two_points(targets=[1, 2, 3]), ValueError, r"shape \(2, k\)"),
        (lambda: data.two_points(norms=(1.0, 0.0)), ValueError, "`norms` must be two positive"),
        (lambda: data.modular_addition(5, 1.0), ValueError, "at least one of the 25 pairs"),
        (lambda: data.modular_addition(1), ValueError, "`p` must be an int >= 2"),
    ],
)
def test_bad_arguments(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_image_loader_subsampling_errors(tmp_path):
    write_mnist_dir(tmp_path)
    with pytest.raises(
        ValueError,
        match=r"`n_train` must be <= the 6 available examples .*"
        r"got 7",
    ):
        data.fashion_mnist(tmp_path, classes=(0, 1), n_train=7)
    # A test split holding only label 0 has nothing to offer for classes (3, 4).
    write(tmp_path / "t10k-labels-idx1-ubyte.gz", idx_bytes(np.zeros(12, np.uint8)), True)
    with pytest.raises(ValueError, match="selects no test examples"):
        data.fashion_mnist(tmp_path, classes=(3, 4))
