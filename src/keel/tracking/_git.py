"""The code version of a run: HEAD's commit of the folder it ran in, '-dirty' when tracked files changed.

Asked of git at every run start, so the answer is cached per folder against the stat stamps of
what it depends on (see CodeVersions). Standard library only.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["CodeVersions", "code_version"]


def _git_commit(cwd: Path | None) -> str | None:
    """HEAD's commit (with '-dirty' when tracked files changed), or None outside a repository.

    `cwd=None` means the working directory (which may have been deleted: then None too).
    One `git status` process: its porcelain v2 header names the commit, its entries the changes.
    GIT_OPTIONAL_LOCKS=0 keeps it from rewriting the index as it goes (which would also move the
    stamp CodeVersions keys on).
    """
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain=v2", "--branch", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    commit, dirty = None, False
    for line in out.stdout.splitlines():
        if line.startswith("# branch.oid "):
            commit = line.removeprefix("# branch.oid ").strip()
        elif line and not line.startswith("#"):
            dirty = True
    if commit is None or not all(c in "0123456789abcdef" for c in commit):  # '(initial)': no commit yet
        return None
    return commit + ("-dirty" if dirty else "")


def _git_dir(folder: Path) -> Path | None:
    """The .git folder of the repository holding `folder` (following a worktree's .git file), or None."""
    for d in (folder, *folder.parents):
        dot = d / ".git"
        if dot.is_dir():
            return dot
        if dot.is_file():
            try:
                text = dot.read_text(encoding="utf-8").strip()
            except OSError:
                return None
            if text.startswith("gitdir:"):
                target = Path(text.removeprefix("gitdir:").strip())
                return target if target.is_absolute() else (d / target).resolve()
            return None
    return None


def _stamp(path: Path | str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _git_lines(folder: Path, *args: str) -> list[str] | None:
    try:
        out = subprocess.run(["git", *args], cwd=folder, capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return (
        out.stdout.decode("utf-8", "surrogateescape").split("\0" if "-z" in args else "\n")
        if out.returncode == 0
        else None
    )


class _Checked:
    __slots__ = ("repo", "files", "stamps", "value", "at")

    def __init__(
        self, repo: tuple[Any, ...], files: list[str] | None, stamps: list[Any], value: str | None, at: float
    ) -> None:
        self.repo, self.files, self.stamps, self.value, self.at = repo, files, stamps, value, at


class CodeVersions:
    """The code version per folder, asking git only when the answer may have changed.

    Asking git costs a process (milliseconds), and a script that starts a run per trial would
    pay it on every run. The answer is kept with what it depends on, the way git's own index
    does: the stat stamps of HEAD, the ref it names, packed-refs and the index (a commit,
    checkout, reset or `git add` moves one of them), checked on every run, and of every tracked
    file (an edit moves its mtime or size), checked when `rescan_s` passed since the last check:
    a few microseconds per file add up when a script starts hundreds of runs a second, so an
    edit left unstaged shows as '-dirty' from the runs started a second later. Tracked files
    are listed again only when the index changes. Repositories of more than `max_files`
    tracked files are asked every time, where git's own machinery is the faster check.
    """

    max_files = 5000
    rescan_s = 1.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[Path, _Checked] = {}

    def get(self, cwd: Path | None) -> str | None:
        try:
            folder = (Path.cwd() if cwd is None else cwd).resolve()
        except OSError:  # the working directory was deleted
            return None
        if "GIT_DIR" in os.environ or "GIT_WORK_TREE" in os.environ:
            return _git_commit(folder)  # git is told where the repository is: ask it every time
        gitdir = _git_dir(folder)
        if gitdir is None:
            return None
        repo = self._repo_stamps(gitdir)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(folder)
        if hit is None or hit.repo != repo:  # new, or HEAD, a ref or the index moved: list tracked files again
            files = self._tracked(folder)
            stamps = [_stamp(f) for f in files] if files is not None else []
        elif hit.files is None:  # too many tracked files to watch: git decides every time
            files, stamps = None, []
        elif now - hit.at < self.rescan_s:
            return hit.value
        else:
            files, stamps = hit.files, [_stamp(f) for f in hit.files]
            if stamps == hit.stamps:
                hit.at = now
                return hit.value
        value = _git_commit(folder)
        with self._lock:
            self._cache[folder] = _Checked(repo, files, stamps, value, now)
        return value

    def _tracked(self, folder: Path) -> list[str] | None:
        """Absolute paths of the repository's tracked files, or None when there are too many."""
        top = _git_lines(folder, "rev-parse", "--show-toplevel")
        names = _git_lines(folder, "ls-files", "-z", "--full-name", ":/")
        if not top or names is None:
            return None
        names = [n for n in names if n]
        if len(names) > self.max_files:
            return None
        root = top[0].strip()
        return [os.path.join(root, n) for n in names]

    @staticmethod
    def _repo_stamps(gitdir: Path) -> tuple[Any, ...]:
        head = gitdir / "HEAD"
        try:
            ref = head.read_text(encoding="utf-8").strip()
        except OSError:
            ref = ""
        common = gitdir
        try:  # a linked worktree keeps its refs in the main repository's folder
            common = (gitdir / (gitdir / "commondir").read_text(encoding="utf-8").strip()).resolve()
        except OSError:
            pass
        stamps: list[Any] = [str(gitdir), ref, _stamp(head), _stamp(gitdir / "index"), _stamp(common / "packed-refs")]
        if ref.startswith("ref:"):
            name = ref.removeprefix("ref:").strip()
            stamps += [_stamp(gitdir / name), _stamp(common / name)]
        return tuple(stamps)


_code_versions = CodeVersions()


def code_version(cwd: Path | None) -> str | None:
    """The git commit of `cwd` (None: the working directory), '-dirty' when tracked files changed,
    or None outside a git repository. Cached per folder; git is asked only when the answer may have changed."""
    return _code_versions.get(cwd)
