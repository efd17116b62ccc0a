"""kwb series list|show|diff|export|concerns — what a list archive holds for a patch series."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from harness.core.errors import UserError
from harness.series import concerns
from harness.series.bodies import summary
from harness.series.export import export_revision
from harness.series.loader import LoadResult, find_family, load_series
from harness.series.model import Family, Revision
from harness.series.remarks import load_remarks
from harness.series.revdiff import diff_revisions
from harness.sources import mailsource


def _load(args: argparse.Namespace) -> LoadResult:
    # no --source: the shared archive, else lore; offline it fails fast
    loaded = load_series(mailsource.require(args.source, lambda line: print(line, file=sys.stderr)))
    for warning in loaded.warnings:
        print(f"kwb: warning: {warning}", file=sys.stderr)
    return loaded


def _family(args: argparse.Namespace, loaded: LoadResult) -> Family:
    return find_family(loaded.families, getattr(args, "series", None))


def _write_json(data: Any) -> None:
    """``print(json.dumps(data, indent=2, default=str))``, written a few thousand chunks at a time: dumps
    holds every chunk in a list first (indented JSON is encoded in Python, ~240k strings for a whole
    archive's listing: a tenth of a repeat listing's peak memory), json.dump writes each on its own
    (a second of a repeat listing's time)."""
    batch: list[str] = []
    for chunk in json.JSONEncoder(indent=2, default=str).iterencode(data):
        batch.append(chunk)
        if len(batch) == 4096:
            sys.stdout.write("".join(batch))
            batch.clear()
    sys.stdout.write("".join(batch) + "\n")


def _emit(args: argparse.Namespace, data: Any, text: str, loaded: LoadResult | None = None) -> int:
    if args.json:
        _write_json(data)
    else:
        print(text.rstrip("\n"))
    for warning in loaded.late_warnings() if loaded is not None else []:
        print(f"kwb: warning: {warning}", file=sys.stderr)
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    loaded = _load(args)
    series = [{"index": i + 1, "name": f.name, "first_date": f.first_date, "notes": f.notes,
               "revisions": [r.summary() for r in f.revisions]} for i, f in enumerate(loaded.families)]
    index = f"; {loaded.index_note}" if loaded.index_note else ""
    lines = [f"{loaded.message_count} messages, {len(series)} series ({loaded.kind}: {loaded.source}{index})"]
    for i, fam in enumerate(loaded.families):
        lines.append(f"#{i + 1} {fam.name}")
        lines.extend(f"    note: {n}" for n in fam.notes)
        for r in fam.revisions:
            cover = f" cover <{r.cover.message_id}>" if r.cover else ""
            lines.append(f"    v{r.version} ({r.label}{', RFC' if r.rfc else ''}): {len(r.patches)}/"
                         f"{r.expected} patches{cover}")
            lines.extend(f"        warning: {w}" for w in r.warnings)
    data = {"source": loaded.source, "kind": loaded.kind, "messages": loaded.message_count,
            "index": loaded.index_note, "warnings": loaded.warnings, "series": series}
    return _emit(args, data, "\n".join(lines), loaded)


def _revision_text(rev: Revision) -> str:
    lines = [f"v{rev.version} ({rev.label}{', RFC' if rev.rfc else ''}) {len(rev.patches)}/{rev.expected} "
             f"patches, cover <{rev.cover.message_id if rev.cover else '-'}>"]
    lines.extend(f"  warning: {w}" for w in rev.warnings)
    for review in rev.cover_reviews:
        lines.append(f"  0/{rev.expected} reply from {review.reviewer}"
                     f"{' [fix-up diff]' if review.fixup_diff else ''}: {_first_line(review.text)}")
    for p in rev.patches:
        lines.append(f"  {p.number:02d}/{p.total} {p.subject}")
        lines.extend(f"        {name}: {value}" for name, value in p.trailers if name != "Signed-off-by")
        for review in p.reviews:
            fixup = " [fix-up diff]" if review.fixup_diff else ""
            lines.append(f"        reply from {review.reviewer}{fixup}: {_first_line(review.text)}")
    return "\n".join(lines)


def _first_line(text: str) -> str:
    return summary(text)


def _cmd_show(args: argparse.Namespace) -> int:
    loaded = _load(args)
    fam = _family(args, loaded)
    revs = [fam.revision(args.revision)] if args.revision is not None else fam.revisions
    data = {"name": fam.name, "notes": fam.notes, "revisions": [
        {**r.summary(), "patches": [p.to_dict(full=args.full) for p in r.patches],
         "cover_reviews": [rv.to_dict() for rv in r.cover_reviews]} for r in revs]}
    text = f"{fam.name}\n" + "".join(f"note: {n}\n" for n in fam.notes) + "\n".join(
        _revision_text(r) for r in revs)
    return _emit(args, data, text, loaded)


def _cmd_diff(args: argparse.Namespace) -> int:
    loaded = _load(args)
    fam = _family(args, loaded)
    old, new = fam.revision(args.old), fam.revision(args.new)
    changes = diff_revisions(old, new)
    counts = {s: sum(c.status == s for c in changes)
              for s in ("unchanged", "message-changed", "changed", "new", "dropped")}
    data = {"name": fam.name, "old": old.version, "new": new.version,
            "changes": [c.to_dict() for c in changes], "counts": counts}
    lines = [f"{fam.name}: v{old.version} → v{new.version}"]
    for c in changes:
        where = f"{c.old or '-'}→{c.new or '-'}"
        also = " (commit message changed too)" if c.message_changed and c.status == "changed" else ""
        lines.append(f"  {c.status:15} {where:7} {c.subject}{also}")
    lines.append("  " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    if args.interdiff:
        lines.extend(c.message_diff + c.interdiff for c in changes if c.interdiff or c.message_diff)
    return _emit(args, data, "\n".join(lines), loaded)


def _cmd_export(args: argparse.Namespace) -> int:
    loaded = _load(args)
    fam = _family(args, loaded)
    rev = fam.revision(args.revision)
    out = export_revision(rev, Path(args.output))
    data = {"name": fam.name, "version": rev.version, "output": str(out), "patches": len(rev.patches),
            "warnings": rev.warnings}
    return _emit(args, data, f"wrote {len(rev.patches)} patches of v{rev.version} to {out}", loaded)


def _cmd_concerns(args: argparse.Namespace) -> int:
    loaded = _load(args)
    fam = _family(args, loaded)
    statuses = concerns.evaluate_family(concerns.load_catalogue(), fam)
    records = [s.to_dict() for s in statuses]
    remarks = [r.to_dict() for r in load_remarks()]
    lines = [f"{fam.name}: {len(records)} concern statuses"]
    lines.extend(f"  v{r['version']} {r['concern_id']:32} {r['status']:15} "
                 f"{('#' + str(r['patch'])) if r['patch'] else '':4} {r['evidence'][:80]}" for r in records)
    lines.append(f"process remarks ({len(remarks)}):")
    lines.extend(f"  v{r['raised_on']} {r['id']:32} {r['title']} <{r['message_id']}>" for r in remarks)
    return _emit(args, {"name": fam.name, "concerns": records, "process": remarks}, "\n".join(lines),
                 loaded)


def _version(text: str) -> int:
    try:
        return int(text.lstrip("vV"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a revision number: {text!r}") from None


def _common(p: argparse.ArgumentParser, *, series: bool = True) -> None:
    p.add_argument("--source", metavar="PATH|MSGID",
                   help="mbox/mboxrd, Maildir, public-inbox v2 dir, saved lore thread view, or a message-id "
                        "(default: the shared archive beside the checkout, else the series' threads from "
                        "lore; offline with neither: an error within seconds)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    if series:
        p.add_argument("--series", metavar="NAME|N",
                       help="which series (default: the one the profile's series.toml names)")


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Register `kwb series …`."""
    group = sub.add_parser("series", help="series in a list archive: revisions, reviews, diffs, export")
    verbs = group.add_subparsers(dest="verb", metavar="VERB", parser_class=type(group))
    group.set_defaults(func=lambda a: _usage(group))
    p = verbs.add_parser("list", help="every series with its revisions")
    _common(p, series=False)
    p.set_defaults(func=_cmd_list)
    p = verbs.add_parser("show", help="patches, trailers and review replies of a series")
    _common(p)
    p.add_argument("--revision", type=_version, help="one revision only")
    p.add_argument("--full", action="store_true", help="with diffs and full review texts (JSON)")
    p.set_defaults(func=_cmd_show)
    p = verbs.add_parser("diff", help="per-patch changes between two revisions")
    _common(p)
    p.add_argument("old", type=_version)
    p.add_argument("new", type=_version)
    p.add_argument("--interdiff", action="store_true", help="print the diff of diffs of changed patches")
    p.set_defaults(func=_cmd_diff)
    p = verbs.add_parser("export", help="am-ready mbox of one revision (b4 am, trailers from replies)")
    _common(p)
    p.add_argument("--revision", type=_version, required=True)
    p.add_argument("-o", "--output", required=True, help="mbox file to write")
    p.set_defaults(func=_cmd_export)
    p = verbs.add_parser("concerns", help="review concerns per revision: present / addressed / n/a")
    _common(p)
    p.set_defaults(func=_cmd_concerns)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    raise UserError("kwb series needs a verb: list, show, diff, export or concerns")
