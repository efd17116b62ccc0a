"""Apply engine: a revision (mbox) or a list of patch files onto a tree's base, on a dedicated branch.

``git am -3`` does the work; kwb adds what a developer needs around it: a failure names the patch number,
subject, files and the hunks that do not apply, and ``git am --abort`` leaves no half-applied state; the
same base + patches reuse the branch (its key is kept in git config); a series whose patch-ids are
already in the base's history is detected and said; ``per_patch_build`` builds after every patch and
names the first patch that breaks the build. Commits get a fixed committer so ids are reproducible.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from email.message import EmailMessage
from pathlib import Path

from harness.core.errors import InfraError, UserError
from harness.core.run import run
from harness.kernel import conflict
from harness.kernel.tree import Tree, branch_commit, git, locked, rev_parse

Progress = Callable[[str], None]
PatchBuild = Callable[[int], None]  # called after patch N (1-based) is applied; raises on failure

_COMMITTER = {"GIT_COMMITTER_NAME": "kwb", "GIT_COMMITTER_EMAIL": "kwb@localhost"}
_PLAIN_AUTHOR = {"GIT_AUTHOR_NAME": "kwb", "GIT_AUTHOR_EMAIL": "kwb@localhost",
                 "GIT_AUTHOR_DATE": "2025-01-01T00:00:00+0000",
                 "GIT_COMMITTER_DATE": "2025-01-01T00:00:00+0000", **_COMMITTER}
_HUNK = re.compile(r"^@@ -(\d+)(?:,\d+)? \+\d+(?:,\d+)? @@.*$", re.M)
_PREFIX = re.compile(r"^\s*(\[[^\]]*\]\s*)+")
RANGE_LIMIT = 2000  # commits of base..HEAD scanned for already-applied patch-ids


@dataclass
class PatchInfo:
    """One patch to apply: its own file (a single mail or a plain diff) and what it touches."""

    number: int
    total: int
    subject: str
    path: Path
    files: list[str]
    is_mail: bool


@dataclass
class ApplyResult:
    """What an apply did."""

    branch: str
    base: str
    head: str
    patches: int
    reused: bool = False
    already_applied: bool = False
    message: str = ""
    built: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly form."""
        return asdict(self)


class ApplyError(UserError):
    """A patch does not apply (or breaks the build); ``details`` holds the structured report."""

    def __init__(self, message: str, details: dict[str, object]) -> None:
        super().__init__(message)
        self.details = details


def _diff_files(diff: str) -> list[str]:
    files = re.findall(r"^diff --git a/(\S+) b/", diff, re.M)
    return list(dict.fromkeys(files))


def _parse_mail(raw: bytes) -> tuple[str, str]:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    subject = _PREFIX.sub("", " ".join(str(msg.get("Subject", "")).split()))
    part = msg.get_body(preferencelist=("plain",)) if msg.is_multipart() else msg
    body = part.get_content() if part is not None else ""
    return subject, body if isinstance(body, str) else ""


def _is_mail(text: str) -> bool:
    head = text.split("\ndiff --git", 1)[0]
    return text.startswith("From ") or re.search(r"^Subject:", head, re.M) is not None


def split_patches(paths: Sequence[Path], workdir: Path) -> list[PatchInfo]:
    """One file per patch (mboxes split with ``git mailsplit``), in order, with subjects and files."""
    singles: list[tuple[Path, bool]] = []
    for i, path in enumerate(paths):
        if not path.is_file():
            raise UserError(f"patch file not found: {path}")
        text = path.read_text(encoding="utf-8", errors="replace")
        if not _is_mail(text):
            singles.append((path, False))
            continue
        out = workdir / f"split-{i:03d}"
        out.mkdir(parents=True)
        rd = ["--mboxrd"] if text.startswith("From mboxrd@z ") else []  # b4 writes mboxrd
        res = run(["git", "mailsplit", "--keep-cr", *rd, f"-o{out}", str(path)], timeout=120)
        if not res.ok:
            raise UserError(f"{path}: not a readable mbox: {res.tail(1).strip()}")
        singles += [(p, True) for p in sorted(out.iterdir())]
    infos = []
    for n, (path, is_mail) in enumerate(singles, 1):
        text = path.read_text(encoding="utf-8", errors="replace")
        subject, body = _parse_mail(path.read_bytes()) if is_mail else (path.name, text)
        files = _diff_files(body)
        if not files:
            raise UserError(f"patch {n} ({subject or path.name}) contains no diff")
        infos.append(PatchInfo(n, len(singles), subject or path.name, path, files, is_mail))
    return infos


