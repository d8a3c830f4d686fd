"""Image data modules: CIFAR-10 from torchvision's pickle release, and any ImageFolder tree of JPEG/PNG files.

Usage::

    dm = CIFAR10DataModule(root="data/cifar10", download=True)     # cs231n's 49,000 / 1,000 / 1,000 split
    dm = ImageFolderDataModule(root="/tmp/cifar10-jpeg")             # root/train/<class>/*.jpg [, root/test/...]
    python -m train fit --config configs/imagefolder_cifar10.yaml --data.root /tmp/cifar10-jpeg

Both yield cs231n's preprocessing: float32 pixels in [0, 255] minus the mean image of the train split, flattened
to D = C*H*W features. Flattening order is CHW (channel-major: all red pixels, then green, then blue), and
``ArraySplits.image_shape`` is (C, H, W); so a column of W1 (D,) reshapes to (C, H, W) for display. cs231n
flattens HWC images instead; that is only a fixed permutation of the features, which a fully connected net
with i.i.d. initial weights does not see.

ImageFolderDataModule can add, all fitted on the train split only: PCA whitening to k features
(``whiten_components``), and augmented views of every training image (``flip``: its mirror; ``shift``: the image
moved by that many pixels up, down, left and right), which the batch sampler picks per example by (seed, epoch,
batch) (ArraySplits.train_views).

Memory: the images stay uint8 until CHUNK_ROWS of them are converted, centred, whitened and written into the
preallocated splits; the raw pixels are freed once the splits are built. The CIFAR-10 config peaks at about
1.8 GiB (benchmarks/bench_memory.py), the whitened train views being 502 MB of it.

Both modules record ArraySplits.preprocessing (image_preprocessing): what ``python -m train export`` stores so
that reference_numpy/images.py turns a picture into the net's input as training did. Image files are decoded and
resized by that module's own functions (PIL), or for JPEGs by torchvision's batched decode, which gives the same
pixels.
"""
import hashlib
import os
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torchvision import datasets
from torchvision.io import ImageReadMode, decode_jpeg, read_file

from reference_numpy.images import decode_image_file, resize_pixels
from train.data import ArrayDataModule, ArraySplits

CACHE_FORMAT = 2  # bump when the cached layout or the decoding changes; part of the cache key
CHUNK_ROWS = 4096  # images converted to float32 at a time (48 MiB of 32x32 RGB images)
SPLIT_SEED = 0  # fixed seed of the one shuffle that carves val (and a test subset) from class-sorted folders


def mean_image(X, rows):
    """(D,) float32: the mean image of X[rows] (X (N, D) uint8, rows (M,)). Exact, in any row order: float32 sums
    of CHUNK_ROWS uint8 rows stay below 2**24, and the chunks add up in float64; no float copy of the split."""
    total = torch.zeros(X.shape[1], dtype=torch.float64)  # (D,)
    for i in range(0, len(rows), CHUNK_ROWS):
        total += X[rows[i:i + CHUNK_ROWS]].float().sum(0).double()
    return (total / len(rows)).float()  # (D,)


def pca_whitening(X_train, components, epsilon):
    """The PCA-whitening matrix P (D, k) fitted on X_train (N, D) float, pixels minus the train mean image.

    features = X @ P = (X / 255) @ U_k diag(1 / sqrt(lambda_k + epsilon)), where lambda_k, U_k are the k = components
    largest eigenpairs of cov = (X / 255)^T (X / 255) / N. epsilon (in (pixel / 255)^2 units) damps the directions
    of low variance. Each eigenvector's sign is fixed (largest-magnitude entry positive), so P is unique.
    """
    return whitening_of_gram(X_train.T @ X_train, X_train.shape[0], components, epsilon)


def whitening_of_gram(gram, num_rows, components, epsilon):
    """pca_whitening from gram = X^T X (D, D) of the num_rows mean-subtracted rows X; computed in gram's dtype."""
    cov = gram / (255.0 ** 2 * num_rows)  # (D, D) cov of X / 255
    evals, U = torch.linalg.eigh(cov)  # ascending
    evals, U = evals.flip(0)[:components], U.flip(1)[:, :components]  # (k,), (D, k) the k largest
    U = U * U.gather(0, U.abs().argmax(0, keepdim=True)).sign()  # (D, k) sign-fixed columns
    return U / (evals.clamp_min(0) + epsilon).sqrt() / 255.0  # (D, k) = U_k diag((lambda + eps)^-1/2) / 255


