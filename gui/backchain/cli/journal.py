"""`backchain resume`: list, re-run or dismiss interrupted jobs, and warn about them elsewhere."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from typing import Any

from backchain.cli.output import ask, nothing_changed
from backchain.cli.progress import run_cancellable
from backchain.cli.terminal import TerminalSink
from backchain.engines import journal
from backchain.engines.progress import CancelToken


def job_json(record: journal.JobRecord) -> dict[str, Any]:
    """One unfinished job, for --json output."""
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
    if not args.yes and not ask("Run the remaining steps?"):
        return nothing_changed()
    return _run(record, args.json)


def _run(record: journal.JobRecord, as_json: bool) -> int:
    from backchain.engines.runner import resume_job

    cancel = CancelToken()
    # The record keeps the request's pivot/keep choice, so a resumed active commit never asks.
    sink = TerminalSink(enabled=sys.stderr.isatty() and not as_json,
                        on_ready=record.plan.request.on_ready)  # fmt: skip
    run_cancellable(lambda: resume_job(record, sink, cancel), cancel, "backchain-resume")
    if as_json:
        print(json.dumps({"ok": True, "id": record.id, "message": sink.message}, indent=2))
    else:
        print(sink.message)
    return 0
