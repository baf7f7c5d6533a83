"""ImageNet validation images: the standard folder layout or a labelled file list.

Folder: ``ROOT/val/<wnid>/*.JPEG`` (or ``ROOT`` being the ``val`` folder itself); the classes are
the sorted wnids, so label i is the i-th wnid, as torchvision's ImageFolder and the official
1000-class index order have it. File list: one ``path,label`` (or ``path label``, the ILSVRC
``val.txt`` form) per line, integer labels, relative paths resolved against the list's folder.

Preprocessing follows the model's source framework, before the measured window ("ready-to-use
inputs", as the first paper): torch and MXNet Gluon resize the shorter side to 256, center-crop
224 and normalise with the ImageNet mean/std; Keras models resize to 224x224 as
``keras.utils.load_img(target_size=...)`` does and apply their own ``preprocess_input``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from suite.datasets import DatasetError

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
EXPECTED = (
    "expected a folder in the ImageNet validation layout val/<wnid>/*.JPEG (the folder holding val/, "
    "or val/ itself), or a file list with one 'path,label' line per image (integer labels)"
)
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
# keras.applications.<model>.preprocess_input: the imagenet_utils mode each model uses.
KERAS_MODES = {"resnet50": "caffe", "mobilenetv2": "tf"}
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def find(path: str | Path) -> list[tuple[str, int]]:
    """Every (image file, label) of the dataset, in a stable order; DatasetError for other layouts."""
    path = Path(path)
    if path.is_file():
        return _from_list(path)
    if not path.is_dir():
        raise DatasetError(f"imagenet-val: {path} is neither a folder nor a file list; {EXPECTED}")
    root = path / "val" if (path / "val").is_dir() else path
    classes = sorted(p for p in root.iterdir() if p.is_dir())
    items: list[tuple[str, int]] = []
    for label, folder in enumerate(classes):
        items += [(str(f), label) for f in sorted(folder.iterdir()) if _is_image(f)]
    if not items:
        loose = sum(1 for f in root.iterdir() if _is_image(f))
        found = (
            f"{loose} images directly in {root} with no class folders (give a file list for those)"
            if loose
            else f"{len(classes)} subfolders and no images in them"
        )
        raise DatasetError(f"imagenet-val: {root} holds {found}; {EXPECTED}")
    return items


def _from_list(path: Path) -> list[tuple[str, int]]:
    items = []
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError:
        raise DatasetError(f"imagenet-val: {path} is not a text file list; {EXPECTED}") from None
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#") or (number == 1 and line.replace(" ", "") == "path,label"):
            continue
        name, sep, label = line.rpartition(",")
        if not sep:
            name, _, label = line.rpartition(" ")
        try:
            value = int(label)
        except ValueError:
            value = -1
        if not name.strip() or value < 0:
            raise DatasetError(f"imagenet-val: {path} line {number} is {line[:80]!r}; {EXPECTED}")
        file = Path(name.strip())
        items.append((str(file if file.is_absolute() else path.parent / file), value))
    if not items:
        raise DatasetError(f"imagenet-val: {path} lists no images; {EXPECTED}")
    return items


def preprocess_style(source: str | None, model: str) -> str:
    """Which framework's official transform the model gets: 'torch' (also Gluon's) or 'keras:<mode>'."""
    if source == "tensorflow":
        if model not in KERAS_MODES:
            raise DatasetError(f"no Keras preprocess_input known for {model}; known: {', '.join(KERAS_MODES)}")
        return f"keras:{KERAS_MODES[model]}"
    return "torch"


def load(items: list[tuple[str, int]], input_shape: tuple[int, ...], style: str) -> Any:
    """Decode and preprocess every image: N x C x H x W float32 (NCHW whatever the framework)."""
    import numpy as np
    from PIL import Image

    channels, height, width = input_shape
    if channels != 3:
        raise DatasetError(f"imagenet-val gives RGB images; this model takes {channels}-channel inputs")
    out = np.empty((len(items), channels, height, width), dtype=np.float32)
    # torchvision's Resize(256) before CenterCrop(224), scaled for the tiny models' inputs.
    short = round(height * 256 / 224)
    mean = np.asarray(MEAN, dtype=np.float32)[:, None, None]
    std = np.asarray(STD, dtype=np.float32)[:, None, None]
    for i, (file, _) in enumerate(items):
        try:
            with Image.open(file) as img:
                rgb = img.convert("RGB")
        except (OSError, ValueError) as exc:
            raise DatasetError(f"imagenet-val: cannot read image {file}: {exc}") from None
        if style == "torch":
            w, h = rgb.size
            size = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
            rgb = rgb.resize(size, Image.Resampling.BILINEAR)
            left = int(round((size[0] - width) / 2.0))
            top = int(round((size[1] - height) / 2.0))
            rgb = rgb.crop((left, top, left + width, top + height))
            chw = np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1) / 255.0
            out[i] = (chw - mean) / std
        else:
            # keras.utils.load_img(target_size=(h, w)): a plain resize, nearest by default.
            rgb = rgb.resize((width, height), Image.Resampling.NEAREST)
            hwc = np.asarray(rgb, dtype=np.float32)
            out[i] = keras_preprocess(hwc, style.split(":", 1)[1]).transpose(2, 0, 1)
    return out


def keras_preprocess(hwc: Any, mode: str) -> Any:
    """keras.applications.imagenet_utils.preprocess_input for one RGB HWC image in 0..255."""
    import numpy as np

    if mode == "tf":  # MobileNetV2: scale to [-1, 1]
        return hwc / 127.5 - 1.0
    if mode == "caffe":  # ResNet50: RGB -> BGR, subtract the ImageNet mean per channel, no scaling
        return hwc[..., ::-1] - np.asarray(CAFFE_MEAN_BGR, dtype=np.float32)
    raise DatasetError(f"unknown Keras preprocessing mode {mode!r}")
