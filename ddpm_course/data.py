"""Image data sets scaled to [-1, 1]: MNIST, Fashion-MNIST and CIFAR-10, with an offline path for each.

* ``mnist_subset``: 5,000 real MNIST digits bundled inside the package (``assets/mnist_subset.npz``,
  4,000 train / 1,000 test, see data/README.md). Always available; the shipped weights train on it.
* ``mnist``, ``fashion_mnist``, ``cifar10``: through torchvision from ``root`` (default ``<repo>/data``
  or ``$DDPM_COURSE_DATA``). A download is attempted only when the files are missing, with a short
  network timeout so an offline machine fails in seconds; then
  - mnist falls back to the bundled subset,
  - fashion_mnist looks for Debian's ``dataset-fashion-mnist`` raw files and copies them into place,
  - cifar10 raises with instructions.
  A message always says which source was used.

Every loader returns ``(x, y)``: x float32 (N, C, H, W) in [-1, 1], y int64 (N,).
"""

from __future__ import annotations

import gzip
import os
import shutil
import socket
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

DATASETS = ("mnist_subset", "mnist", "fashion_mnist", "cifar10")
SPLITS = ("train", "test")
SUBSET_FILE = Path(__file__).parent / "assets" / "mnist_subset.npz"
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")  # where dataset-fashion-mnist puts the .gz files
FASHION_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def say(msg: str) -> None:
    print(f"[ddpm_course.data] {msg}", file=sys.stderr)


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels 0…255 → float32 in [-1, 1] (DDPM §4: data scaled linearly to [−1, 1])."""
    return images.float().div(127.5).sub(1.0)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def default_root() -> Path:
    env = os.environ.get("DDPM_COURSE_DATA")
    if env:
        return Path(env)
    repo_data = Path(__file__).resolve().parent.parent / "data"
    return repo_data if repo_data.is_dir() else Path.home() / ".cache" / "ddpm_course" / "data"


# What a CIFAR-10 batch pickle may hold besides dicts, lists, bytes and numbers: numpy arrays. Anything else
# (os.system, say) is refused, so a planted file cannot run code.
_NUMPY_CORE = ("numpy.core.multiarray", "numpy._core.multiarray")   # numpy 1 and numpy 2 names
_CIFAR_GLOBALS = {(m, n) for m in _NUMPY_CORE for n in ("_reconstruct", "scalar")}
_CIFAR_GLOBALS |= {("numpy", "ndarray"), ("numpy", "dtype")}


def _read_cifar_batch(path: Path) -> dict:
    import pickle

    class Refused(pickle.UnpicklingError):
        pass

    class Restricted(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) in _CIFAR_GLOBALS:
                return super().find_class(module, name)
            raise Refused(f"{module}.{name}")

    try:
        with open(path, "rb") as f:
            return Restricted(f, encoding="bytes").load()
    except Refused as err:
        raise ValueError(f"{path} is not a CIFAR-10 batch: it holds {err}, which a CIFAR-10 batch never does "
                         "(refused without running it)") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
        raise ValueError(f"{path} is not a readable CIFAR-10 batch ({type(err).__name__}: {err})") from None


def load_mnist_subset(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """The bundled real MNIST subset: (x in [-1, 1] of shape (N, 1, 28, 28), labels (N,))."""
    _check_split(split)
    with np.load(SUBSET_FILE) as f:
        images, labels = f[f"{split}_images"], f[f"{split}_labels"]
    x = to_unit_range(torch.from_numpy(images.copy())).reshape(-1, 1, 28, 28)  # (N, 1, 28, 28)
    return x, torch.from_numpy(labels.astype(np.int64))


@contextmanager
def _socket_timeout(seconds: float):
    """torchvision's downloader has no timeout; bound every socket so offline fails fast."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def _torchvision(cls, root: Path, split: str, download: bool, **kw):
    """Open a torchvision data set from local files; try the download only when they are missing."""
    try:
        return cls(str(root), train=split == "train", download=False, **kw)
    except RuntimeError:
        if not download:
            raise
    with _socket_timeout(5.0):
        return cls(str(root), train=split == "train", download=True, **kw)


def _from_vision(ds) -> tuple[torch.Tensor, torch.Tensor]:
    data = torch.as_tensor(np.asarray(ds.data))
    x = data[:, None] if data.dim() == 3 else data.permute(0, 3, 1, 2)  # (N, C, H, W)
    return to_unit_range(x).contiguous(), torch.as_tensor(np.asarray(ds.targets), dtype=torch.long)


