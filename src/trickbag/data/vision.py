"""Fashion-MNIST, CIFAR-10 and image folders (plain, .tar or .tar.gz), decoded once and cached."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import shutil
import struct
import tarfile
import tempfile
import urllib.request
import warnings
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from trickbag._optional import require
from trickbag._validate import check_choice
from trickbag.data.core import ArrayDataset, Splits, cache_dir

__all__ = ["fashion_mnist", "cifar10", "image_folder", "FASHION_MNIST_CLASSES", "CIFAR10_CLASSES"]

FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
_FMNIST_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
_FMNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
DEBIAN_FMNIST = Path("/usr/share/datasets/fashion-mnist")


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, count = struct.unpack(">II", data[:8])
    if magic == 2051:
        rows, cols = struct.unpack(">II", data[8:16])
        return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(count, rows, cols)
    if magic == 2049:
        return np.frombuffer(data, dtype=np.uint8, offset=8)
    raise ValueError(f"{path}: not an IDX image or label file (magic number {magic})")


def _download(url: str, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=dest.parent, delete=False) as tmp:
        with urllib.request.urlopen(url, timeout=60) as response:
            shutil.copyfileobj(response, tmp)
    os.replace(tmp.name, dest)


def _candidates(root: str | Path | None, name: str) -> list[Path]:
    places = []
    if root is not None:
        places += [Path(root), Path(root) / name]
    if os.environ.get("TRICKBAG_DATA"):
        places += [Path(os.environ["TRICKBAG_DATA"]), Path(os.environ["TRICKBAG_DATA"]) / name]
    return places


def fashion_mnist(root: str | Path | None = None, *, download: bool = True) -> Splits:
    """Fashion-MNIST (Xiao et al. 2017): 60,000 training and 10,000 test 28x28 grey images.

    Looks for the four original IDX files in ``root``, ``$TRICKBAG_DATA``, Debian's
    ``/usr/share/datasets/fashion-mnist`` (package ``dataset-fashion-mnist``) and the user
    cache, then downloads the official files into the cache when ``download`` and online;
    otherwise fails with a message listing where it looked and how to install the data.
    Returns ``Splits`` with no validation set (make one with ``split_off``).
    """
    places = _candidates(root, "fashion-mnist") + [DEBIAN_FMNIST, cache_dir() / "fashion-mnist"]
    found = next((p for p in places if all((p / f).exists() for f in _FMNIST_FILES.values())), None)
    if found is None and download:
        target = cache_dir() / "fashion-mnist"
        try:
            for f in _FMNIST_FILES.values():
                if not (target / f).exists():
                    _download(_FMNIST_URL + f, target / f)
            found = target
        except OSError as exc:
            download_error = exc
        else:
            download_error = None
    if found is None:
        looked = "\n  ".join(str(p) for p in places)
        why = f" (download failed: {download_error})" if download else ""
        raise FileNotFoundError(
            f"Fashion-MNIST not found{why}. Looked in:\n  {looked}\n"
            "Install it with `apt-get install dataset-fashion-mnist` (Debian), set TRICKBAG_DATA to a "
            f"folder holding {', '.join(_FMNIST_FILES.values())}, or run once with internet access."
        )
    arrays = {k: _read_idx(found / f) for k, f in _FMNIST_FILES.items()}

    def make(split: str) -> ArrayDataset:
        images = torch.from_numpy(arrays[f"{split}_images"].copy()).unsqueeze(1)
        labels = torch.from_numpy(arrays[f"{split}_labels"].astype(np.int64))
        return ArrayDataset(images, labels, list(FASHION_MNIST_CLASSES))

    return Splits(make("train"), None, make("test"), name="fashion_mnist", info={"source": str(found)})


class _NumpyOnly(pickle.Unpickler):
    """CIFAR's pickles hold dicts of numpy arrays; refuse anything else (pickle runs code)."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data pickle")


