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

    Only boxes at least :data:`MIN_FACE_FRACTION` of the head's rendered width count. The
    largest count over the shipped frontal cascades is returned (the check is meant to
    be sensitive: a face found after defacing fails the image).

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
    best = 0
    for clf in dets:
        found = clf.detectMultiScale(img, scaleFactor=1.05, minNeighbors=4, minSize=(min_side, min_side))
        best = max(best, len(found))
    return int(best)
