"""Automated face check: OpenCV's Haar cascade frontal face detector on surface renderings.

The cascade files ship inside the ``opencv-python-headless`` wheel (``cv2.data``), so no
download is needed. When OpenCV is missing the check reports ``None`` (unknown).
"""

from __future__ import annotations

import functools
import logging

import numpy as np

log = logging.getLogger(__name__)

MIN_FACE_FRACTION = 0.6  # smallest face box, as a fraction of the rendered head width
CASCADES = ("haarcascade_frontalface_default.xml", "haarcascade_frontalface_alt2.xml")


@functools.lru_cache(maxsize=1)
def _detectors() -> tuple | None:
    try:
        import cv2
    except ImportError:
        log.warning("OpenCV not installed: automated face check disabled")
        return None
    out = []
    for name in CASCADES:
        clf = cv2.CascadeClassifier(cv2.data.haarcascades + name)
        if not clf.empty():
            out.append(clf)
    return tuple(out) or None


def detector_available() -> bool:
    """True when OpenCV and its cascades can be loaded."""
    return _detectors() is not None


def count_faces(view: np.ndarray) -> int | None:
    """Number of faces the Haar cascades find in a rendering.

    Only boxes at least :data:`MIN_FACE_FRACTION` of the head's rendered width count, and
    only when both shipped frontal cascades (default and alt2) find overlapping boxes. A
    face found after defacing fails the image.

    Parameters
    ----------
    view : ndarray of uint8
        Grayscale frontal rendering, rows top to bottom.

    Returns
    -------
    int or None
        ``None`` when the detector is unavailable.
    """
    dets = _detectors()
    if dets is None:
        return None

    img = np.ascontiguousarray(view, dtype=np.uint8)
    cols = np.nonzero((img > 0).any(axis=0))[0]
    if cols.size == 0:
        return 0
    # a face seen from the front spans most of the head's width; smaller hits are
    # patterns on the cut surface (orbits, sinuses), not a recognisable face
    head_width = int(cols[-1] - cols[0] + 1)
    min_side = max(24, int(MIN_FACE_FRACTION * head_width))
    hits = []
    for clf in dets:
        found = clf.detectMultiScale(img, scaleFactor=1.05, minNeighbors=4, minSize=(min_side, min_side))
        hits.append([tuple(int(v) for v in box) for box in found])
    if len(hits) == 1:
        return len(hits[0])
    # a face counts when every cascade finds it (boxes overlapping): the cut surface left
    # by defacing (orbits, sinuses) can fool one cascade, a face fools them all
    agreed = [box for box in hits[0] if all(any(_iou(box, other) >= 0.3 for other in more) for more in hits[1:])]
    return len(agreed)


def _iou(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    union = aw * ah + bw * bh - inter
    return inter / union if union else 0.0
