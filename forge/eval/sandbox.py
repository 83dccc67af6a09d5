"""Run untrusted generated programs behind the isolation boundary (forge.eval.isolation).

Each program runs in a fresh `python -I -S` (the standard library only) with its source fed on standard input to a small
bootstrap that sets its limits (CPU time, address space, file size, open files, processes) and
then runs it. Standard output is discarded; standard error goes to a file (so the file-size
limit also caps an output flood) whose last line is the failure shown. A program that runs past
its timeout is killed together with everything it started. A crash, hang or bomb fails that one
program only; programs run in parallel workers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Optional

from forge.eval import isolation
from forge.eval.isolation import BUBBLEWRAP, NAMESPACE, Limits

BOOT = (
    "import os, resource, sys\n"
    "for name, value in {limits!r}.items():\n"
    "    resource.setrlimit(getattr(resource, name), (value, value))\n"
    "source = sys.stdin.read()\n"
    "sys.stdin = open(os.devnull)\n"
    "sys.argv = ['<program>']\n"
    "exec(compile(source, '<program>', 'exec'), {{'__name__': '__main__', '__builtins__': __builtins__}})\n"
)
SOCKET_GUARD = (  # without a network namespace: stops ordinary code, not a boundary
    "import socket as _s\n"
    "def _no_network(*a, **k):\n    raise OSError('network disabled in the sandbox')\n"
    "_s.socket = _s.create_connection = _s.getaddrinfo = _no_network\n"
)


@dataclass
class Outcome:
    passed: bool
    status: str  # passed | failed: <last line of stderr> | timeout


def run_program(program: str, timeout_s: float, memory_mb: int, limits: Optional[Limits] = None,
                level: Optional[str] = None) -> Outcome:
    """`level`: the boundary to use (default: the strongest here; a weaker one to compare with)."""
    limits = limits or Limits(timeout_s, memory_mb)
    level = level or isolation.level().name
    exe, _ = isolation.python()
    command = [exe, "-I", "-S", "-c", BOOT.format(limits=limits.rlimits())]  # the standard library only
    if level == BUBBLEWRAP:
        command = [*isolation.bwrap_args(limits), "--", *command]
    elif level == NAMESPACE:
        command = ["unshare", "-rn", *command]
    if level != NAMESPACE and level != BUBBLEWRAP:
        program = SOCKET_GUARD + program
    with tempfile.TemporaryDirectory(prefix="forge-sandbox-") as cwd, open(os.path.join(cwd, "stderr"), "w+b") as err, \
            isolation.process_cap(limits.processes) as join:
        env = dict(isolation.ENV, HOME=cwd, TMPDIR=cwd)
        # A session of its own, so that a timeout kills everything it started; its limits are set
        # by the bootstrap (no preexec function but root's cgroup join: it makes the start slower).
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=join is None, preexec_fn=join)
        # A timer kills it at the timeout; waiting with a timeout instead would poll (sleeps of up
        # to 50 ms, more than a short program takes).
        killed = threading.Event()
        timer = threading.Timer(timeout_s, _kill, (proc, killed))
        timer.start()
        try:
            proc.communicate(program.encode())
        except BrokenPipeError:  # it exited before reading all of its source
            proc.wait()
        finally:
            timer.cancel()
        if killed.is_set():
            return Outcome(False, "timeout")
        err.seek(max(0, err.seek(0, os.SEEK_END) - 4096))
        tail = err.read().decode(errors="replace").strip().splitlines()
    if proc.returncode == 0:
        return Outcome(True, "passed")
    last = tail[-1:] or [_exit_text(proc.returncode)]
    return Outcome(False, f"failed: {last[0][:200]}")


def run_programs(programs: list[str], timeout_s: float, memory_mb: int, workers: int, limits: Optional[Limits] = None,
                 level: Optional[str] = None) -> list[Outcome]:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda p: run_program(p, timeout_s, memory_mb, limits, level), programs))


def _kill(proc: subprocess.Popen, killed: threading.Event) -> None:
    """The program's session: bwrap, whose PID namespace dies with it, or the unisolated tree."""
    if proc.poll() is None:
        killed.set()
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _exit_text(code: int) -> str:
    return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