def apply_key(base: str, patches: Sequence[Path]) -> str:
    """Identity of an apply: base commit + the patch files' bytes, in order."""
    digest = hashlib.sha256(base.encode())
    for p in patches:
        digest.update(b"\0" + p.read_bytes())
    return digest.hexdigest()


def _stored_key(tree: Tree, branch: str) -> str:
    res = git(tree.path, "config", "--get", f"branch.{branch}.kwbkey", check=False, timeout=30)
    return res.stdout.strip() if res.ok else ""


def _am_in_progress(tree: Tree) -> bool:
    res = git(tree.path, "rev-parse", "--git-path", "rebase-apply", check=False, timeout=30)
    path = Path(res.stdout.strip())
    if not path.is_absolute():
        path = tree.path / path
    return path.is_dir()


def abort_am(tree: Tree) -> None:
    """Abort an unfinished ``git am`` (ours, from an interrupted run) so the tree is clean."""
    if _am_in_progress(tree):
        git(tree.path, "am", "--abort", check=False, timeout=120)


def patch_id(diff: str) -> str:
    """``git patch-id --stable`` of a diff text ('' when git sees no patch)."""
    res = run(["git", "patch-id", "--stable"], timeout=60, input=diff)
    return res.stdout.split()[0] if res.ok and res.stdout.strip() else ""


def applied_patch_ids(repo: Path, base: str, head: str) -> dict[str, str]:
    """patch-id → commit for the commits in ``base..head`` (bounded to RANGE_LIMIT commits)."""
    log = git(repo, "log", "-p", "--no-merges", f"-n{RANGE_LIMIT}", "--format=commit %H",
              f"{base}..{head}", check=False, timeout=300)
    if not log.ok or not log.stdout.strip():
        return {}
    res = run(["git", "patch-id", "--stable"], timeout=300, input=log.stdout)
    return {pid: commit for pid, commit in (ln.split() for ln in res.stdout.splitlines() if ln.strip())}


def already_applied(tree: Tree, infos: Sequence[PatchInfo], head: str) -> list[str]:
    """Commits in base..head carrying every patch's patch-id (empty unless all are present)."""
    if not infos or head == tree.base:
        return []
    present = applied_patch_ids(tree.path, tree.base, head)
    found = []
    for info in infos:
        text = info.path.read_text(encoding="utf-8", errors="replace")
        body = _parse_mail(info.path.read_bytes())[1] if info.is_mail else text
        commit = present.get(patch_id(body))
        if commit is None:
            return []
        found.append(commit)
    return found


def _hunks(diff: str) -> list[tuple[str, str, str]]:
    """(file, hunk header, single-hunk patch) for every hunk of a diff."""
    out = []
    for block in re.split(r"(?=^diff --git )", diff, flags=re.M):
        if not block.startswith("diff --git"):
            continue
        m = re.match(r"diff --git a/(\S+) b/", block)
        name = m.group(1) if m else "?"
        starts = [h.start() for h in _HUNK.finditer(block)]
        if not starts:
            continue
        header = block[: starts[0]]
        for i, start in enumerate(starts):
            end = starts[i + 1] if i + 1 < len(starts) else len(block)
            hunk = block[start:end]
            out.append((name, hunk.splitlines()[0], header + hunk))
    return out


def _strip_signature(diff: str) -> str:
    """Drop format-patch's trailing ``-- \n<git version>`` (with --recount it would read as a deletion)."""
    marks = list(re.finditer(r"^-- \n", diff, re.M))
    if marks:
        tail = diff[marks[-1].end():]
        if len([ln for ln in tail.splitlines() if ln.strip()]) <= 2 and "@@" not in tail:
            return diff[: marks[-1].start()]
    return diff


def patch_diff(info: PatchInfo) -> str:
    """The diff part of a patch file (mail body or plain diff), without format-patch's signature."""
    text = info.path.read_text(encoding="utf-8", errors="replace")
    diff = _parse_mail(info.path.read_bytes())[1] if info.is_mail else text
    return _strip_signature(diff[diff.find("diff --git"):] if "diff --git" in diff else diff)


