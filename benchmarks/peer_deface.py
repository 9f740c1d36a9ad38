"""Peer defacers for ``bench_deface.py``, run in a separate venv (torch, deepbet, quickshear, mede, antspyx).

Never imported by bids-deid. Usage (one tool per process, so that its peak memory is its own)::

    PEER_PYTHON benchmarks/peer_deface.py TOOL SRC DST [TEMPLATE FACEMASK]

TOOL is ``mede`` (the seed tool's CNN defacer, CPU), ``deepbet-quickshear`` (deepbet brain
mask, then quickshear's plane cut) or ``ants`` (antspyx affine registration of bids-deid's
template, its face mask warped and zeroed). DST is written on SRC's stored grid (mede's
output, which it writes in RAS order, is put back into the stored order) so that the
benchmark can compare voxels.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np


def _back_to_stored(out_img: nib.Nifti1Image, src_img: nib.Nifti1Image) -> np.ndarray:
    tr = nib.orientations.ornt_transform(nib.io_orientation(out_img.affine), nib.io_orientation(src_img.affine))
    return nib.apply_orientation(np.asanyarray(out_img.dataobj), tr)


def mede(src: Path, dst: Path) -> None:
    import torch

    torch.set_num_threads(2)
    from mede.dicom_skullstrip_defacing import Inference

    with tempfile.TemporaryDirectory() as tmp:
        Inference(tmp, deface=True)(str(src))
        (out,) = Path(tmp).glob("*.nii.gz")
        out_img = nib.load(str(out))
        src_img = nib.load(str(src))
        data = _back_to_stored(out_img, src_img)
        if data.shape != src_img.shape[:3]:
            raise RuntimeError(f"mede output {data.shape} does not match the input {src_img.shape}")
        nib.save(nib.Nifti1Image(data.astype(np.float32), src_img.affine), str(dst))


def deepbet_quickshear(src: Path, dst: Path) -> None:
    import torch

    torch.set_num_threads(2)
    from deepbet import BrainExtraction
    from quickshear import quickshear

    img = nib.load(str(src))
    _, mask, _ = BrainExtraction(no_gpu=True).run(img)
    quickshear(img, mask).to_filename(str(dst))


def ants_affine(src: Path, dst: Path, template: str, face: str) -> None:
    import ants

    img = ants.image_read(str(src))
    reg = ants.registration(
        fixed=img, moving=ants.image_read(template), type_of_transform="Affine", aff_metric="mattes", aff_sampling=32
    )
    mask = ants.apply_transforms(
        fixed=img, moving=ants.image_read(face), transformlist=reg["fwdtransforms"], interpolator="nearestNeighbor"
    ).numpy()
    nii = nib.load(str(src))
    data = np.asanyarray(nii.dataobj).copy()
    data[mask > 0.5] = 0
    nib.save(nib.Nifti1Image(data, nii.affine, nii.header), str(dst))


def main() -> int:
    tool, src, dst, *extra = sys.argv[1:]
    {"mede": mede, "deepbet-quickshear": deepbet_quickshear, "ants": ants_affine}[tool](Path(src), Path(dst), *extra)
    print("PASSED")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
