"""`backchain resume`: list, re-run or dismiss interrupted jobs, and warn about them elsewhere."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from backchain.cli.terminal import TerminalSink
from backchain.engines.progress import CancelToken

if TYPE_CHECKING:
    from backchain.engines import journal


def add_parser(sub: Any) -> None:
    """Add the ``resume`` sub-command to the CLI's sub-parsers."""
    parser = sub.add_parser(
        "resume",
        help="list interrupted commits, run the rest of one, or dismiss it",
        description="Without ID: list unfinished jobs. With ID: check the files and run the "
        "steps that did not complete.",
    )
    parser.add_argument("job", metavar="ID", nargs="?", help="the job (a unique prefix will do)")
    parser.add_argument("--dismiss", action="store_true", help="forget the job; change nothing")
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    parser.add_argument("--json", action="store_true", help="print JSON")


def job_json(record: journal.JobRecord) -> dict[str, Any]:
    """One unfinished job, for --json output."""
    from backchain.engines import journal

    return {
        "id": record.id,
        "message": journal.describe(record),
        "started": record.document.get("started"),
        "done_steps": record.done,
        "steps": len(record.plan.steps),
        "percent": record.percent(),
        "error": record.error,
        "plan": record.document.get("plan"),
    }


def warn_unfinished(paths: Iterable[str]) -> list[dict[str, Any]]:
    """Print a notice for each unfinished job touching ``paths`` to stderr; return them."""
    from backchain.engines import journal

    records = journal.unfinished_jobs(paths)
    for record in records:
        print(
            f"backchain: {journal.describe(record)}\n"
            f"  re-run: backchain resume {record.id}\n"
            f"  dismiss: backchain resume --dismiss {record.id}",
            file=sys.stderr,
        )
    return [job_json(r) for r in records]


def cmd_resume(args: argparse.Namespace) -> int:
    """``backchain resume [--dismiss] [ID]``."""
    from backchain.engines import journal

    if not args.job:
        records = journal.unfinished_jobs()
        if args.json:
            print(json.dumps([job_json(r) for r in records], indent=2))
        for record in records if not args.json else []:
            print(f"{record.id}: {journal.describe(record)}")
        if not records and not args.json:
            print("No unfinished jobs.")
        return 0
    record = journal.find_job(args.job)
    if args.dismiss:
        journal.dismiss(record)
        print(f"Dismissed {record.id}; no file was changed.")
        return 0
    print(journal.describe(record))
    if not args.yes:
        sys.stdout.write("Run the remaining steps? [y/N] ")
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            print("Nothing was changed.", file=sys.stderr)
            return 2
    return _run(record, args.json)


def _run(record: journal.JobRecord, as_json: bool) -> int:
    from backchain.engines.runner import resume_job

    cancel = CancelToken()
    sink = TerminalSink(enabled=sys.stderr.isatty() and not as_json)
    failure: list[BaseException] = []

    def work() -> None:
        try:
            resume_job(record, sink, cancel)
        except BaseException as err:  # re-raised below, on the main thread
            failure.append(err)

    worker = threading.Thread(target=work, name="backchain-resume")
    worker.start()
    while worker.is_alive():
        try:
            worker.join(0.2)
        except KeyboardInterrupt:
            cancel.cancel()
    if failure:
        raise failure[0]
    if as_json:
        print(json.dumps({"ok": True, "id": record.id, "message": sink.message}, indent=2))
    else:
        print(sink.message)
    return 0