def cifar10(root: str | Path | None = None, *, download: bool = True) -> Splits:
    """CIFAR-10 in torchvision's ``cifar-10-batches-py`` layout (download when online).

    Returns 50,000 training and 10,000 test 32x32 RGB images as uint8.
    """
    places = _candidates(root, "cifar-10-batches-py") + [cache_dir() / "cifar-10-batches-py"]
    places = [p / "cifar-10-batches-py" if (p / "cifar-10-batches-py").is_dir() else p for p in places]
    found = next((p for p in places if (p / "data_batch_1").exists() and (p / "test_batch").exists()), None)
    if found is None and download:
        archive = cache_dir() / "cifar-10-python.tar.gz"
        try:
            if not archive.exists():
                _download(_CIFAR_URL, archive)
            with tarfile.open(archive) as tar:
                tar.extractall(cache_dir(), filter="data")
            found = cache_dir() / "cifar-10-batches-py"
        except (OSError, EOFError, tarfile.TarError):  # unreachable, or a cut download
            found = None
    if found is None:
        looked = "\n  ".join(str(p) for p in places)
        raise FileNotFoundError(
            f"CIFAR-10 (cifar-10-batches-py) not found and not downloadable. Looked in:\n  {looked}\n"
            "For an image-folder copy (such as a JPEG pack), use data name 'image_folder' with its path."
        )

    def load(names: list[str]) -> ArrayDataset:
        images, labels = [], []
        for n in names:
            with open(found / n, "rb") as f:
                batch = _NumpyOnly(f, encoding="bytes").load()
            images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.extend(batch[b"labels"])
        return ArrayDataset(torch.from_numpy(np.concatenate(images)), torch.tensor(labels), list(CIFAR10_CLASSES))

    return Splits(load([f"data_batch_{i}" for i in range(1, 6)]), None, load(["test_batch"]), name="cifar10",
                  info={"source": str(found)})


# ---- image folders ------------------------------------------------------------------------------

_SPLIT_NAMES = {"train", "val", "valid", "validation", "test"}


def _folder_files(root: Path, *, warn: bool = False) -> list[Path]:
    """The regular files under ``root``. Symbolic links are not followed out of it: a link to
    a file outside ``root`` (or to a folder) is skipped, with a warning when ``warn``."""
    real_root = root.resolve()
    files = []
    for dirpath, dirnames, filenames in os.walk(root):  # does not descend into linked folders
        here = Path(dirpath)
        for name in sorted(dirnames):
            if (here / name).is_symlink() and warn:
                warnings.warn(f"image_folder: skipping {(here / name).relative_to(root)}: a symbolic link to a "
                              f"folder ({os.readlink(here / name)}); only real folders are read", stacklevel=3)
        for name in filenames:
            p = here / name
            if p.is_symlink():
                target = p.resolve()
                if not target.is_relative_to(real_root) or not target.is_file():
                    if warn:
                        warnings.warn(f"image_folder: skipping {p.relative_to(root)}: a symbolic link out of the "
                                      f"folder (to {target})", stacklevel=3)
                    continue
            if p.is_file():
                files.append(p)
    return sorted(files)


