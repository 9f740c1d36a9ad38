"""Write SLURM batch scripts: one participant per array task, then one group job.

``bids-deid BIDS_DIR OUTPUT_DIR participant --slurm-script FILE`` does not process
anything; it writes, beside ``FILE``:

* ``FILE`` - an ``sbatch`` array script; task *i* processes line *i + 1* of the
  participant list (``--participant-label``), in its own work dir;
* ``<stem>-participants.txt`` - the participant list (original labels: it is private,
  mode 0600, never inside the public output);
* ``<stem>-settings.json`` - the run's settings (:mod:`bids_deid.settings`, mode 0600; the
  key by path and fingerprint only): every task and the group job load this one file
  (``--settings``), so no option can be lost between a local and a SLURM run;
* ``<stem>-group.sbatch`` - the group job (dataset files, validator, leak audit, report);
* ``<stem>-submit.sh`` - submits the array, then the group job with
  ``--dependency=afterok:<array job id>``.

The key is passed by path (in the settings file); its bytes are never written into a script.
Nothing is written into the input: the scripts must lie outside it and outside the output.
Every participant task writes only per-subject files, so tasks may share one output
dir and one private dir.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .dataset import list_subjects
from .errors import InputError, OutputError

log = logging.getLogger(__name__)

DEFAULT_MAX_PARALLEL = 8
DEFAULT_MEM = "8G"
DEFAULT_TIME = "04:00:00"


@dataclass(frozen=True)
class SlurmJob:
    """What the scripts run and with which resources.

    Parameters
    ----------
    bids_dir, output_dir, private_dir : Path
        Absolute input, public output and private dir (all seen by the compute nodes).
    key_file : Path
        Absolute path of the key file; only the path goes into the script.
    participants : list of str
        Labels without ``sub-``, one array task each.
    work_dir : Path
        Scratch root; task *i* uses ``work_dir/task-<i>``.
    settings_file : Path
        The saved settings both levels load (``--settings``).
    max_parallel : int
        SLURM array concurrency limit (``%N``).
    mem, time : str
        ``--mem`` and ``--time`` of each task.
    n_cpus : int
        ``--cpus-per-task`` and ``--n-cpus`` of each task.
    container : Path, optional
        An Apptainer/Singularity image; run with ``apptainer run --cleanenv`` and bind mounts.
    command : list of str
        The ``bids-deid`` command without a container (default: this Python's entry point).
    """

    bids_dir: Path
    output_dir: Path
    private_dir: Path
    key_file: Path
    participants: list[str]
    work_dir: Path
    settings_file: Path | None = None
    max_parallel: int = DEFAULT_MAX_PARALLEL
    mem: str = DEFAULT_MEM
    time: str = DEFAULT_TIME
    n_cpus: int = 1
    container: Path | None = None
    command: list[str] = field(default_factory=list)
    job_name: str = "bids-deid"
    verbose: int = 0


@dataclass(frozen=True)
class SlurmFiles:
    """Paths of the files :func:`write_slurm_scripts` wrote."""

    array_script: Path
    participants_file: Path
    settings_file: Path
    group_script: Path
    submit_script: Path
    log_dir: Path


def default_command() -> list[str]:
    """``bids-deid`` of the running Python (its venv), as a command line."""
    exe = Path(sys.executable).parent / "bids-deid"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "bids_deid.cli"]


def _binds(job: SlurmJob) -> list[str]:
    """Folders the container must see: input, output, private side, key, scratch."""
    wanted = [job.bids_dir, job.output_dir.parent, job.private_dir.parent, job.key_file.parent, job.work_dir]
    if job.settings_file is not None:
        wanted.append(job.settings_file.parent)
    binds: list[str] = []
    for p in wanted:
        s = str(p)
        if not any(s == b or s.startswith(b.rstrip("/") + "/") for b in binds):
            binds = [b for b in binds if not b.startswith(s.rstrip("/") + "/")] + [s]
    return binds


def _runner(job: SlurmJob) -> str:
    """The shell words that start ``bids-deid`` (container or venv)."""
    if job.container is not None:
        words = ["apptainer", "run", "--cleanenv"]
        for b in _binds(job):
            words += ["-B", b]
        words.append(str(job.container))
        return " ".join(shlex.quote(w) for w in words)
    return " ".join(shlex.quote(w) for w in (job.command or default_command()))


def _header(job: SlurmJob, name: str, log_dir: Path, array: str | None, cpus: int) -> list[str]:
    lines = ["#!/bin/bash", f"#SBATCH --job-name={name}"]
    if array:
        lines.append(f"#SBATCH --array={array}")
        lines.append(f"#SBATCH --output={log_dir}/%x_%A_%a.log")
    else:
        lines.append(f"#SBATCH --output={log_dir}/%x_%j.log")
    lines += [f"#SBATCH --cpus-per-task={cpus}", f"#SBATCH --mem={job.mem}", f"#SBATCH --time={job.time}"]
    return lines


def _common_args(job: SlurmJob) -> str:
    words = [str(job.bids_dir), str(job.output_dir)]
    return " ".join(shlex.quote(w) for w in words)


def _opts(job: SlurmJob) -> str:
    words = ["--settings", str(job.settings_file)]
    return " ".join(shlex.quote(w) for w in words)


def array_spec(n: int, max_parallel: int) -> str:
    """``0-(n-1)%max_parallel`` (just ``0`` for one participant)."""
    if n < 1:
        raise InputError("no participants to put in a SLURM array")
    spec = "0" if n == 1 else f"0-{n - 1}"
    return f"{spec}%{max(1, min(max_parallel, n))}"


def _check_place(script: Path, job: SlurmJob) -> None:
    where = script.parent.resolve()
    for what, folder in (("public output", job.output_dir), ("input", job.bids_dir)):
        f = folder.resolve()
        if where == f or f in where.parents:
            raise OutputError(f"the SLURM script and its participant list must not be inside the {what} folder "
                              f"{folder}; put them in a folder of their own")


def _write(path: Path, text: str, mode: int) -> None:
    from .atomic import atomic_write_text

    atomic_write_text(path, text, perm=mode)


def write_slurm_scripts(script: Path, job: SlurmJob) -> SlurmFiles:
    """Write the array script, participant list, group script and submit driver.

    Parameters
    ----------
    script : Path
        Where the array script goes; the other files are written beside it.
    job : SlurmJob
        What to run.

    Returns
    -------
    SlurmFiles
        The paths written.
    """
    script = script.absolute()
    _check_place(script, job)
    stem = script.name[: -len(".sbatch")] if script.name.endswith(".sbatch") else script.stem
    folder = script.parent
    folder.mkdir(parents=True, exist_ok=True)
    files = SlurmFiles(
        array_script=script,
        participants_file=folder / f"{stem}-participants.txt",
        settings_file=job.settings_file or folder / f"{stem}-settings.json",
        group_script=folder / f"{stem}-group.sbatch",
        submit_script=folder / f"{stem}-submit.sh",
        log_dir=folder / f"{stem}-logs",
    )
    files.log_dir.mkdir(exist_ok=True)
    os.chmod(files.log_dir, 0o700)  # task logs may name original labels
    _write(files.participants_file, "".join(f"{p}\n" for p in job.participants), 0o600)

    runner = _runner(job)
    plist = shlex.quote(str(files.participants_file))
    work = shlex.quote(str(job.work_dir))
    arr = _header(job, job.job_name, files.log_dir, array_spec(len(job.participants), job.max_parallel), job.n_cpus)
    arr += [
        "# One participant per array task; the task index selects a line of the participant list.",
        "# Written by bids-deid; the key is read from its file at run time, never stored here.",
        "set -euo pipefail",
        'TASK="${SLURM_ARRAY_TASK_ID:?run this script with sbatch (an array job)}"',
        f'LABEL="$(sed -n "$((TASK + 1))p" {plist})"',
        'if [ -z "$LABEL" ]; then echo "bids-deid: no participant on line $((TASK + 1))" >&2; exit 1; fi',
        f'WORK={work}/task-"$TASK"',
        'mkdir -p "$WORK"',
        f"{runner} {_common_args(job)} participant --participant-label \"$LABEL\" "
        f"{_opts(job)} -w \"$WORK\" --n-cpus {job.n_cpus}" + " -v" * job.verbose,
        'rm -rf "$WORK"',
        "",
    ]
    _write(script, "\n".join(arr), 0o700)

    grp = _header(job, f"{job.job_name}-group", files.log_dir, None, 1)
    grp += [
        "# Group level: dataset files, validator, leak audit, report (after the whole array).",
        "set -euo pipefail",
        f'WORK={work}/group',
        'mkdir -p "$WORK"',
        f"{runner} {_common_args(job)} group {_opts(job)} -w \"$WORK\"" + " -v" * job.verbose,
        'rm -rf "$WORK"',
        "",
    ]
    _write(files.group_script, "\n".join(grp), 0o700)

    sub = [
        "#!/bin/bash",
        "# Submit the participant array, then the group job once every task succeeded.",
        "set -euo pipefail",
        'HERE="$(cd "$(dirname "$0")" && pwd)"',
        f'ARRAY_ID="$(sbatch --parsable "$@" "$HERE/{script.name}")"',
        'ARRAY_ID="${ARRAY_ID%%;*}"',
        # a failed task makes the dependency unsatisfiable: SLURM then cancels the group job
        # instead of leaving it pending forever
        f'GROUP_ID="$(sbatch --parsable --dependency=afterok:"$ARRAY_ID" --kill-on-invalid-dep=yes "$@"'
        f' "$HERE/{files.group_script.name}")"',
        'GROUP_ID="${GROUP_ID%%;*}"',
        'echo "participant array: $ARRAY_ID"',
        'echo "group job: $GROUP_ID (runs after the array succeeded; cancelled if a task fails)"',
        "",
    ]
    _write(files.submit_script, "\n".join(sub), 0o700)
    return files


def write_from_args(args, settings) -> SlurmFiles:
    """Build a :class:`SlurmJob` from parsed ``bids-deid`` arguments and the run's settings; write its files.

    The settings are saved beside the script; the tasks and the group job load them.
    """
    from dataclasses import replace

    from .dataset import normalise_labels
    from .settings import save

    if args.key_file is None:
        raise InputError("--slurm-script needs --key-file: the key is passed to the jobs by path, never in a script")
    if not args.key_file.is_file():
        raise InputError(f"key file {args.key_file} does not exist")
    if args.analysis_level != "participant":
        raise InputError("--slurm-script goes with the participant level (the scripts run both levels)")
    bids = args.bids_dir.absolute()
    if not (bids / "dataset_description.json").is_file() or args.input_type == "raw":
        raise InputError("--slurm-script needs a BIDS input (raw DICOM/twix: run participant level on one node "
                         "with --n-cpus, or convert first)")
    subjects = list_subjects(bids)
    wanted = normalise_labels(args.participant_label, "sub-")
    if wanted:
        missing = [p for p in wanted if p not in subjects]
        if missing:
            raise InputError(f"participant(s) not found in the input: {', '.join(missing)}")
        subjects = [s for s in subjects if s in wanted]
    if not subjects:
        raise InputError(f"no sub-* folders in {bids}")
    out, private, work = settings.output_dir, settings.private_dir, settings.work_dir
    container = args.slurm_container.absolute() if args.slurm_container else None
    if container is not None and not container.exists():
        log.warning("container image %s does not exist (yet)", container)
    job = SlurmJob(
        bids_dir=bids, output_dir=out, private_dir=private, key_file=args.key_file.absolute(),
        participants=subjects, work_dir=work,
        max_parallel=args.slurm_max_parallel, mem=args.slurm_mem, time=args.slurm_time, n_cpus=args.n_cpus,
        container=container, verbose=int(args.verbose or 0),
    )
    script = args.slurm_script.absolute()
    _check_place(script, job)
    stem = script.name[: -len(".sbatch")] if script.name.endswith(".sbatch") else script.stem
    job = replace(job, settings_file=script.parent / f"{stem}-settings.json")
    save(replace(settings, participants=None), job.settings_file)
    return write_slurm_scripts(script, job)
