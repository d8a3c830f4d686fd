"""Predict on pictures with an exported net: image files or pixel arrays -> the net's input -> class names.

Usage::

    python -m train export --ckpt_path lightning_logs/version_0/checkpoints/last.ckpt --out net.npz

    from reference_numpy.images import predict_images
    predict_images("net.npz", ["cat.jpg", "dog.png"])     # ['cat', 'dog']
    predict_images(net, pixels)   # net = TwoLayerNet.from_npz("net.npz"); pixels (H, W, 3) uint8, or (N, H, W, 3)

``python -m train export`` stores beside W1, b1, W2, b2 how the data module turned pixels into features
(TwoLayerNet.read_preprocessing): image_shape (C, H, W), channels ('RGB', or 'L' for grey), pixel_max (the
brightest training pixel: 255 for image files, 16 for scikit-learn's 8x8 digits), mean_image (D,) with D = C*H*W,
whitening (D, k) when the run PCA-whitened, and class_names. images_to_features applies it, exactly as training
did:

1. a file is decoded by PIL and converted to ``channels`` (PIL's convert: RGBA drops alpha, grey -> RGB repeats
   the grey level, RGB -> grey is ITU-R 601-2 luma); an array is (H, W) grey or (H, W, 3) RGB;
2. an image of another size is resized to (H, W) with PIL's bilinear filter (antialiased), as
   train/image_data.py resizes;
3. uint8 pixels (files, uint8 arrays) are 0..255 and scaled by pixel_max / 255; float or other integer arrays are
   taken as already in 0..pixel_max (e.g. ``load_digits().images``, 0..16);
4. flattened channel by channel (CHW), minus mean_image, times whitening when present, in mean_image's dtype
   (float32 for image folders, float64 for the digits), as the data module computed them.
"""
from pathlib import Path

import numpy as np

from reference_numpy.neural_net import TwoLayerNet

LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, PIL's RGB -> L weights (for float pixels; uint8 go through PIL)


def decode_image_file(path, channels):
    """One image file (JPEG, PNG, BMP, ... anything PIL reads) -> (H, W, 3) uint8 for 'RGB', (H, W, 1) for 'L'.
    A missing or undecodable file raises ValueError naming it."""
    from PIL import Image  # Pillow: only where pixels are read, so the rest of the package needs numpy alone

    try:
        with Image.open(path) as im:
            pixels = np.asarray(im.convert(channels))  # (H, W, 3) or (H, W)
    except Exception as err:  # PIL's UnidentifiedImageError, OSError of a truncated file, FileNotFoundError, ...
        raise ValueError(f"cannot decode image file {str(path)!r}: {err}") from None
    return pixels.reshape(*pixels.shape[:2], -1)  # (H, W, C)


def resize_pixels(pixels, height, width):
    """(h, w, C) pixels -> (height, width, C) in the same dtype, PIL's bilinear filter (antialiased); unchanged when
    the size already matches. uint8 goes through PIL's 8-bit images, anything else through 32-bit float ones."""
    from PIL import Image

    if pixels.shape[:2] == (height, width):
        return pixels
    if pixels.dtype == np.uint8:
        mode = "RGB" if pixels.shape[2] == 3 else "L"
        im = Image.fromarray(pixels if mode == "RGB" else pixels[:, :, 0], mode)
        return np.asarray(im.resize((width, height), Image.BILINEAR)).reshape(height, width, -1)
    planes = [np.asarray(Image.fromarray(pixels[:, :, c].astype(np.float32), "F").resize((width, height),
                                                                                        Image.BILINEAR))
              for c in range(pixels.shape[2])]
    return np.stack(planes, axis=2).astype(pixels.dtype)  # (height, width, C)


def as_pixels(image, preprocessing):
    """One image (a file path, or an (H, W) / (H, W, 3) / (H, W, 4) array) -> (C, H, W) float64 in pixel units
    (steps 1-3 of the module docstring)."""
    C, H, W = preprocessing["image_shape"]
    channels = preprocessing["channels"]
    if isinstance(image, (str, Path)):
        pixels = decode_image_file(image, channels)  # (h, w, C) uint8
    else:
        pixels = np.asarray(image)
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]  # (h, w, 1)
        elif pixels.ndim == 3 and pixels.shape[2] == 4:
            pixels = pixels[:, :, :3]  # RGBA: the alpha channel is dropped, as PIL's convert("RGB") does
        if pixels.ndim != 3 or pixels.shape[2] not in (1, 3) or not np.issubdtype(pixels.dtype, np.number) \
                or np.issubdtype(pixels.dtype, np.complexfloating):
            raise ValueError(f"image: got an array of shape {pixels.shape} and dtype {pixels.dtype}; expected "
                             "(H, W) grey or (H, W, 3) RGB real pixels")
        pixels = _with_channels(pixels, channels)
    pixels = resize_pixels(pixels, H, W)  # (H, W, C)
    scale = preprocessing["pixel_max"] / 255.0 if pixels.dtype == np.uint8 else 1.0
    return pixels.astype(np.float64).transpose(2, 0, 1) * scale  # (C, H, W)