def _source_hash(path: Path) -> str:
    h = hashlib.sha256()
    if path.is_file():
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    else:
        for p in _folder_files(path):
            h.update(str(p.relative_to(path)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:20]


def _safe_member(path: Path, member: tarfile.TarInfo) -> str | None:
    """The member's normalised name if it is a regular file to read, None for a folder; a
    member that could escape the archive or is not plain data is refused by name, as
    Python's ``tarfile`` data filter refuses it (absolute paths, ``..``, links, devices)."""
    name = member.name
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts:
        raise ValueError(f"{path}: refusing archive member {name!r}: an absolute path or a path out of the "
                         "archive ('..'); only relative paths inside it are valid")
    if member.issym() or member.islnk():
        kind = "symbolic" if member.issym() else "hard"
        raise ValueError(f"{path}: refusing archive member {name!r}: a {kind} link (to {member.linkname!r}); "
                         "only regular files and folders are valid")
    if member.isdir():
        return None
    if not member.isfile():
        raise ValueError(f"{path}: refusing archive member {name!r}: a device, pipe or other special file; "
                         "only regular files and folders are valid")
    return "/".join(parts)


def _members(path: Path) -> Iterator[tuple[str, bytes]]:
    """(relative name, bytes) of every file in a folder or tar archive (see
    :func:`_folder_files` and :func:`_safe_member` for what is skipped or refused)."""
    if path.is_dir():
        for p in _folder_files(path, warn=True):
            yield p.relative_to(path).as_posix(), p.read_bytes()
        return
    try:
        tar = tarfile.open(path)
    except tarfile.TarError as exc:
        raise ValueError(f"{path}: not a folder, .tar or .tar.gz archive ({exc})") from None
    with tar:
        members = iter(tar)
        while True:
            try:  # a truncated or damaged archive fails while read (EOFError for a cut .tar.gz)
                member = next(members, None)
                if member is None:
                    return
                name = _safe_member(path, member)
                data = tar.extractfile(member).read() if name is not None else None
            except (EOFError, tarfile.TarError, zlib.error, OSError) as exc:
                raise ValueError(f"{path}: the archive is damaged or cut short ({type(exc).__name__}: "
                                 f"{str(exc) or 'ended early'})") from None
            if name is not None:
                yield name, data


def _layout(names: list[str]) -> tuple[int, bool]:
    """(number of leading folders to strip, whether the next level is a split)."""
    parts = [n.split("/") for n in names]
    strip = 0
    while all(len(p) > strip + 2 for p in parts) and len({p[strip] for p in parts}) == 1:
        strip += 1
    has_split = all(len(p) >= strip + 3 for p in parts) and {p[strip] for p in parts} <= _SPLIT_NAMES
    return strip, has_split


def _decode(item: tuple[str, bytes]):
    from PIL import Image

    name, data = item
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            mode = "L" if img.mode in ("L", "1", "I;16", "I") else "RGB"
            return name, np.asarray(img.convert(mode)), None
    except Exception as exc:  # PIL raises several types for broken files
        return name, None, f"{type(exc).__name__}: {exc}"


def image_folder(
    path: str | Path,
    *,
    on_error: str = "raise",
    workers: int | None = None,
    use_cache: bool = True,
) -> Splits:
    """Images in ``split/class/image`` or ``class/image`` folders, plain or in a .tar/.tar.gz.

    Decoded once with a thread pool and cached as uint8 tensors in the user cache, keyed by a
    hash of the source's content; later calls load the cache (``torch.load(weights_only=True)``).
    Class ids follow the sorted class-folder names. All images must share one size. An
    archive member with an absolute path, a ``..`` or that is a link or a device is refused by
    name (as ``tarfile``'s data filter refuses it); in a folder, a symbolic link out of it is
    skipped with a warning.

    Args:
        path: the folder or archive (e.g. the CIFAR-10 JPEG pack).
        on_error: ``"raise"`` (default): a corrupt or non-image file raises ``ValueError``
            naming it; ``"skip"``: it is left out with a warning.
        workers: decoding threads (default: the CPU count).
        use_cache: read and write the decoded cache.

    Returns:
        ``Splits`` with ``train`` and, when the source has them, ``val`` and ``test``.
    """
    require("PIL", "images", "image_folder")
    check_choice("on_error", on_error, ("raise", "skip"))
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image folder or archive not found: {path}")
    key = _source_hash(path)
    cache = cache_dir() / f"image_folder-{path.name}-{key}.pt"
    if use_cache and cache.exists():
        try:
            saved = torch.load(cache, weights_only=True)
            return _splits_from(saved, path)
        except Exception:  # a damaged cache is rebuilt, never trusted
            cache.unlink(missing_ok=True)

    items = [(n, b) for n, b in _members(path) if not n.split("/")[-1].startswith(".")]
    if not items:
        raise ValueError(f"{path}: no files found")
    strip, has_split = _layout([n for n, _ in items])
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count()) as pool:
        decoded = list(pool.map(_decode, items, chunksize=256))
    per_split: dict[str, list[tuple[str, np.ndarray]]] = {}
    shape = None
    for name, array, error in decoded:
        parts = name.split("/")[strip:]
        split, cls = (parts[0], parts[1]) if has_split else ("train", parts[0])
        if error is None and shape is not None and array.shape != shape:
            error = f"image size {array.shape} differs from the first image's {shape}"
        if error is not None:
            if on_error == "raise":
                raise ValueError(f"{path}: cannot use {name}: {error} (pass on_error='skip' to leave it out)")
            warnings.warn(f"image_folder: skipping {name}: {error}", stacklevel=2)
            continue
        shape = shape or array.shape
        per_split.setdefault(split, []).append((cls, array))
    if not per_split:
        raise ValueError(f"{path}: no decodable images")
    classes = sorted({cls for entries in per_split.values() for cls, _ in entries})
    index = {c: i for i, c in enumerate(classes)}
    saved = {"classes": classes}
    for split, entries in per_split.items():
        arrays = np.stack([a if a.ndim == 3 else a[:, :, None] for _, a in entries])
        saved[split] = {
            "images": torch.from_numpy(np.ascontiguousarray(arrays.transpose(0, 3, 1, 2))),
            "labels": torch.tensor([index[c] for c, _ in entries], dtype=torch.int64),
        }
    if use_cache:  # atomically, under a name of its own: workers decoding the same folder do not collide
        from trickbag._atomic import remove_orphans, save_torch

        remove_orphans(cache.parent)
        save_torch(saved, cache)
    return _splits_from(saved, path)


def _splits_from(saved: dict, path: Path) -> Splits:
    classes = list(saved["classes"])

    def get(*names: str) -> ArrayDataset | None:
        for n in names:
            if n in saved:
                return ArrayDataset(saved[n]["images"], saved[n]["labels"], classes)
        return None

    return Splits(get("train"), get("val", "valid", "validation"), get("test"), name="image_folder",
                  info={"source": str(path)})
