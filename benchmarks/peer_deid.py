"""Run pydicom/deid (https://github.com/pydicom/deid) over a folder with its default recipe.

Used by ``bench_dicom.py`` in the peers' venv: ``python peer_deid.py IN_DIR OUT_DIR``. deid has
no console script for this; its documented Python API is called instead.
"""

import sys
from pathlib import Path

from deid.config import DeidRecipe
from deid.dicom import get_files, replace_identifiers

src, out = Path(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
files = list(get_files(str(src)))
replace_identifiers(dicom_files=files, deid=DeidRecipe(), save=True, output_folder=str(out), overwrite=True)
