"""A child process that runs a bids-deid command and kills itself with SIGKILL right after its Nth rename.

Every file the App publishes ends with an ``os.replace`` (``bids_deid/atomic.py``), so counting renames
walks the write points of a run. The count comes from ``$KILL_AFTER``.
"""

from __future__ import annotations


def killer_script(command: str = "bids_deid.cli", umask: int | None = None) -> str:
    """Python source for ``python -c``: run ``command``'s ``main`` with argv, dying after rename ``$KILL_AFTER``."""
    umask_line = f"os.umask({umask})\n" if umask is not None else ""
    return (
        "import os, signal, sys\n"
        + umask_line
        + "real, n = os.replace, [0]\n"
        "def replace(a, b, **k):\n"
        "    real(a, b, **k)\n"
        "    n[0] += 1\n"
        "    if n[0] == int(os.environ['KILL_AFTER']):\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "os.replace = replace\n"
        f"from {command} import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
