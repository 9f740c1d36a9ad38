"""The BIDS-App command line: ``bids-deid bids_dir output_dir participant|group``."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from pathlib import Path

from . import __version__
from .errors import BidsDeidError
from .pseudonym import forget_key_env

log = logging.getLogger("bids_deid")
_MOST = 20  # files listed per participant line


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return n


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bids-deid",
        description="De-identify a BIDS dataset (or raw DICOM/twix) into a shareable, validated BIDS dataset.",
        epilog="Run 'participant' (per subject, may run as parallel jobs) then 'group' (dataset files, "
        "validation, leak audit, report). Keep the key and the private dir; never upload them.",
    )
    p.add_argument("bids_dir", type=Path, help="input: a BIDS dataset (or a raw DICOM/twix folder)")
    p.add_argument("output_dir", type=Path, help="public output: the de-identified BIDS dataset")
    p.add_argument("analysis_level", choices=["participant", "group"], help="processing stage")
    p.add_argument("--version", action="version", version=f"bids-deid {__version__}")

    sel = p.add_argument_group("selection")
    sel.add_argument("--participant-label", "--participant_label", nargs="+", dest="participant_label",
                     metavar="LABEL", help="subject labels to process (with or without 'sub-'); default: all")
    sel.add_argument("--session-label", "--session_label", nargs="+", dest="session_label", metavar="LABEL",
                     help="session labels to process (with or without 'ses-'); default: all")
    sel.add_argument("--input-type", choices=["auto", "bids", "raw"], default="auto",
                     help="input kind; 'auto' detects raw DICOM/twix by content (default)")

    deid = p.add_argument_group("de-identification")
    deid.add_argument("--profile", default="basic", metavar="NAME|PATH",
                      help="a shipped profile name or a YAML file (default: basic)")
    deid.add_argument("--key-file", type=Path, metavar="PATH",
                      help="secret key for pseudonyms and date shifts (or set $BIDS_DEID_KEY)")
    deid.add_argument("--generate-key", type=Path, metavar="PATH",
                      help="write a new random key file (mode 0600) and exit")
    deid.add_argument("--deface-method", choices=["template", "skullstrip", "none"], default=None,
                      help="how anatomical images lose their face (default: the profile's, 'template')")
    deid.add_argument("--template", metavar="ID|PATH", help="defacing template: TemplateFlow ID or NIfTI path")
    deid.add_argument("--write-defacemask", action="store_true", help="write BIDS *_defacemask.nii.gz files")
    deid.add_argument("--sourcedata", choices=["dicom", "none"], default="dicom",
                      help="write de-identified DICOM to sourcedata/ (default) or none")
    deid.add_argument("--heuristic", type=Path, metavar="PATH|reproin",
                      help="raw input: YAML rules that name series, or 'reproin' for ReproIn series names")
    deid.add_argument("--skip-series-policy", choices=["sourcedata", "drop"], default="sourcedata",
                      help="raw input: MR series without a BIDS name (localizers, derived, unknown) are kept "
                           "de-identified in sourcedata/dicom (default) or dropped (listed in the private report)")
    deid.add_argument("--clean-pixels", action="store_true",
                      help="black out burned-in text (OCR) in DICOM that would be left out as a burned-in risk")

    out = p.add_argument_group("output")
    out.add_argument("--settings", type=Path, metavar="FILE",
                     help="run with the settings saved in FILE (the private dir's run-settings.json, or the "
                          "settings file --slurm-script wrote); options that change outputs come from the file")
    out.add_argument("--private-dir", type=Path, metavar="PATH",
                     help="mapping, audit log, reports (default: OUTPUT_DIR-private, mode 0700)")
    out.add_argument("-w", "--work-dir", type=Path, metavar="PATH", help="scratch space (default: in the private dir)")
    out.add_argument("--dataset-type", choices=["raw", "derivative"], default="raw",
                     help="DatasetType of the output (default: raw)")
    out.add_argument("--license", metavar="ID",
                     help="License of the output dataset, e.g. CC0 (OpenNeuro's default; else the input's)")
    out.add_argument("--authors", nargs="+", metavar="NAME",
                     help="Authors of the output dataset, one argument per author (else the input's)")
    out.add_argument("--bids-validator-config", type=Path, metavar="FILE",
                     help="bids-validator config file (issues to ignore), used for the input and the output")
    out.add_argument("--dry-run", action="store_true", help="print the plan (every file and what is removed)")
    out.add_argument("--skip-bids-validation", "--skip_bids_validator", "--skip-bids-validator",
                     action="store_true", dest="skip_bids_validation", help="do not validate the input")

    perf = p.add_argument_group("performance and logging")
    perf.add_argument("--n-cpus", "--nprocs", "--n_cpus", type=_positive_int, default=1, dest="n_cpus",
                      help="parallel worker processes (default: 1)")
    perf.add_argument("-v", "--verbose", action="count", default=0, help="more log output; tracebacks on error")

    hpc = p.add_argument_group("HPC", "write SLURM scripts (one participant per array task) instead of running")
    hpc.add_argument("--slurm-script", type=Path, metavar="FILE",
                     help="write an sbatch array script (plus participant list, group job, submit driver) and exit")
    hpc.add_argument("--slurm-max-parallel", type=_positive_int, default=8, metavar="N",
                     help="array tasks running at once (default: 8)")
    hpc.add_argument("--slurm-mem", default="8G", metavar="MEM", help="memory per task (default: 8G)")
    hpc.add_argument("--slurm-time", default="04:00:00", metavar="TIME", help="time limit per task (default: 04:00:00)")
    hpc.add_argument("--slurm-container", type=Path, metavar="PATH.sif",
                     help="run bids-deid from this Apptainer image (default: this Python's bids-deid)")
    return p


#: options whose value changes what is written, and the settings field each one sets
_OUTPUT_OPTIONS = {"profile": "profile_sha256", "deface_method": "deface_method", "template": "template",
                   "write_defacemask": "write_defacemask", "sourcedata": "sourcedata", "input_type": "input_type",
                   "heuristic": "heuristic", "skip_series_policy": "skip_series_policy",
                   "clean_pixels": "clean_pixels", "dataset_type": "dataset_type"}


def _settings(args: argparse.Namespace, parser: argparse.ArgumentParser | None = None):
    """The run's settings: from the command line, or from a recorded settings file.

    A group level (or any level with ``--settings``) takes the output-changing settings from
    the record the participant stage wrote; an option on the command line that says otherwise
    is refused in one line.
    """
    from . import settings as st
    from .record import record_path

    out, private, work = st.locations(args.output_dir, args.private_dir, args.work_dir)
    rec = None
    if args.settings is not None:
        rec = st.read(args.settings)
        if args.private_dir is None:
            private = Path(rec["private_dir"])
            work = st.locations(out, private, args.work_dir)[2]
    elif args.analysis_level == "group" and record_path(private).is_file():
        rec = st.read(record_path(private))
    if rec is not None and Path(rec["output_dir"]).resolve() != out.resolve():
        raise st.SettingsError(f"the settings in {args.settings or record_path(private)} are those of the output "
                               f"{rec['output_dir']}, not of {out}; give the matching output or private dir")
    key_file = args.key_file if args.key_file is not None or rec is None or not rec.get("key_file") \
        else Path(rec["key_file"])
    cli = _cli_settings(args, out, private, work, key_file)
    if rec is None:
        return cli
    given = st.to_record(cli)
    parser = parser or build_parser()
    clash = [f"{opt}: {rec.get(field)!s} recorded, {given.get(field)!s} given"
             for dest, field in _OUTPUT_OPTIONS.items()
             if getattr(args, dest) != parser.get_default(dest) and given.get(field) != rec.get(field)
             for opt in [next(o for o in _option_strings(parser, dest) if o.startswith("--"))]]
    if clash:
        where = args.settings or record_path(private)
        raise st.SettingsError(f"these options differ from the recorded settings in {where} ({'; '.join(clash)}); "
                               "leave them out (the recorded ones are used) or use a new output and private dir")
    return st.from_record(
        rec, analysis_level=args.analysis_level, key=cli.key, bids_dir=cli.bids_dir, private_dir=private,
        work_dir=work, participants=cli.participants, n_cpus=args.n_cpus, dry_run=args.dry_run,
        verbose=bool(args.verbose), progress=cli.progress, key_file=key_file,
        skip_validation=args.skip_bids_validation or bool(rec.get("skip_validation")),
        sessions=cli.sessions if args.session_label else (tuple(rec["sessions"]) if rec.get("sessions") else None),
        license=args.license or rec.get("license"),
        bids_validator_config=cli.bids_validator_config or (
            Path(rec["bids_validator_config"]) if rec.get("bids_validator_config") else None),
        authors=tuple(args.authors) if args.authors else (tuple(rec["authors"]) if rec.get("authors") else None),
    )


def _option_strings(parser: argparse.ArgumentParser, dest: str) -> list[str]:
    return next(a.option_strings for a in parser._actions if a.dest == dest)


def _cli_settings(args: argparse.Namespace, out: Path, private: Path, work: Path, key_file: Path | None):
    from .dataset import normalise_labels
    from .profiles import load_profile
    from .pseudonym import check_key_place, load_key
    from .settings import Settings

    if key_file is not None:
        check_key_place(key_file, {"input": args.bids_dir, "public output": out})
    profile = load_profile(args.profile)
    key = load_key(key_file)
    spec = args.profile
    if Path(spec).suffix in (".yaml", ".yml") or Path(spec).exists() or "/" in spec:
        spec = str(Path(spec).absolute())
    template = args.template
    if template and Path(template).exists():
        template = str(Path(template).absolute())
    heuristic = args.heuristic
    if heuristic is not None and str(heuristic).lower() != "reproin":
        heuristic = heuristic.absolute()
    return Settings(
        bids_dir=args.bids_dir.absolute(), output_dir=out, private_dir=private, work_dir=work,
        analysis_level=args.analysis_level, profile=profile, key=key,
        participants=normalise_labels(args.participant_label, "sub-"),
        sessions=normalise_labels(args.session_label, "ses-"), n_cpus=args.n_cpus,
        skip_validation=args.skip_bids_validation, dataset_type=args.dataset_type, dry_run=args.dry_run,
        verbose=bool(args.verbose), deface_method=args.deface_method or profile.deface_method,
        template=template, write_defacemask=args.write_defacemask, sourcedata=args.sourcedata,
        input_type=args.input_type, heuristic=heuristic,
        skip_series_policy=args.skip_series_policy, progress=sys.stderr.isatty(),
        clean_pixels=args.clean_pixels, license=args.license,
        authors=tuple(args.authors) if args.authors else None,
        profile_spec=spec, key_file=key_file.absolute() if key_file is not None else None,
        bids_validator_config=args.bids_validator_config.absolute() if args.bids_validator_config else None,
    )


#: options that do not belong in the command printed for the other level
_NOT_REPEATED = {"participant_label", "dry_run", "generate_key", "slurm_script", "slurm_max_parallel", "slurm_mem",
                 "slurm_time", "slurm_container", "help", "version"}


def level_command(parser: argparse.ArgumentParser, args: argparse.Namespace, level: str) -> str:
    """The complete, copy-pasteable command for ``level`` with every option this run was given."""
    parts = ["bids-deid", str(args.bids_dir), str(args.output_dir), level]
    for action in parser._actions:
        if not action.option_strings or action.dest in _NOT_REPEATED:
            continue
        value = getattr(args, action.dest, None)
        if value is None or value is False or value == action.default:
            continue
        opt = next((o for o in action.option_strings if o.startswith("--")), action.option_strings[0])
        if isinstance(action, argparse._CountAction):
            parts += ["-" + "v" * value] if opt == "--verbose" else [opt] * value
        elif action.nargs == 0:
            parts.append(opt)
        elif isinstance(value, list | tuple):
            parts += [opt, *map(str, value)]
        else:
            parts += [opt, str(value)]
    return shlex.join(parts)


def _key_note(args: argparse.Namespace) -> str:
    return " (with the same $BIDS_DEID_KEY set)" if args.key_file is None else ""


def check_output_dir(s, args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Refuse at once a non-empty output that bids-deid did not write, and a group level before any participant."""
    from .errors import OutputError

    out, private = s.output_dir, s.private_dir
    # dot entries (.git/.datalad of an empty dataset, leftover temp files) do not make a folder foreign
    entries = sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) if out.is_dir() else []
    ours = (private / "key-fingerprint").is_file() or _generated_by_us(out / "dataset_description.json")
    if entries and not ours:
        shown = ", ".join(entries[:5]) + (" ..." if len(entries) > 5 else "")
        raise OutputError(f"{out} is not empty ({shown}) and was not written by bids-deid with the private dir "
                          f"{private}; give a new or empty output folder (or the --private-dir of the run "
                          "that wrote it)")
    if s.analysis_level != "group":
        return
    # a subject whose every file was withheld has no folder in the output, but its record
    has_subjects = any(out.glob("sub-*")) or any(out.glob("sourcedata/*/sub-*")) or any(
        (private / "state").glob("sub-*.json"))
    if not any(p.is_dir() for p in s.bids_dir.glob("sub-*")) and (s.bids_dir / "dataset_description.json").is_file():
        return  # a dataset without subjects (atlas, templates): all of it is dataset level
    if not has_subjects:
        raise OutputError(f"no participant has been processed into {out} yet; run the participant level first: "
                          f"{level_command(parser, args, 'participant')}{_key_note(args)}")
    if not any((private / "state").glob("sub-*.json")):
        raise OutputError(f"the private dir {private} holds no participant record for {out}; pass the "
                          "--private-dir that the participant level used")