def _with_channels(pixels, channels):
    """(h, w, 1 or 3) pixels -> (h, w, 3) for 'RGB', (h, w, 1) for 'L', as PIL's convert does."""
    if channels == "RGB" and pixels.shape[2] == 1:
        return np.repeat(pixels, 3, axis=2)  # grey -> RGB: the same level in each channel
    if channels == "L" and pixels.shape[2] == 3:
        if pixels.dtype == np.uint8:
            from PIL import Image

            return np.asarray(Image.fromarray(pixels, "RGB").convert("L"))[:, :, None]  # PIL's rounding
        return (pixels.astype(np.float64) @ np.array(LUMA))[:, :, None]  # (h, w, 1)
    return pixels


def image_list(images):
    """A file path, an array (H, W) / (H, W, 3) (one image), (N, H, W, 3) / (N, H, W) (a batch: a 3-D array whose
    last axis is not 3 or 4), or a list of these -> a list of single images."""
    if isinstance(images, (str, Path)):
        return [images]
    if isinstance(images, (list, tuple)):
        return [one for item in images for one in image_list(item)]
    array = np.asarray(images)
    if array.ndim == 4 or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        return list(array)
    return [array]


def images_to_features(images, preprocessing):
    """Images (see image_list) -> (N, D) features in mean_image's dtype, D = C*H*W or k when whitened."""
    if "mean_image" not in preprocessing:
        raise ValueError("preprocessing: the net's file holds weights only, no mean image; export it again with "
                         "python -m train export (which stores the preprocessing beside the weights)")
    mean = preprocessing["mean_image"]  # (D,)
    if mean.shape != (int(np.prod(preprocessing["image_shape"])),):
        raise ValueError(f"preprocessing: mean_image has shape {mean.shape}; expected (C*H*W,) for image_shape "
                         f"{preprocessing['image_shape']}")
    pixels = [as_pixels(image, preprocessing).reshape(-1) for image in image_list(images)]
    X = np.stack(pixels).astype(mean.dtype) - mean if pixels else np.zeros((0, mean.shape[0]), mean.dtype)
    whitening = preprocessing.get("whitening")
    return X if whitening is None else X @ whitening  # (N, D) or (N, k)


def image_probabilities(net_or_path, images):
    """(net, probabilities (N, C) float64): the softmax of the net's scores on ``images``; net_or_path is an .npz
    file from ``python -m train export`` or a TwoLayerNet from TwoLayerNet.from_npz."""
    net = TwoLayerNet.from_npz(net_or_path) if isinstance(net_or_path, (str, Path)) else net_or_path
    X = images_to_features(images, getattr(net, "preprocessing", {}))  # (N, D)
    scores = net.loss(X.astype(np.float64))  # (N, C)
    shifted = scores - scores.max(axis=1, keepdims=True)  # (N, C)  max subtraction
    probs = np.exp(shifted)
    return net, probs / probs.sum(axis=1, keepdims=True)


def predict_images(net_or_path, images):
    """The class name the net predicts for each image: a list of N names.

    net_or_path: the .npz written by ``python -m train export`` (weights and preprocessing), or a TwoLayerNet
    from ``TwoLayerNet.from_npz``. images: an image file path; an (H, W, 3) RGB or (H, W) grey array (uint8 0..255,
    or floats in 0..pixel_max); a batch (N, H, W, 3) or (N, H, W); or a list of any of these. Raises ValueError on
    a file without preprocessing, an undecodable file, or an array of the wrong shape.
    """
    net, probs = image_probabilities(net_or_path, images)
    names = net.preprocessing.get("class_names") or [str(c) for c in range(probs.shape[1])]
    return [names[c] for c in probs.argmax(axis=1)]