def _failed(tree: Tree, info: PatchInfo) -> list[tuple[str, str, str]]:
    """(file, header, single-hunk patch) of every hunk that does not apply to the checked-out tree."""
    failed = []
    for name, header, single in _hunks(patch_diff(info)):
        res = git(tree.path, "apply", "--check", "--recount", "-", input=single, check=False, timeout=60)
        if not res.ok:
            failed.append((name, header, single))
    return failed


def failed_hunks(tree: Tree, info: PatchInfo) -> list[str]:
    """``file: @@ header`` for every hunk of ``info`` that does not apply to the checked-out tree."""
    return [f"{name}: {header}" for name, header, _single in _failed(tree, info)]


def _reverse_applies(tree: Tree, info: PatchInfo) -> bool:
    res = git(tree.path, "apply", "--check", "--reverse", str(info.path), check=False, timeout=60)
    return res.ok


def _am_failure(tree: Tree, infos: Sequence[PatchInfo], offset: int, output: str) -> ApplyError:
    """Build the error for a failed ``git am``, then abort it."""
    next_file = Path(git(tree.path, "rev-parse", "--git-path", "rebase-apply/next",
                         timeout=30).stdout.strip())
    if not next_file.is_absolute():
        next_file = tree.path / next_file
    index = int(next_file.read_text().strip()) if next_file.is_file() else 1
    info = infos[min(offset + index - 1, len(infos) - 1)]
    # Judge the failing patch against the tree with its predecessors applied (HEAD), not the base:
    # drop the conflicted 3-way state first, then let `git am --abort` restore the original HEAD.
    git(tree.path, "read-tree", "--reset", "-u", "HEAD", check=False, timeout=300)
    error = _patch_error(tree, info, output, infos)
    abort_am(tree)
    return error


def _patch_error(tree: Tree, info: PatchInfo, output: str,
                 infos: Sequence[PatchInfo] = ()) -> ApplyError:
    failed = _failed(tree, info)
    hunks = [f"{name}: {header}" for name, header, _single in failed]
    already = _reverse_applies(tree, info)
    what = "is already applied in the base" if already else "does not apply"
    details: dict[str, object] = {"patch": info.number, "total": info.total, "subject": info.subject,
                                  "files": info.files, "failed_hunks": hunks,
                                  "git_output": output.strip().splitlines()[-8:]}
    hunk_text = "; ".join(hunks[:6]) + (f" (+{len(hunks) - 6} more)" if len(hunks) > 6 else "")
    message = (f"patch {info.number}/{info.total} \"{info.subject}\" {what}: files "
               f"{', '.join(info.files)}" + (f"; failed hunks: {hunk_text}" if hunks else ""))
    if not already:
        report = _conflict_report(tree, info, failed, infos or [info])
        details["conflict"] = report.to_dict()
        message += " | " + report.summary()
    return ApplyError(message, details)


def _conflict_report(tree: Tree, info: PatchInfo, failed: list[tuple[str, str, str]],
                     infos: Sequence[PatchInfo]) -> conflict.ConflictReport:
    """What the tree has instead of each failed hunk, who put it there, and the base the series wants."""
    hunks = [conflict.explain_hunk(tree.path, name, header, single) for name, header, single in failed]
    mails = [i.path for i in infos if i.is_mail]
    base = conflict.guess_base(tree.path, mails, [patch_diff(i) for i in infos], tree.base)
    return conflict.ConflictReport(info.number, info.total, info.subject, hunks, base)


def _apply_one_plain(tree: Tree, info: PatchInfo) -> None:
    res = git(tree.path, "apply", "--index", str(info.path), check=False, timeout=120)
    if not res.ok:
        raise _patch_error(tree, info, res.stderr)
    git(tree.path, "commit", "-q", "--no-verify", "-m", f"kwb: {info.path.name}", env=_PLAIN_AUTHOR)


def _am(tree: Tree, infos: Sequence[PatchInfo], offset: int) -> None:
    mails = [str(i.path) for i in infos]
    res = git(tree.path, "am", "-3", "--keep-cr", "--committer-date-is-author-date", *mails,
              check=False, timeout=600, env=_COMMITTER)
    if not res.ok:
        raise _am_failure(tree, infos, offset, res.stdout + res.stderr)