def centred_chunks(X, rows, mean):
    """(start, (b, D) float32) for the rows ``rows`` (M,) of X (N, D) uint8, minus ``mean``, CHUNK_ROWS at a time."""
    for i in range(0, len(rows), CHUNK_ROWS):
        yield i, X[rows[i:i + CHUNK_ROWS]].float().sub_(mean)


def chunked_whitening(X, rows, mean, components, epsilon):
    """pca_whitening of X[rows] - mean (X (N, D) uint8) without a float copy of the split: the Gram matrix X^T X is
    summed over float32 chunks in float64, then rounded to float32 for the eigendecomposition."""
    gram = torch.zeros(X.shape[1], X.shape[1], dtype=torch.float64)  # (D, D)
    for _, chunk in centred_chunks(X, rows, mean):
        gram += (chunk.T @ chunk).double()
    return whitening_of_gram(gram.float(), len(rows), components, epsilon)  # (D, k) float32


def features(X, rows, mean, P=None):
    """(M, D or k) float32: X[rows] - mean (X (N, D) uint8, rows (M,)), times P (D, k) when given, in chunks."""
    out = torch.empty(len(rows), X.shape[1] if P is None else P.shape[1])
    for i, chunk in centred_chunks(X, rows, mean):
        out[i:i + len(chunk)] = chunk if P is None else chunk @ P
    return out


def train_features(X, rows, mean, P, image_shape, flip, shift):
    """((V * M, D or k) float32, V): the augmented_views of the train images X[rows] - mean, view-major (row
    v * M + i is view v of image i), each times P when given; one chunk of images in float at a time."""
    V = (2 if flip else 1) * (5 if shift else 1)
    M = len(rows)
    out = torch.empty(V * M, X.shape[1] if P is None else P.shape[1])  # (V * M, D or k)
    for i, chunk in centred_chunks(X, rows, mean):
        for v, view in enumerate(augmented_views(chunk, image_shape, flip, shift)):
            out[v * M + i:v * M + i + len(chunk)] = view if P is None else view @ P
    return out, V


def shifted(images, dy, dx):
    """images (N, C, S, S) moved dy pixels down and dx right (negative: up, left); vacated pixels are 0 (the mean,
    for mean-subtracted images)."""
    S_h, S_w = images.shape[-2:]
    out = torch.zeros_like(images)  # (N, C, S, S)
    if abs(dy) >= S_h or abs(dx) >= S_w:
        return out  # moved out of the frame
    out[..., max(dy, 0):S_h + min(dy, 0), max(dx, 0):S_w + min(dx, 0)] = \
        images[..., max(-dy, 0):S_h + min(-dy, 0), max(-dx, 0):S_w + min(-dx, 0)]
    return out


def augmented_views(X, image_shape, flip, shift):
    """The train_views of X (N, C*S*S) mean-subtracted images, one (N, D) tensor at a time: view 0 is X itself;
    then shifts by ``shift`` pixels (down, up, right, left); with ``flip`` the mirror image and its shifts follow."""
    images = X.view(-1, *image_shape)  # (N, C, S, S)
    moves = [(shift, 0), (-shift, 0), (0, shift), (0, -shift)] if shift else []
    for mirrored in ([False, True] if flip else [False]):
        base = images.flip(-1) if mirrored else images  # (N, C, S, S)
        yield base.reshape(X.shape) if mirrored else X  # (N, D)
        for dy, dx in moves:
            yield shifted(base, dy, dx).reshape(X.shape)  # (N, D)


def _positive(name, value):
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1; got {value!r}")


