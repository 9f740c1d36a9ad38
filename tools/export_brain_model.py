"""Export deepbet's two brain-extraction networks to ONNX for bids-deid's defacer.

bids-deid protects each head's own brain while defacing. The brain extent comes from the
deepbet networks (MIT license; weights shipped inside the ``deepbet`` wheel on PyPI),
run with onnxruntime so that neither torch nor deepbet is a runtime dependency. This tool
is the only place torch is used; run it once when the model changes::

    python -m venv /tmp/export && /tmp/export/bin/pip install torch deepbet==1.0.2 onnx onnxruntime
    /tmp/export/bin/python tools/export_brain_model.py --out bids_deid/data/brain

It writes ``bbox.onnx`` (coarse brain, 128^3 input) and ``brain.onnx`` (brain inside the
box, 256^3 input), checks that onnxruntime reproduces torch's output on a test volume,
and prints the sha256 of each file for ``bids_deid/data/brain/PROVENANCE.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import warnings
from pathlib import Path


def _export(script_path: Path, out: Path, size: int) -> None:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = torch.jit.load(str(script_path), map_location="cpu").eval()
    x = torch.zeros((1, 1, size, size, size), dtype=torch.float32)
    torch.onnx.export(
        model,
        (x,),
        str(out),
        input_names=["image"],
        output_names=["logits"],
        dynamic_axes={"image": {2: "x", 3: "y", 4: "z"}, "logits": {2: "x", 3: "y", 4: "z"}},
        opset_version=17,
        dynamo=False,
        do_constant_folding=True,
    )


def _check(script_path: Path, onnx_path: Path, size: int) -> float:
    import numpy as np
    import onnxruntime as ort
    import torch

    rng = np.random.default_rng(0)
    # a smooth blob, roughly head-like, normalised as the networks expect
    g = np.linspace(-1, 1, size, dtype=np.float32)
    r = np.sqrt(g[:, None, None] ** 2 + g[None, :, None] ** 2 + g[None, None, :] ** 2)
    x = (np.clip(1.2 - r, 0, 1) + 0.05 * rng.standard_normal((size,) * 3)).astype(np.float32)[None, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = torch.jit.load(str(script_path), map_location="cpu").eval()
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    return float(np.abs(ref - got).max())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    import importlib.util

    spec = importlib.util.find_spec("deepbet")  # located, not imported (it needs more packages to import)
    if spec is None or spec.origin is None:
        print("deepbet is not installed", file=sys.stderr)
        return 1
    models = Path(spec.origin).resolve().parents[1] / "data" / "models"
    args.out.mkdir(parents=True, exist_ok=True)
    for src, dst, size in (("bbox_model.pt", "bbox.onnx", 128), ("model.pt", "brain.onnx", 256)):
        out = args.out / dst
        _export(models / src, out, size)
        err = _check(models / src, out, 128)
        digest = hashlib.sha256(out.read_bytes()).hexdigest()
        print(f"{dst}: {out.stat().st_size} bytes sha256 {digest} (max |torch - onnxruntime| {err:.2e})")
        if err > 1e-3:
            print(f"{dst}: onnxruntime does not reproduce torch", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