def _generated_by_us(dd: Path) -> bool:
    import json

    try:
        gen = json.loads(dd.read_text(encoding="utf-8")).get("GeneratedBy") or []
    except (OSError, ValueError, AttributeError):
        return False
    return any(isinstance(g, dict) and g.get("Name") == "bids-deid" for g in gen)


def _print_result(level: str, result: dict, s, next_command: str = "", key_note: str = "") -> int:
    if s.dry_run:
        if "audit_plan" in result:
            plan = result["audit_plan"]
            print("the leak audit would search, by class (values stay in the private dir):")
            for cls, n in plan["by_class"].items():
                print(f"  {n:6d}  {cls}")
            print("not searched, by reason (named in leak-audit.json after the run):")
            for why, n in plan["not_searched"].items():
                print(f"  {n:6d}  {why}")
        for r in result.get("participants", []):
            print("planned conversion of the raw input:" if r["original"] == "(raw input)"
                  else f"sub-{r['original']} -> sub-{r['subject']}")
            for line in r["plan"]:
                print(line)
        return 0
    if level == "participant":
        for r in result["participants"]:
            counts = ", ".join(f"{v} {k}" for k, v in sorted(r["counts"].items()))
            print(f"sub-{r['subject']}: {counts}")
            held = r.get("not_written", [])
            for rel, status, reason in held[:_MOST]:
                print(f"  {status}: {rel}: {reason or 'no reason recorded'}")
            if len(held) > _MOST:
                print(f"  ... and {len(held) - _MOST} more (see report.html after the group level)")
        print(f"participant level done; when every participant is done, run{key_note}:\n  {next_command}")
        return 0
    v, a = result["validation"], result["audit"]
    print(f"validator: {v['errors']} errors, {v['warnings']} warnings; "
          f"leak audit: {a['hits']} hits in {a['files']} files ({a['checked_values']} values searched"
          + (f", {a['accepted']} accepted after review" if a.get("accepted") else "")
          + (f", {a['review']} free-text strings to review" if a.get("review") else "") + ")")
    for line in a.get("open", []):
        print(line)
    print(f"report: {result['report']}")
    for line in result.get("openneuro", []):
        print(f"OpenNeuro: {line}")
    if a["hits"]:
        from .errors import LeakError

        raise LeakError(f"leak audit found {a['hits']} identifier(s) in the output; see {s.private_dir}/leak-audit.json")
    if v["errors"]:
        from .errors import ValidationError

        raise ValidationError(
            f"the output has {v['errors']} BIDS validator error(s); see {s.private_dir}/validator-output.json"
        )
    affirm = "--affirmConsent" if s.deface_method == "none" else "--affirmDefaced"
    print(f"ready to share: {s.output_dir} (upload steps: docs/openneuro.md, e.g. "
          f"openneuro upload {affirm} {shlex.quote(str(s.output_dir))})")
    return 0