class CIFAR10DataModule(ArrayDataModule):
    """CIFAR-10 as cs231n's ``get_CIFAR10_data``: train = training rows [0, num_train), val = training rows
    [num_train, num_train + num_val) (the last 1,000 with the defaults), test = test rows [0, num_test).

    root: folder holding (or receiving) ``cifar-10-batches-py``; download: fetch it when missing (needs internet).
    X_*: (N_*, 3072) float32, mean-subtracted, CHW order; y_*: (N_*,) int64; image_shape (3, 32, 32).
    """

    def __init__(self, root: str = "data/cifar10", download: bool = False, num_train: int = 49000,
                 num_val: int = 1000, num_test: int = 1000, batch_size: int = 200, seed: int = 0):
        super().__init__(batch_size=batch_size, seed=seed)
        _positive("num_train", num_train)
        _positive("num_val", num_val)
        _positive("num_test", num_test)
        if num_train + num_val > 50000:
            raise ValueError(f"num_train + num_val must be at most 50000 (CIFAR-10's training rows); got "
                             f"{num_train} + {num_val}")
        self.root, self.download = root, download
        # num_train is also ArrayDataModule's read-only property (the loaded count), so the request has its own name
        self.num_train_rows, self.num_val, self.num_test = num_train, num_val, min(num_test, 10000)

    def _dataset(self, train):
        try:
            return datasets.CIFAR10(self.root, train=train, download=self.download)
        except Exception as err:  # torchvision: RuntimeError "not found or corrupted", or a network error
            where = Path(self.root).resolve()
            cause = f"could not download it ({err})" if self.download else "it is not there"
            raise ValueError(
                f"CIFAR-10 not found in root={str(where)!r} (expected {where / 'cifar-10-batches-py'}): {cause}. "
                "Fix it one of two ways: pass --data.download true on a machine with internet access, or point "
                "--data.root at a folder that holds cifar-10-batches-py. Without either, use "
                "ImageFolderDataModule on a JPEG copy (configs/imagefolder_cifar10.yaml)."
            ) from None

    def load(self) -> ArraySplits:
        train, test = self._dataset(True), self._dataset(False)
        X = torch.from_numpy(train.data).permute(0, 3, 1, 2).reshape(len(train.data), -1)  # (50000, 3072) CHW
        y = torch.tensor(train.targets, dtype=torch.int64)  # (50000,)
        Xt = torch.from_numpy(test.data[: self.num_test]).permute(0, 3, 1, 2).reshape(-1, 3072)  # (num_test, D)
        yt = torch.tensor(test.targets[: self.num_test], dtype=torch.int64)  # (num_test,)
        n, v = self.num_train_rows, self.num_val
        mean = mean_image(X, torch.arange(n))  # (3072,)
        X_train, X_val = features(X, torch.arange(n), mean), features(X, torch.arange(n, n + v), mean)
        X_test = features(Xt, torch.arange(len(Xt)), mean)
        return ArraySplits(X_train, y[:n].clone(), X_val, y[n:n + v].clone(), X_test, yt,
                           image_shape=(3, 32, 32), class_names=list(train.classes),
                           preprocessing=image_preprocessing((3, 32, 32), mean, None, list(train.classes)))


def image_preprocessing(image_shape, mean, whitening, class_names, val_files=None):
    """What ``python -m train export`` stores beside the weights (reference_numpy/images.py applies it to pixels):
    RGB pixels 0..255 of image_shape (C, H, W), flattened CHW, minus mean (D,), times whitening (D, k) if any."""
    pre = {"image_shape": list(image_shape), "channels": "RGB", "pixel_max": 255.0, "mean_image": mean.clone(),
           "class_names": list(class_names)}
    if whitening is not None:
        pre["whitening"] = whitening.clone()
    if val_files is not None:
        pre["val_files"] = list(val_files)
    return pre


def _decode_rgb(path, image_size):
    """One image file -> (3, image_size, image_size) uint8, RGB, by PIL: the decoder and resize that
    reference_numpy/images.py applies to a picture given to an exported net."""
    pixels = resize_pixels(decode_image_file(path, "RGB"), image_size, image_size)  # (S, S, 3)
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1)  # (3, S, S); a copy: PIL's arrays are read-only


def _resized(img, image_size):
    """(3, H, W) uint8 -> (3, S, S), by PIL's bilinear filter as _decode_rgb."""
    if tuple(img.shape[1:]) != (image_size, image_size):
        pixels = resize_pixels(img.permute(1, 2, 0).numpy(), image_size, image_size)  # (S, S, 3)
        img = torch.from_numpy(pixels.copy()).permute(2, 0, 1)
    return img


def _decode_chunk(paths, image_size):
    """Image files -> list of (3, image_size, image_size) uint8. JPEGs go through one batched decode_jpeg call
    (about 2x faster than one call per file on CIFAR's tiny files; the same pixels as PIL's libjpeg-turbo decode,
    which tests/test_export_images.py checks); anything else, or a chunk holding a broken JPEG, is decoded file by
    file by PIL, which names the file that fails."""
    if all(p.lower().endswith((".jpg", ".jpeg")) for p in paths):
        try:
            imgs = decode_jpeg([read_file(p) for p in paths], mode=ImageReadMode.RGB)  # list of (3, H, W)
            return [_resized(img, image_size) for img in imgs]
        except Exception:
            pass
    return [_decode_rgb(p, image_size) for p in paths]


