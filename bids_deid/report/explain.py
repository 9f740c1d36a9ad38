"""Words for the report: a caption and "what to look for" per figure, one line per number, and
what each reason for withholding a file means and what to do about it."""

from __future__ import annotations


def _gates() -> dict:
    try:
        from ..deface import facecheck, gate, pipeline
    except Exception:  # noqa: BLE001 - the report still renders without the defacing stack
        return {}
    return {"dice": gate.MIN_BRAIN_DICE, "scale": gate.SCALE_RANGE, "after": gate.MAX_FACE_AFTER,
            "present": facecheck.FACE_PRESENT, "margin": pipeline.BRAIN_MARGIN_MM}


def metric_notes() -> dict[str, str]:
    """One line per defacing number: what it measures and what a good value is (docs/defacing.md)."""
    g = _gates()
    scale = g.get("scale") or (None, None)
    return {
        "metric": "registration cost (Mattes mutual information, template to image): lower is a better fit; "
        "shown for information, it does not decide",
        "start": "which starting pose won before the fine registration (com = head centres of mass aligned; "
        "the number is the start rotation about the left-right axis, in degrees)",
        "scale_min": "smallest scaling of the template onto this head (1 = same size)"
        + (f"; below {scale[0]} the image is withheld" if scale[0] else ""),
        "scale_max": "largest scaling of the template onto this head (1 = same size)"
        + (f"; above {scale[1]} the image is withheld" if scale[1] else ""),
        "brain_dice": "overlap of the moved template brain with this head's own brain (1 = perfect)"
        + (f"; below {g['dice']} the face region is taken as misplaced and the image withheld" if g.get("dice") else ""),
        "brain_in_view_ml": "volume of this head's own brain inside the field of view, in millilitres",
        "cut_to_brain_mm": "smallest distance from the removed region to this head's own brain, in mm"
        + (f" (never less than {g['margin']:g})" if g.get("margin") else ""),
        "head_tilt_deg": "how far the head is turned in its stored voxel axes (above 12 degrees the brain is found "
        "on an upright copy)",
        "face_voxels": "voxels set to zero (the face, and the neck in front of the face)",
        "face_volume_ml": "volume set to zero, in millilitres",
        "face_lines_in_view": "share of the template face's lines of sight inside the field of view",
        "face_surface_before": "share of those lines that meet a face surface in the input"
        + (f" (a face above {g['present']})" if g.get("present") else ""),
        "face_surface_after": "the same after defacing"
        + (f"; above {g['after']} the image is withheld" if g.get("after") else ""),
        "skin_offset_mm": "median distance of the face surface from the template's skin (information)",
        "registration_seconds": "time spent registering the template",
        "brain_seconds": "time spent finding this head's brain",
        "seconds": "time spent on this image in all",
        "faces": "face found by the geometric face check before / after (1 = found): after must be 0",
    }


#: (figure key, caption, what to look for)
FIGURES = (
    ("before_front", "Before, from the front",
     "The face as the input shows it (private). It tells you what would have been shared."),
    ("after_front", "After, from the front",
     "No eyes, nose or mouth may be recognisable; the forehead and the brain stay whole."),
    ("before_side", "Before, from the right", "The profile of the input: nose, lips and chin."),
    ("after_side", "After, from the right",
     "The profile in front of the ears is gone; the skull over the brain is not cut into."),
    ("slices", "Face mask on the image (red outline)",
     "The red outline must cover the face and stay clear of the brain in both slices."),
    ("overlay", "Registration check (template edges in green)",
     "The green head outline should follow this head's skin and skull; a shifted or tilted outline "
     "means a wrong registration."),
)

#: (text in a reason, what it means and what to do)
REASONS = (
    ("pixels may show the face", "The DICOM of a structural MR/CT series shows the face in its pixels, so it "
     "stays out of sourcedata/; its defaced NIfTI is in the dataset. Nothing to do, unless you need the DICOM "
     "(then share it under a data use agreement, not publicly)."),
    ("still found", "After defacing, the face check still found a face surface: the image was not written. "
     "Look at its pictures; try --deface-method skullstrip, or deface it by hand."),
    ("misplaced", "The template's face region does not sit on this head's face (its brain does not fit this "
     "head's brain), so the image was withheld. Check the orientation in the header and the registration "
     "picture; try --deface-method skullstrip."),
    ("too thin or small", "The image has too few slices or too small a field of view to locate a face in. Look "
     "at it: share it only if it shows no face."),
    ("no face in view", "The field of view holds no face (e.g. a slab above the eyes): written unchanged."),
    ("face detector", "After defacing, the automated detector still saw a face: the image was not written. "
     "Look at its pictures; try --deface-method skullstrip, or deface it by hand."),
    ("registration", "The template could not be fitted to this head with confidence, so the face mask could "
     "be in the wrong place. Look at the registration picture; check the image orientation in its header."),
    ("Dice", "The moved template head does not match this head (unusual field of view or orientation). "
     "Look at the registration picture."),
    ("brain", "The face mask would come too close to the brain, or the brain falls off the head: the image was "
     "withheld to protect the brain. Look at the pictures."),
    ("scaling", "The template had to be stretched implausibly to fit: likely a wrong registration."),
    ("burned", "The image may have text burned into its pixels (names, dates). Use --clean-pixels (OCR) to "
     "black the text out, or leave the file out."),
    ("its image was withheld", "The sidecar belongs to an image that was withheld, so it goes too."),
    ("unknown", "bids-deid does not know this file type: unknown means identifying. Convert it to a BIDS "
     "format, or add it yourself after checking it."),
    ("not DICOM", "A file under sourcedata/ that is not DICOM: bids-deid cannot check it."),
    ("--sourcedata none", "Left out because you asked for --sourcedata none."),
)


def reason_note(reason: str) -> str:
    """What a withholding reason means and what to do (empty if the reason is self-explanatory)."""
    low = reason.lower()
    for key, note in REASONS:
        if key.lower() in low:
            return note
    return ""
