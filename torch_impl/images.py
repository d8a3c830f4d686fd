"""Predict on pictures with an exported net, in PyTorch: image files or pixels -> the net's input -> class names.

Usage::

    from torch_impl.images import predict_images
    predict_images("net.npz", ["cat.jpg", "dog.png"])     # ['cat', 'dog']
    predict_images(net, pixels)   # net = TwoLayerNet.from_npz("net.npz"); pixels (H, W, 3) uint8, or (N, H, W, 3)

The twin of reference_numpy/images.py, whose docstring gives the preprocessing ``python -m train export`` stores
and the four steps from pixels to features. Files are decoded and resized by the same functions (PIL, as
training decoded them); the arithmetic is torch's: images_to_features returns a tensor, and predict_images runs
the torch TwoLayerNet. Tensors are accepted wherever arrays are.
"""
from pathlib import Path

import numpy as np
import torch

from reference_numpy.images import as_pixels, decode_image_file, resize_pixels  # noqa: F401  (the one decoder)
from torch_impl.neural_net import TwoLayerNet


def image_list(images):
    """A file path, an image (H, W) / (H, W, 3), a batch (N, H, W, 3) / (N, H, W) (a 3-D batch's last axis is not
    3 or 4), or a list of these -> a list of single images (tensors become NumPy arrays, as PIL reads them)."""
    if isinstance(images, (str, Path)):
        return [images]
    if isinstance(images, (list, tuple)):
        return [one for item in images for one in image_list(item)]
    array = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if array.ndim == 4 or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        return list(array)
    return [array]


def images_to_features(images, preprocessing):
    """Images (see image_list) -> (N, D) tensor in mean_image's dtype, D = C*H*W or k when whitened."""
    if "mean_image" not in preprocessing:
        raise ValueError("preprocessing: the net's file holds weights only, no mean image; export it again with "
                         "python -m train export (which stores the preprocessing beside the weights)")
    mean = torch.as_tensor(preprocessing["mean_image"])  # (D,)
    if tuple(mean.shape) != (int(np.prod(preprocessing["image_shape"])),):
        raise ValueError(f"preprocessing: mean_image has shape {tuple(mean.shape)}; expected (C*H*W,) for "
                         f"image_shape {preprocessing['image_shape']}")
    pixels = [torch.from_numpy(as_pixels(image, preprocessing)).reshape(-1) for image in image_list(images)]
    X = torch.stack(pixels).to(mean.dtype) - mean if pixels else torch.zeros(0, mean.shape[0], dtype=mean.dtype)
    whitening = preprocessing.get("whitening")
    return X if whitening is None else X @ torch.as_tensor(whitening)  # (N, D) or (N, k)


def image_probabilities(net_or_path, images):
    """(net, probabilities (N, C) in the net's dtype): the softmax of the net's scores on ``images``; net_or_path
    is an .npz file from ``python -m train export`` or a TwoLayerNet from TwoLayerNet.from_npz."""
    net = TwoLayerNet.from_npz(net_or_path) if isinstance(net_or_path, (str, Path)) else net_or_path
    X = images_to_features(images, getattr(net, "preprocessing", {}))  # (N, D)
    return net, torch.softmax(net.loss(X), dim=1)  # (N, C); loss converts X to the net's dtype and device


def predict_images(net_or_path, images):
    """The class name the net predicts for each image: a list of N names.

    net_or_path: the .npz written by ``python -m train export`` (weights and preprocessing), or a TwoLayerNet
    from ``TwoLayerNet.from_npz``. images: an image file path; an (H, W, 3) RGB or (H, W) grey array or tensor
    (uint8 0..255, or floats in 0..pixel_max); a batch (N, H, W, 3) or (N, H, W); or a list of any of these.
    Raises ValueError on a file without preprocessing, an undecodable file, or an array of the wrong shape.
    """
    net, probs = image_probabilities(net_or_path, images)
    names = net.preprocessing.get("class_names") or [str(c) for c in range(probs.shape[1])]
    return [names[c] for c in probs.argmax(dim=1).tolist()]