def _install_debian_fashion(root: Path, debian_dir: Path) -> bool:
    """Copy Debian's gzipped raw files into root/FashionMNIST/raw/ (gunzipped) for torchvision."""
    raw = root / "FashionMNIST" / "raw"
    found = {name: next(iter(sorted(debian_dir.rglob(name + ".gz"))), None) if debian_dir.is_dir() else None
             for name in FASHION_FILES}
    if not all(found.values()):
        return False
    raw.mkdir(parents=True, exist_ok=True)
    for name, src in found.items():
        if not (raw / name).exists():
            with gzip.open(src, "rb") as fin, open(raw / (name + ".part"), "wb") as fout:
                shutil.copyfileobj(fin, fout)
            os.replace(raw / (name + ".part"), raw / name)
    return True


def load(name: str, split: str = "train", root: str | Path | None = None, download: bool = True,
         debian_dir: str | Path = DEBIAN_FASHION) -> tuple[torch.Tensor, torch.Tensor]:
    """Load a data set by name (see ``DATASETS``) as ``(x in [-1, 1], labels)`` tensors."""
    if name not in DATASETS:
        raise ValueError(f"name must be one of {DATASETS}, got {name!r}")
    _check_split(split)
    if name == "mnist_subset":
        say(f"using the bundled MNIST subset ({SUBSET_FILE.name}, split={split!r})")
        return load_mnist_subset(split)
    from torchvision import datasets

    root = Path(root) if root is not None else default_root()
    if name == "mnist":
        try:
            ds = _torchvision(datasets.MNIST, root, split, download)
        except (RuntimeError, OSError) as err:
            say(f"full MNIST not found under {root / 'MNIST'} and could not be downloaded ({_short(err)}); "
                f"using the bundled 5,000-digit subset instead. For the full set, go online once or copy "
                f"the four raw files into {root / 'MNIST' / 'raw'}.")
            return load_mnist_subset(split)
        say(f"using MNIST from {root / 'MNIST'}")
        return _from_vision(ds)
    if name == "fashion_mnist":
        try:
            ds = _torchvision(datasets.FashionMNIST, root, split, download=False)
            say(f"using Fashion-MNIST from {root / 'FashionMNIST'}")
        except RuntimeError:
            if _install_debian_fashion(root, Path(debian_dir)):
                ds = _torchvision(datasets.FashionMNIST, root, split, download=False)
                say(f"using Fashion-MNIST from Debian's dataset-fashion-mnist ({debian_dir}), "
                    f"unpacked into {root / 'FashionMNIST' / 'raw'}")
            else:
                try:
                    ds = _torchvision(datasets.FashionMNIST, root, split, download)
                except (RuntimeError, OSError) as err:
                    raise RuntimeError(
                        f"Fashion-MNIST is not under {root / 'FashionMNIST'} and could not be downloaded "
                        f"({_short(err)}). Offline: `apt-get install dataset-fashion-mnist` (Debian/Ubuntu) "
                        f"or copy the four raw files into {root / 'FashionMNIST' / 'raw'}.") from None
                say(f"downloaded Fashion-MNIST into {root / 'FashionMNIST'}")
        return _from_vision(ds)
    folder = root / CIFAR_DIR
    if not folder.is_dir() and (root / CIFAR_TAR).is_file():
        _extract_cifar(root / CIFAR_TAR, root)
        say(f"extracted {root / CIFAR_TAR}")
    if not folder.is_dir():
        try:
            _torchvision(datasets.CIFAR10, root, split, download)
        except (RuntimeError, OSError) as err:
            raise RuntimeError(
                f"CIFAR-10 is not under {folder} and could not be downloaded "
                f"({_short(err)}). Offline: put cifar-10-python.tar.gz (or the extracted "
                f"cifar-10-batches-py/) under {root}.") from None
    say(f"using CIFAR-10 from {folder}")
    return read_cifar10(folder, split)


CIFAR_DIR, CIFAR_TAR = "cifar-10-batches-py", "cifar-10-python.tar.gz"
CIFAR_FILES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}


def read_cifar10(folder: str | Path, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """Read torchvision's ``cifar-10-batches-py`` folder (the original Python pickles: a dict with
    b"data" (N, 3072) uint8 in channel-major order and b"labels"). Unlike torchvision this does not
    demand the md5 sums of the full data set, so a small file in the same format works too."""
    _check_split(split)
    xs, ys = [], []
    for name in CIFAR_FILES[split]:
        path = Path(folder) / name
        if not path.is_file():
            raise FileNotFoundError(f"CIFAR-10 batch file {path} is missing")
        batch = _read_cifar_batch(path)
        if not isinstance(batch, dict) or b"data" not in batch:
            raise ValueError(f"{path} is not a CIFAR-10 batch (no b'data' entry)")
        xs.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(batch.get(b"labels", batch.get(b"fine_labels")), dtype=np.int64))
    x = to_unit_range(torch.from_numpy(np.concatenate(xs)))       # (N, 3, 32, 32)
    return x, torch.from_numpy(np.concatenate(ys))


def _extract_cifar(tar: Path, root: Path) -> None:
    import tarfile

    with tarfile.open(tar, "r:gz") as f:
        f.extractall(root, filter="data")


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:160]