class ImageFolderDataModule(ArrayDataModule):
    """Any ``root/train/<class>/*.jpg|png`` tree (and ``root/test/<class>/...`` when present).

    Classes are the sorted sub-folder names (torchvision ImageFolder). ImageFolder lists files class by class, so
    the train folder is shuffled ONCE with the fixed SPLIT_SEED = 0 (np.random.default_rng(0).permutation) and the
    last num_val rows of that order are val; otherwise val would be all trucks. A test subset (num_test) is the
    first num_test rows of the test folder shuffled the same way; num_test=None keeps all of it. Without
    root/test the test split is None.

    Decoded images are cached as uint8 in ``<cache>/imagefolder-<split>-<hash>.pt``; the hash covers the sorted
    file list with sizes and mtimes, image_size and CACHE_FORMAT, so changed files are decoded again. <cache> is
    cache_dir, else root/.cache, else ~/.cache/twolayer-bridge when root is read-only.

    X_*: (N_*, 3 * S * S) float32 in [0, 255] minus the train mean image, CHW order; image_shape (3, S, S).

    whiten_components k: every split becomes X @ P (N_*, k), P = pca_whitening(X_train, k, whiten_epsilon) fitted
    on the train split (the original images only); image_shape is then None. flip, shift: the train split holds
    train_views = (2 if flip else 1) * (5 if shift else 1) views of each image (augmented_views), each whitened
    like the rest; the sampler draws one view per drawn example, keyed by (seed, epoch, batch).

    preprocessing: image_preprocessing of the train mean image, P, the classes and the val files (relative to
    root/train, in val order), so an exported net can be checked on fit's own validation images.
    """

    def __init__(self, root: str, image_size: int = 32, num_val: int = 1000, num_test: int | None = None,
                 cache_dir: str | None = None, batch_size: int = 200, seed: int = 0,
                 whiten_components: int | None = None, whiten_epsilon: float = 0.1, flip: bool = False,
                 shift: int = 0):
        super().__init__(batch_size=batch_size, seed=seed)
        if not Path(root).is_dir():
            raise ValueError(f"root must be a folder holding train/<class>/<images> (pass --data.root DIR); "
                             f"got {str(root)!r}, which is not a folder")
        if not (Path(root) / "train").is_dir():
            raise ValueError(f"root must hold a train/ folder (train/<class>/<images>); {root!r} has none")
        _positive("image_size", image_size)
        _positive("num_val", num_val)
        if num_test is not None:
            _positive("num_test", num_test)
        self.root, self.image_size, self.cache_dir = os.path.expanduser(str(root)), image_size, cache_dir
        self.num_val, self.num_test = num_val, num_test
        if whiten_components is not None:
            _positive("whiten_components", whiten_components)
            if whiten_components > 3 * image_size ** 2:
                raise ValueError(f"whiten_components must be at most the {3 * image_size ** 2} features of a "
                                 f"{image_size}x{image_size} RGB image; got {whiten_components}")
        if not isinstance(whiten_epsilon, (int, float)) or isinstance(whiten_epsilon, bool) or \
                not whiten_epsilon >= 0:
            raise ValueError(f"whiten_epsilon must be a number >= 0; got {whiten_epsilon!r}")
        if not isinstance(flip, bool):
            raise ValueError(f"flip must be true or false; got {flip!r}")
        if not isinstance(shift, int) or isinstance(shift, bool) or not 0 <= shift < image_size:
            raise ValueError(f"shift must be an integer in [0, {image_size}) (pixels); got {shift!r}")
        self.whiten_components, self.whiten_epsilon = whiten_components, float(whiten_epsilon)
        self.flip, self.shift = flip, shift

    def _cache_folder(self):
        candidates = [self.cache_dir] if self.cache_dir else [os.path.join(self.root, ".cache"),
                                                              os.path.expanduser("~/.cache/twolayer-bridge")]
        for folder in candidates:
            try:
                os.makedirs(folder, exist_ok=True)
                if os.access(folder, os.W_OK):
                    return folder
            except OSError:
                pass
        raise ValueError(f"cache_dir: cannot create a writable cache folder; tried {candidates}")

    def _decoded(self, split):
        """(X (N, 3, S, S) uint8, y (N,) int64, classes, files relative to root/<split>) for root/<split>, from the
        cache or decoded once."""
        folder = os.path.join(self.root, split)
        try:
            found = datasets.ImageFolder(folder, allow_empty=False)
        except (FileNotFoundError, OSError) as err:
            raise ValueError(f"root={self.root!r}: {split}/ is not an ImageFolder tree ({err})") from None
        files = [path for path, _ in found.samples]
        names = [path[len(folder) + 1:] for path in files]  # relative to root/<split>
        key = hashlib.sha256(f"{CACHE_FORMAT} {self.image_size}\n".encode())
        for path in files:
            st = os.stat(path)
            key.update(f"{path[len(folder) + 1:]}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
        cache = os.path.join(self._cache_folder(), f"imagefolder-{split}-{key.hexdigest()[:20]}.pt")
        if os.path.exists(cache):
            try:
                blob = torch.load(cache, weights_only=True)
                return blob["X"], blob["y"], blob["classes"], names
            except Exception:  # a damaged cache is decoded again and overwritten
                pass
        X = torch.empty(len(files), 3, self.image_size, self.image_size, dtype=torch.uint8)  # (N, 3, S, S)
        chunks = [files[i:i + 1024] for i in range(0, len(files), 1024)]
        with warnings.catch_warnings(), ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            # torchvision 0.29 marks torchvision.io decoding deprecated in favour of TorchCodec (not a dependency)
            warnings.filterwarnings("ignore", message="The image decoding", category=DeprecationWarning)
            decoded = pool.map(lambda chunk: _decode_chunk(chunk, self.image_size), chunks)
            for i, imgs in enumerate(decoded):
                X[i * 1024:i * 1024 + len(imgs)] = torch.stack(imgs)  # (chunk, 3, S, S)
        y = torch.tensor(found.targets, dtype=torch.int64)  # (N,)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(cache), suffix=".tmp")
        os.close(fd)
        try:
            torch.save({"X": X, "y": y, "classes": list(found.classes)}, tmp)
            os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide a shared root's cache from other users
            os.replace(tmp, cache)  # atomic: a reader never sees a half-written cache
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return X, y, list(found.classes), names

    def load(self) -> ArraySplits:
        X, y, classes, names = self._decoded("train")
        if len(classes) < 2:  # a classifier needs two classes at least (torchmetrics would say it in its own words)
            raise ValueError(f"root={self.root!r}: train/ holds {len(classes)} class folder(s) {classes}; expected "
                             "one folder per class and at least 2 classes (train/<class>/*.jpg)")
        if self.num_val >= len(y):
            raise ValueError(f"num_val must be smaller than the {len(y)} training images; got {self.num_val}")
        X = X.reshape(len(y), -1)  # (N, D) uint8, CHW-flattened; rows are read in chunks, never copied whole
        order = torch.from_numpy(np.random.default_rng(SPLIT_SEED).permutation(len(y)))  # (N,) fixed shuffle
        n = len(y) - self.num_val
        train_rows, val_rows = order[:n], order[n:]
        image_shape = (3, self.image_size, self.image_size)
        mean = mean_image(X, train_rows)  # (D,) the train mean image
        P = None
        if self.whiten_components is not None:  # (D, k), fitted on the train split only
            P = chunked_whitening(X, train_rows, mean, self.whiten_components, self.whiten_epsilon)
        X_val = features(X, val_rows, mean, P)  # (N_val, D or k)
        X_train, views = train_features(X, train_rows, mean, P, image_shape, self.flip, self.shift)
        y_train, y_val = y[train_rows].repeat(views), y[val_rows]
        del X  # the raw pixels are freed before the test split is decoded
        X_test = y_test = None
        if os.path.isdir(os.path.join(self.root, "test")):
            Xt, y_test, test_classes, _ = self._decoded("test")
            if test_classes != classes:
                raise ValueError(f"root={self.root!r}: test/ classes {test_classes} differ from train/ {classes}")
            keep = torch.from_numpy(np.random.default_rng(SPLIT_SEED).permutation(len(y_test)))
            keep = keep[: self.num_test] if self.num_test is not None else keep  # (N_test,)
            X_test, y_test = features(Xt.reshape(len(Xt), -1), keep, mean, P), y_test[keep]
        pre = image_preprocessing(image_shape, mean, P, classes, [names[i] for i in val_rows.tolist()])
        return ArraySplits(X_train, y_train, X_val, y_val, X_test, y_test,
                           image_shape=image_shape if P is None else None, class_names=classes, train_views=views,
                           preprocessing=pre)

    @classmethod
    def missing_split(cls, init_args, name):
        """"ROOT/test does not exist" for the test split of a tree without one (before any image is decoded)."""
        test = os.path.join(str(init_args.get("root", "")), "test")
        return f"{test} does not exist (ImageFolderDataModule's test split)" if name == "test" and not \
            os.path.isdir(test) else None

    def test_dataloader(self):
        """The test split; without root/test, a ValueError that says where the test images were looked for."""
        if self.splits.X_test is None:
            raise ValueError(f"this ImageFolderDataModule has no test split: {os.path.join(self.root, 'test')} "
                             "does not exist. Add root/test/<class>/<images>, or run validate instead of test.")
        return super().test_dataloader()
