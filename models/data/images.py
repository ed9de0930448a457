"""Reading one image file into a float array in [0, 1], whatever its format and bit depth.

Pillow reads PNG (8 and 16 bit), JPEG, TIFF, BMP and GIF; pydicom (optional, the ``dicom``
extra) reads DICOM. Every file is fully decoded here, so a truncated JPEG fails when the
dataset is loaded, not in the middle of an epoch. The pixel count is checked from the header
before decoding, so a decompression bomb is refused without being expanded, whatever its size
(Pillow's own limit, which would raise inside ``Image.open``, gives way to ``max_pixels``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif",
                            ".dcm", ".dicom"})
DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb limit (~ 9459 x 9459)
_LUMA = np.array([0.299, 0.587, 0.114], dtype="float32")


class ImageError(ValueError):
    """One file that cannot be used as an image; the message says why (the caller adds the
    path)."""


@dataclass(frozen=True)
class ImageInfo:
    """What a file held before conversion: for ``data inspect`` and the dataset's info."""

    width: int
    height: int
    channels: int
    bit_depth: int
    format: str


def is_image_file(path: Path) -> bool:
    """Image files by suffix; hidden files (``.DS_Store``, macOS ``._x.jpg``) never are."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def read_image(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS,
               ) -> tuple[np.ndarray, ImageInfo]:
    """Decode a file to ``(H, W, C)`` float32 in [0, 1] with C = 1 or 3 (alpha dropped)."""
    path = Path(path)
    if path.suffix.lower() in DICOM_SUFFIXES:
        return _read_dicom(path, max_pixels)
    from PIL import Image, UnidentifiedImageError

    try:
        with _pillow_limit_off(Image), Image.open(path) as im:
            width, height = im.size  # from the header: nothing is decoded yet
            _check_pixels(width, height, max_pixels)
            im.load()  # full decode: a truncated file raises here
            fmt = im.format or path.suffix.lstrip(".").upper()
            array, bits = _pil_to_array(im)
    except ImageError:
        raise
    except Image.DecompressionBombError as err:  # only if another thread restored the limit
        raise ImageError(f"above Pillow's pixel limit ({err})") from None
    except UnidentifiedImageError:
        raise ImageError("not a readable image (unknown or damaged format)") from None
    except (OSError, ValueError, SyntaxError) as err:
        if path.suffix.lower() in (".tif", ".tiff"):
            return _read_tiff(path, max_pixels, err)
        raise ImageError(f"cannot decode ({err})") from None
    info = ImageInfo(width, height, array.shape[-1], bits, fmt)
    return _scale(array, bits), info


@contextlib.contextmanager
def _pillow_limit_off(image_module):
    """Pillow refuses images above twice ``Image.MAX_IMAGE_PIXELS`` inside ``Image.open``
    (``DecompressionBombError``, before the caller sees the size) and warns above it; the
    limit that counts is ``max_pixels`` (``dataset.max_image_pixels``), checked from the
    header right after opening, so Pillow's own check is off while a file is opened."""
    previous = image_module.MAX_IMAGE_PIXELS
    image_module.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        image_module.MAX_IMAGE_PIXELS = previous


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageError(f"{width}x{height} = {width * height} pixels is above the limit of "
                         f"{max_pixels} (a decompression bomb? for large images raise "
                         "dataset.max_image_pixels, or --max-image-pixels)")


def _pil_to_array(im) -> tuple[np.ndarray, int]:
    mode = im.mode
    if mode.startswith("I;16"):
        return np.asarray(im).astype("uint16")[..., None], 16
    if mode == "I":  # 16-bit PNGs and TIFFs may open as 32-bit ints
        a = np.asarray(im)
        bits = 16 if a.size == 0 or (a.min() >= 0 and a.max() <= 65535) else 32
        return a[..., None], bits
    if mode == "F":
        return np.asarray(im, dtype="float32")[..., None], 32
    if mode in ("L", "1"):
        return np.asarray(im.convert("L"))[..., None], 8
    if mode == "LA":
        return np.asarray(im.convert("L"))[..., None], 8
    return np.asarray(im.convert("RGB")), 8


def _scale(array: np.ndarray, bits: int) -> np.ndarray:
    a = array.astype("float32")
    if bits == 32 and np.issubdtype(array.dtype, np.floating):
        top = float(a.max()) if a.size else 1.0
        return np.clip(a / top if top > 1 else a, 0.0, 1.0)
    if bits == 32:
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 1.0)
        return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    return a / float(2**bits - 1)


def _read_tiff(path: Path, max_pixels: int, first_error: Exception):
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            height, width = page.shape[:2]
            _check_pixels(width, height, max_pixels)
            a = page.asarray()
    except ImageError:
        raise
    except Exception:
        raise ImageError(f"cannot decode ({first_error})") from None
    if a.ndim == 2:
        a = a[..., None]
    a = a[..., :3] if a.shape[-1] >= 3 else a[..., :1]
    bits = a.dtype.itemsize * 8 if np.issubdtype(a.dtype, np.integer) else 32
    return _scale(a, bits), ImageInfo(width, height, a.shape[-1], bits, "TIFF")


def _read_dicom(path: Path, max_pixels: int):
    try:
        import pydicom
    except ImportError:
        raise ImageError("reading DICOM needs pydicom: pip install 'tunelab[dicom]'") from None
    try:
        ds = pydicom.dcmread(path)
        rows, cols = int(ds.Rows), int(ds.Columns)
    except Exception as err:
        raise ImageError(f"not a readable DICOM file ({type(err).__name__}: {err})") from None
    _check_pixels(cols, rows, max_pixels)
    if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
        raise ImageError(f"a multi-frame DICOM ({ds.NumberOfFrames} frames); tunelab reads "
                         "single images")
    try:
        a = ds.pixel_array
    except Exception as err:
        raise ImageError(f"cannot decode the DICOM pixel data ({err})") from None
    bits = int(getattr(ds, "BitsStored", a.dtype.itemsize * 8))
    a = a.astype("float64")
    if int(getattr(ds, "PixelRepresentation", 0)) == 1:  # signed: shift to start at 0
        a = a + 2 ** (bits - 1)
    a = np.clip(a / float(2**bits - 1), 0.0, 1.0).astype("float32")
    if getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1":
        a = 1.0 - a  # MONOCHROME1 shows low values as white
    if a.ndim == 2:
        a = a[..., None]
    return a, ImageInfo(cols, rows, a.shape[-1], bits, "DICOM")


def convert(image: np.ndarray, image_size: int | None, channels: int) -> np.ndarray:
    """``(H, W, C)`` in [0, 1] -> ``(S, S, channels)`` float32, resized (bilinear, with
    anti-aliasing when shrinking) and converted grey <-> RGB."""
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[-1] == 3 and channels == 1:
        image = (image @ _LUMA)[..., None]
    elif image.shape[-1] == 1 and channels == 3:
        image = np.repeat(image, 3, axis=-1)
    if image_size is not None and image.shape[:2] != (image_size, image_size):
        from skimage.transform import resize

        shrink = image_size < max(image.shape[:2])
        image = resize(image, (image_size, image_size, channels), order=1,
                       anti_aliasing=shrink, preserve_range=True)
    return np.clip(image, 0.0, 1.0).astype("float32")
