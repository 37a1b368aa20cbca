import gzip
import pickle
import socket
import struct
import time

import numpy as np
import pytest
import torch

from ddpm_course import data


def test_bundled_subset_is_real_mnist_in_unit_range():
    x, y = data.load_mnist_subset("train")
    xt, yt = data.load_mnist_subset("test")
    assert x.shape == (4000, 1, 28, 28) and xt.shape == (1000, 1, 28, 28)
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.min() == -1.0 and x.max() == 1.0
    assert torch.bincount(y).tolist() == [400] * 10 and torch.bincount(yt).tolist() == [100] * 10
    # MNIST digits: mostly black background, bright strokes near the centre
    assert (x == -1).float().mean() > 0.7
    assert x[:, :, 10:18, 10:18].mean() > x[:, :, :3, :].mean()
    with pytest.raises(ValueError, match="split must be one of"):
        data.load_mnist_subset("validation")


def test_unknown_dataset_name():
    with pytest.raises(ValueError, match="name must be one of"):
        data.load("svhn")


def test_mnist_falls_back_fast_to_the_subset_when_offline(tmp_path, monkeypatch, capsys):
    def offline(*args, **kwargs):
        raise OSError("network is unreachable (simulated)")

    monkeypatch.setattr(socket.socket, "connect", offline)
    start = time.perf_counter()
    x, y = data.load("mnist", "test", root=tmp_path, download=True)
    assert time.perf_counter() - start < 30
    assert x.shape == (1000, 1, 28, 28)
    err = capsys.readouterr().err
    assert "bundled 5,000-digit subset" in err and str(tmp_path / "MNIST" / "raw") in err


def _idx(path, array: np.ndarray) -> None:
    """Write an IDX file (the MNIST raw format): magic 0x08 (uint8), ndim, big-endian sizes, bytes."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_from_debian_raw_files(tmp_path, capsys):
    deb = tmp_path / "debian" / "fashion"
    deb.mkdir(parents=True)
    rng = np.random.default_rng(0)
    imgs = {"train": rng.integers(0, 256, (6, 28, 28)), "t10k": rng.integers(0, 256, (4, 28, 28))}
    for split, arr in imgs.items():
        _idx(deb / f"{split}-images-idx3-ubyte.gz", arr)
        _idx(deb / f"{split}-labels-idx1-ubyte.gz", np.arange(len(arr)) % 10)
    root = tmp_path / "root"
    x, y = data.load("fashion_mnist", "test", root=root, download=False, debian_dir=tmp_path / "debian")
    assert "dataset-fashion-mnist" in capsys.readouterr().err
    assert (root / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte").is_file()
    assert x.shape == (4, 1, 28, 28) and y.tolist() == [0, 1, 2, 3]
    torch.testing.assert_close(x[:, 0], torch.from_numpy(imgs["t10k"]).float() / 127.5 - 1)
    x2, _ = data.load("fashion_mnist", "train", root=root, download=False, debian_dir=tmp_path / "nowhere")
    assert x2.shape == (6, 1, 28, 28)


def test_fashion_mnist_missing_says_how_to_get_it(tmp_path):
    with pytest.raises(RuntimeError, match="apt-get install dataset-fashion-mnist"):
        data.load("fashion_mnist", root=tmp_path, download=False, debian_dir=tmp_path / "none")


def _write_cifar(folder, n_per_batch=3):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    batches = {}
    for name in [*data.CIFAR_FILES["train"], *data.CIFAR_FILES["test"]]:
        arr = rng.integers(0, 256, (n_per_batch, 3072)).astype(np.uint8)
        labels = list(rng.integers(0, 10, n_per_batch))
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": arr, b"labels": labels, b"batch_label": name.encode()}, f)
        batches[name] = (arr, labels)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [b"airplane"] * 10}, f)
    return batches


def test_cifar10_reads_torchvisions_format(tmp_path, capsys):
    batches = _write_cifar(tmp_path / "cifar-10-batches-py")
    x, y = data.load("cifar10", "train", root=tmp_path, download=False)
    assert "using CIFAR-10 from" in capsys.readouterr().err
    assert x.shape == (15, 3, 32, 32) and y.shape == (15,)
    arr, labels = batches["data_batch_2"]
    # channel-major rows: the first 1024 values are the red plane
    torch.testing.assert_close(x[3, 0], torch.from_numpy(arr[0, :1024].reshape(32, 32)).float() / 127.5 - 1)
    assert y[3:6].tolist() == labels
    xt, _ = data.load("cifar10", "test", root=tmp_path, download=False)
    assert xt.shape == (3, 3, 32, 32) and -1 <= xt.min() and xt.max() <= 1


def test_cifar10_missing_gives_instructions(tmp_path):
    with pytest.raises(RuntimeError, match="cifar-10-python.tar.gz"):
        data.load("cifar10", root=tmp_path, download=False)
    (tmp_path / "cifar-10-batches-py").mkdir()
    with pytest.raises(FileNotFoundError, match="data_batch_1"):
        data.load("cifar10", root=tmp_path, download=False)