def _apply_all(tree: Tree, infos: Sequence[PatchInfo], build: PatchBuild | None,
               say: Progress) -> list[int]:
    built: list[int] = []
    if build is None and all(i.is_mail for i in infos):
        say(f"git am -3: {len(infos)} patch(es)")
        _am(tree, infos, 0)
        return built
    for i, info in enumerate(infos):
        say(f"applying {info.number}/{info.total}: {info.subject}")
        if info.is_mail:
            _am(tree, [info], i)
        else:
            _apply_one_plain(tree, info)
        if build is not None:
            say(f"building after patch {info.number}/{info.total}")
            try:
                build(info.number)
            except (InfraError, UserError) as exc:
                raise ApplyError(f"patch {info.number}/{info.total} \"{info.subject}\" breaks the build: "
                                 f"{exc}", {"patch": info.number, "total": info.total,
                                            "subject": info.subject, "files": info.files,
                                            "build_error": str(exc)}) from exc
            built.append(info.number)
    return built


def _result(tree: Tree, branch: str, head: str, infos: Sequence[PatchInfo],
            built: list[int]) -> ApplyResult:
    """The apply's outcome; ``git am`` skips patches already in the base, so compare what landed."""
    landed = git(tree.path, "log", "--format=%s", f"{tree.base}..{head}", timeout=60).stdout.splitlines()
    skipped = [i for i in infos if i.is_mail and i.subject not in landed]
    result = ApplyResult(branch, tree.base, head, len(infos), built=built)
    if infos and len(skipped) == len(infos):
        result.already_applied = True
        result.message = (f"series already applied in the base {tree.base[:12]}: all {len(infos)} "
                          "patch(es) changed nothing; nothing to do")
    elif skipped:
        result.message = (f"applied {len(infos) - len(skipped)} of {len(infos)} patch(es) on "
                          f"{tree.base[:12]}; already in the base: "
                          + ", ".join(f"{i.number} \"{i.subject}\"" for i in skipped))
    else:
        result.message = f"applied {len(infos)} patch(es) on {tree.base[:12]}: {branch} at {head[:12]}"
    return result


def apply_patch_files(tree: Tree, patches: Sequence[Path], branch: str, *,
                      progress: Progress | None = None, build: PatchBuild | None = None,
                      check_applied_in: str | None = None) -> ApplyResult:
    """Make ``branch`` = ``tree.base`` + ``patches`` (reused when the key matches) and check it out.

    ``check_applied_in``: a ref whose ``base..ref`` range is searched for the same patch-ids first.
    """
    for path in patches:
        if not Path(path).is_file():
            raise UserError(f"patch file not found: {path}")
    # Trees are shared by every kwb process; builds hold the same lock (re-entrant here).
    with locked("kernel", progress=progress):
        return _apply_patch_files(tree, patches, branch, progress, build, check_applied_in)


def _apply_patch_files(tree: Tree, patches: Sequence[Path], branch: str, progress: Progress | None,
                       build: PatchBuild | None, check_applied_in: str | None) -> ApplyResult:
    say = progress or (lambda _m: None)
    key = apply_key(tree.base, patches)
    abort_am(tree)
    head = branch_commit(tree.path, branch)
    if head is not None and _stored_key(tree, branch) == key and build is None:
        git(tree.path, "checkout", "-q", "--force", branch)
        return ApplyResult(branch, tree.base, head, len(patches), reused=True,
                           message=f"{branch} is up to date ({head[:12]}), reused")
    work = Path(tempfile.mkdtemp(prefix="kwb-apply-"))
    try:
        infos = split_patches(patches, work)
        if check_applied_in:
            target = rev_parse(tree.path, check_applied_in)
            found = already_applied(tree, infos, target) if target else []
            if found:
                return ApplyResult(branch, tree.base, found[-1], len(infos), already_applied=True,
                                   message=f"series already applied in {check_applied_in}: "
                                   f"{len(found)} patch(es), last {found[-1][:12]}; nothing to do")
        git(tree.path, "checkout", "-q", "--force", "-B", branch, tree.base)
        git(tree.path, "config", "--unset", f"branch.{branch}.kwbkey", check=False, timeout=30)
        try:
            built = _apply_all(tree, infos, build, say)
        except BaseException:
            abort_am(tree)
            git(tree.path, "checkout", "-q", "--force", tree.base)
            git(tree.path, "branch", "-D", branch, check=False, timeout=60)
            raise
        git(tree.path, "config", f"branch.{branch}.kwbkey", key, timeout=30)
        head = rev_parse(tree.path, "HEAD") or ""
        return _result(tree, branch, head, infos, built)
    finally:
        shutil.rmtree(work, ignore_errors=True)

