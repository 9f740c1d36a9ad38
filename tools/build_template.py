"""Build the embedded defacing template of bids-deid from the ICBM 2009 extended head.

Run from the repository root::

    python tools/build_template.py ../shared/data/nifti/mni_icbm152_2009_ext_head_1p6mm.nii.gz \
        --out bids_deid/data/template --preview /tmp/template-preview

What it writes (all uint8, gzip, in the source's own 1.6 mm grid and world space, padded
with zeros in front of and below the face so that a face larger than the template still
falls inside the mask's box):

* ``icbm152_2009_ext_head.nii.gz``: the head, intensities unchanged;
* ``icbm152_2009_ext_head_brainmask.nii.gz``: brain (cerebrum, cerebellum, brainstem) from
  intensity thresholding, erosion, largest connected component, dilation, closing and
  hole filling;
* ``icbm152_2009_ext_head_facemask.nii.gz``: everything below a brow plane and in front of
  an oblique plane in front of the brain, minus the brain mask dilated by 10 mm.

``--preview`` renders slices with the mask outlines to PNG files for a visual check.
"""

from __future__ import annotations

import argparse
import gzip
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bids_deid.atomic import atomic_write_bytes  # noqa: E402

NAME = "icbm152_2009_ext_head"

# Geometry of the face region in the source's world coordinates (mm, RAS). The source's
# world origin is not the MNI anterior commissure: the brain front is at y ~ +100 and the
# eyebrows at z ~ -5. Values were chosen on slice renderings of the source.
BROW_Z = -4.0  # face region lies below this axial plane
FRONT_PLANE = ((62.0, BROW_Z), (40.0, -160.0))  # (y, z) points of the oblique coronal plane
BRAIN_MARGIN_MM = 10.0  # the face mask keeps this far from the brain
PAD_ANTERIOR = 12  # voxels of zero padding added in front (+y) and below (-z)
PAD_OTHER = 2


def _ball(radius: int) -> np.ndarray:
    grid = np.indices((2 * radius + 1,) * 3) - radius
    return (grid**2).sum(0) <= radius * radius


def brain_mask(data: np.ndarray, world: np.ndarray) -> np.ndarray:
    """Brain mask of the template from intensities and morphology.

    Parameters
    ----------
    data : ndarray
        Template intensities (uint8 range).
    world : ndarray
        World coordinates, shape ``(3,) + data.shape``.

    Returns
    -------
    ndarray of bool
    """
    tissue = (data > 55) & (data < 115) & (world[2] > -100.0)
    core = ndi.binary_erosion(tissue, _ball(2))
    labels, n = ndi.label(core)
    sizes = ndi.sum(core, labels, range(1, n + 1))
    largest = labels == (1 + int(np.argmax(sizes)))
    mask = ndi.binary_dilation(largest, _ball(2)) & tissue
    pad = 6
    mask = ndi.binary_closing(np.pad(mask, pad), _ball(4))[pad:-pad, pad:-pad, pad:-pad]
    return ndi.binary_fill_holes(mask)


def face_mask(world: np.ndarray, brain: np.ndarray, zooms: tuple[float, ...]) -> np.ndarray:
    """Face region: below the brow plane, in front of the oblique front plane, away from the brain.

    Parameters
    ----------
    world : ndarray
        World coordinates, shape ``(3,) + grid``.
    brain : ndarray of bool
        Brain mask on the same grid.
    zooms : tuple of float
        Voxel sizes in mm (for the distance to the brain).

    Returns
    -------
    ndarray of bool
    """
    (y0, z0), (y1, z1) = FRONT_PLANE
    y_front = y0 + (world[2] - z0) * (y1 - y0) / (z1 - z0)
    region = (world[2] < BROW_Z) & (world[1] > y_front)
    dist = ndi.distance_transform_edt(~brain, sampling=zooms)
    return region & (dist > BRAIN_MARGIN_MM)


def _preview(data: np.ndarray, brain: np.ndarray, face: np.ndarray, outdir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    outdir.mkdir(parents=True, exist_ok=True)
    cx, cy, cz = (np.array(data.shape) // 2).tolist()
    fig, axes = plt.subplots(2, 3, figsize=(15, 10))
    cuts = [(0, cx), (0, cx - 20), (1, cy + 25), (1, cy), (2, cz - 20), (2, cz - 35)]
    for ax, (axis, idx) in zip(axes.ravel(), cuts, strict=True):
        ax.imshow(np.take(data, idx, axis).T, origin="lower", cmap="gray")
        ax.contour(np.take(brain, idx, axis).T.astype(float), [0.5], colors="r", origin="lower")
        ax.contour(np.take(face, idx, axis).T.astype(float), [0.5], colors="c", origin="lower")
        ax.set_title(f"axis {axis} index {idx}")
    fig.savefig(outdir / "template_masks.png", dpi=70)
    plt.close(fig)


def build(src: Path, outdir: Path, preview: Path | None = None) -> dict[str, Path]:
    """Derive the template head, brain mask and face mask and write them to ``outdir``.

    Parameters
    ----------
    src : Path
        ICBM 2009 extended head NIfTI.
    outdir : Path
        Output folder (``bids_deid/data/template``).
    preview : Path, optional
        Folder for PNG renderings of the masks.

    Returns
    -------
    dict
        Kind (head, brainmask, facemask) to written path.
    """
    img = nib.load(str(src))
    data = np.asarray(img.dataobj).astype(np.uint8)
    affine = img.affine.copy()
    # Zero padding: axes of the source are (R, A, S); pad more in front (+A) and below (-S).
    pads = [(PAD_OTHER, PAD_OTHER), (PAD_OTHER, PAD_ANTERIOR), (PAD_ANTERIOR, PAD_OTHER)]
    data = np.pad(data, pads)
    shift = np.array([-p[0] for p in pads] + [1.0])
    affine[:, 3] = affine @ shift
    ijk = np.indices(data.shape).reshape(3, -1)
    world = (affine[:3, :3] @ ijk + affine[:3, 3:]).reshape((3,) + data.shape)
    zooms = tuple(float(z) for z in np.sqrt((affine[:3, :3] ** 2).sum(0)))
    brain = brain_mask(data.astype(np.float32), world)
    face = face_mask(world, brain, zooms)
    outdir.mkdir(parents=True, exist_ok=True)
    written = {}
    for kind, arr in (("head", data), ("brainmask", brain), ("facemask", face)):
        out = nib.Nifti1Image(arr.astype(np.uint8), affine)
        out.header.set_xyzt_units("mm")
        out.header.set_qform(affine, code=4)  # 4 = MNI152
        out.header.set_sform(affine, code=4)
        out.header["descrip"] = b"bids-deid template (ICBM152 2009 ext)"
        name = f"{NAME}.nii.gz" if kind == "head" else f"{NAME}_{kind}.nii.gz"
        # mtime 0 keeps the gzip bytes reproducible
        path = outdir / name
        atomic_write_bytes(path, gzip.compress(out.to_bytes(), compresslevel=9, mtime=0))
        written[kind] = path
    vox_ml = float(np.prod(zooms)) / 1000.0
    print(f"brain {brain.sum() * vox_ml:.0f} ml, face {face.sum() * vox_ml:.0f} ml, grid {data.shape}")
    if preview is not None:
        _preview(data, brain, face, preview)
    return written


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path)
    parser.add_argument("--out", type=Path, default=Path("bids_deid/data/template"))
    parser.add_argument("--preview", type=Path, default=None)
    args = parser.parse_args(argv)
    build(args.src, args.out, args.preview)


if __name__ == "__main__":
    main()