def _container_hint(exc: BaseException | None) -> str:
    """Inside the image a permission error usually means the container's user is not the files' owner."""
    if not isinstance(exc, PermissionError) or not os.environ.get("BIDS_DEID_CONTAINER_TAG"):
        return ""
    return (f" (the container runs as uid {os.getuid()}, not as the owner of your files: add "
            "-u \"$(id -u):$(id -g)\" to docker run; see docs/container.md)")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``bids-deid``; returns the process exit code."""
    if argv is None:  # the program itself, not a caller of main(): at exit, no last garbage collection
        import atexit  # over every imported module's objects (~0.05 s of each run; the OS frees it all)
        import gc

        atexit.register(gc.freeze)
    argv = sys.argv[1:] if argv is None else list(argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--generate-key", type=Path)
    pre.add_argument("folders", nargs="*", type=Path)
    early, _ = pre.parse_known_args(argv)
    if early.generate_key and not any(a in ("-h", "--help") for a in argv):
        from .pseudonym import check_key_place, generate_key

        try:  # with BIDS_DIR OUTPUT_DIR given too, the new key goes in neither
            check_key_place(early.generate_key, dict(zip(("input", "public output"), early.folders[:2], strict=False)))
            path = generate_key(early.generate_key)
        except (BidsDeidError, OSError) as exc:
            print(f"bids-deid: error: {exc}", file=sys.stderr)
            return 1
        print(f"wrote a new key to {path} (mode 0600); keep it private and safe: it links pseudonyms to people")
        return 0
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose > 1 else logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.slurm_script:
            from .hpc import write_from_args

            files = write_from_args(args, _settings(args, parser))
            print(f"wrote {files.array_script} (+ participant list, group job); submit both with: "
                  f"bash {files.submit_script}")
            return 0
        s = _settings(args, parser)
        forget_key_env()  # child processes (validator, dcm2niix, ...) must not inherit the key
        if not s.dry_run:
            check_output_dir(s, args, parser)
        from .raw_participant import prestart

        prestart(s)  # raw input: dcm2niix starts now, converting while the rest is imported
        from .pipeline import run

        return _print_result(args.analysis_level, run(s), s,
                             level_command(parser, args, "group"), _key_note(args))
    except BidsDeidError as exc:
        if args.verbose:
            log.exception("failed")
        print(f"bids-deid: error: {exc}{_container_hint(exc.__cause__)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("bids-deid: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except OSError as exc:
        if args.verbose:
            log.exception("failed")
        print(f"bids-deid: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": ") + _container_hint(exc),
              file=sys.stderr)
        return 1
    except Exception as exc:  # a bug: still one line, the traceback with --verbose
        if args.verbose:
            log.exception("internal error")
        print(f"bids-deid: error: internal error ({exc.__class__.__name__}: {exc}); rerun with --verbose "
              "for details and please report it", file=sys.stderr)
        return 70


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
