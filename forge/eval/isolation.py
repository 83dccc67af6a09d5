"""The boundary that model-generated programs run behind, and how much of one this machine has.

`bubblewrap` (bwrap, the sandbox Flatpak uses; a maintained tool rather than home-made
namespaces) gives each program its own user, PID, network, IPC and UTS namespaces. The program
sees the system's /usr (and the Python it runs) read-only and nothing else of the machine: no
home, no project, no run directory, no inherited environment. It gets a private, empty,
size-capped writable folder and /tmp. It is its PID namespace's init (PID 1), so everything it
starts is killed when it ends (a detached `setsid` child included). Its limits
are CPU time, address space, file size, open files and the number of processes. The last is
RLIMIT_NPROC set inside the sandbox, which the kernel counts per user namespace; root ignores
that limit, so a program started by root is put in a `pids` cgroup instead.

Without bubblewrap the levels are `namespace` (`unshare -rn`: the network is cut, the files are
not protected) and `none`. Neither is a boundary: running model-generated code with them is
refused unless `eval.sandbox.allow_unisolated=true`, and the level in force is reported with
every evaluation.
"""

from __future__ import annotations

import atexit
import functools
import itertools
import os
import shutil
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

from forge.errors import ForgeError

BUBBLEWRAP, NAMESPACE, NONE = "bubblewrap", "namespace", "none"
INSTALL = "install bubblewrap (Debian/Ubuntu: sudo apt-get install bubblewrap; Fedora: sudo dnf install bubblewrap)"
SCRATCH = "/sandbox"  # the program's working folder inside the sandbox
ENV = {"PATH": "/usr/bin:/bin", "HOME": SCRATCH, "TMPDIR": "/tmp", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
CGROUP_ROOTS = (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup"))  # cgroup v1's pids hierarchy, then v2


@dataclass(frozen=True)
class Limits:
    timeout_s: float
    memory_mb: int
    processes: int = 64
    open_files: int = 256
    file_mb: int = 16
    scratch_mb: int = 64

    def rlimits(self) -> dict[str, int]:
        """What the program sets on itself before it runs (bytes, seconds, counts)."""
        return {"RLIMIT_AS": self.memory_mb << 20, "RLIMIT_CPU": int(self.timeout_s) + 1, "RLIMIT_FSIZE": self.file_mb << 20,
                "RLIMIT_NOFILE": self.open_files, "RLIMIT_NPROC": self.processes}


@dataclass(frozen=True)
class Level:
    name: str  # bubblewrap | namespace | none
    why: str = ""  # why bubblewrap is not in force, when it is not


def python() -> tuple[str, str]:
    """(interpreter, its prefix): the real binary behind a virtual environment, whose standard
    library is all a program gets."""
    return os.path.realpath(sys.executable), os.path.realpath(sys.base_prefix)


def bwrap_args(limits: Limits) -> list[str]:
    """The bubblewrap command line up to the program's interpreter."""
    args = ["bwrap", "--unshare-all", "--unshare-user", "--disable-userns", "--as-pid-1", "--die-with-parent", "--new-session", "--clearenv",
            "--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    for f in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/localtime"):  # how shared libraries are found
        if os.path.exists(f):
            args += ["--ro-bind", f, f]
    _, prefix = python()
    if not prefix.startswith("/usr/"):
        args += ["--ro-bind", prefix, prefix]
    size = str(limits.scratch_mb << 20)
    args += ["--proc", "/proc", "--dev", "/dev", "--size", size, "--tmpfs", "/tmp", "--size", size, "--tmpfs", SCRATCH,
             "--chdir", SCRATCH]
    for key, value in ENV.items():
        args += ["--setenv", key, value]
    return args


@functools.cache
def level() -> Level:
    """The strongest boundary that works here, found once by running a program behind it."""
    why = _bubblewrap_fails()
    if why is None:
        return Level(BUBBLEWRAP)
    if shutil.which("unshare"):
        try:
            if subprocess.run(["unshare", "-rn", sys.executable, "-c", "pass"], capture_output=True, timeout=20).returncode == 0:
                return Level(NAMESPACE, why)
        except (OSError, subprocess.TimeoutExpired):
            pass
    return Level(NONE, why)


def require(allow_unisolated: bool) -> Level:
    """The level programs will run at; refused with one line when it is no boundary and running
    without one was not asked for."""
    found = level()
    if found.name != BUBBLEWRAP and not allow_unisolated:
        raise ForgeError(
            f"eval.sandbox: model-generated code would run without an isolation boundary ({found.why}; best here: {found.name}); "
            f"{INSTALL}, or set eval.sandbox.allow_unisolated=true to run it anyway (recorded in the results)"
        )
    return found


def _bubblewrap_fails() -> Optional[str]:
    if shutil.which("bwrap") is None:
        return "bubblewrap (bwrap) is not installed"
    if os.geteuid() == 0 and pids_root() is None:
        return "forge runs as root, which ignores the process limit, and no pids cgroup can be made here"
    exe, _ = python()
    try:
        with process_cap(8) as join:
            done = subprocess.run([*bwrap_args(Limits(10, 256)), "--", exe, "-I", "-c", "import os; os.listdir('/')"],
                                  capture_output=True, timeout=30, preexec_fn=join)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"bwrap could not start: {e}"
    if done.returncode != 0:
        return f"bwrap cannot create its namespaces here: {done.stderr.decode(errors='replace').strip()[:200]}"
    return None


_root_lock = threading.Lock()


def pids_root() -> Optional[Path]:
    """A cgroup folder under which this process can make pids-limited children (root only);
    found once, under a lock: the sandbox's worker threads may ask first at the same time."""
    with _root_lock:
        return _pids_root()


@functools.cache
def _pids_root() -> Optional[Path]:
    for root in CGROUP_ROOTS:
        controllers = root / "cgroup.controllers"
        v2 = controllers.exists()
        if not (root / "cgroup.procs").is_file() or (v2 and "pids" not in controllers.read_text().split()):
            continue  # not a cgroup (on a cgroup v1 host /sys/fs/cgroup is a tmpfs of mount points)
        for stale in root.glob("forge-sandbox-*"):  # left by a forge that was killed
            if not Path(f"/proc/{stale.name.rsplit('-', 1)[1]}").exists():
                _remove(stale)
        base = root / f"forge-sandbox-{os.getpid()}"
        try:
            base.mkdir(exist_ok=True)
            atexit.register(_remove, base)
            if v2:
                (base / "cgroup.subtree_control").write_text("+pids")
            probe = base / "probe"
            probe.mkdir()
            (probe / "pids.max").write_text("1")
            probe.rmdir()
            return base
        except OSError:
            continue
    return None


_names = itertools.count()
_groups = threading.local()  # each worker thread reuses one cgroup: made once, emptied after each program


@contextmanager
def process_cap(processes: int) -> Iterator[Optional[Callable[[], None]]]:
    """For root: this thread's pids cgroup, capped at `processes`, yielding the function a child
    calls to join it (before it execs); anything still in it is killed when the block ends.
    Otherwise None: RLIMIT_NPROC, set inside the sandbox, does the job."""
    base = pids_root() if os.geteuid() == 0 else None
    if base is None:
        yield None
        return
    group = getattr(_groups, "path", None)
    if group is None or not group.exists():
        group = _groups.path = base / f"p{next(_names)}"
        group.mkdir()
    (group / "pids.max").write_text(str(processes))
    if (group / "tasks").exists():  # cgroup v1 places threads: this one starts the child inside
        tid, home = threading.get_native_id(), _own_group(base.parent)
        (group / "tasks").write_text(str(tid))
        try:
            yield None
        finally:
            for thread in [tid, *(group / "tasks").read_text().split()]:  # threads it started (a timer) too
                if Path(f"/proc/self/task/{thread}").exists():
                    try:
                        (home / "tasks").write_text(str(thread))
                    except ProcessLookupError:  # it ended meanwhile
                        pass
            _kill_all(group)
        return

    def join() -> None:  # cgroup v2 places whole processes: the child moves itself (a slower start)
        os.setsid()
        (group / "cgroup.procs").write_text(str(os.getpid()))

    try:
        yield join
    finally:
        _kill_all(group)


def _own_group(root: Path) -> Path:
    """This process's cgroup in the v1 pids hierarchy mounted at `root`."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "pids" in controllers.split(","):
            return root / path.lstrip("/")
    return root


def _kill_all(group: Path) -> None:
    """Kill what is left in a cgroup (a program's PID namespace normally took it down already)."""
    for _ in range(100):
        pids = [int(p) for p in (group / "cgroup.procs").read_text().split() if int(p) != os.getpid()]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        time.sleep(0.01)


def _empty(group: Path) -> None:
    _kill_all(group)
    try:
        group.rmdir()
    except OSError:
        pass


def _remove(folder: Path) -> None:
    if not folder.is_dir():
        return
    for child in folder.iterdir():
        if child.is_dir():
            _empty(child)
    try:
        folder.rmdir()
    except OSError:
        pass
