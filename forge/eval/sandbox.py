"""Run untrusted generated code in a separate process with a timeout, a memory cap and no network.

Each program runs in a fresh isolated interpreter (`python -I`) inside an empty temporary
folder, in its own process group (a timeout kills it and anything it started), with address
space, CPU time and file size capped by rlimits. The network is cut with a user+network
namespace (`unshare -rn`) where the kernel allows it; where it does not, the socket module is
disabled in the child instead, which stops ordinary code but is not a security boundary (say
so when reporting: `network_isolation`). A crash or hang only fails that one program.
"""

from __future__ import annotations

import functools
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

SOCKET_GUARD = (
    "import socket as _s\n"
    "def _no_network(*a, **k):\n    raise OSError('network disabled in the sandbox')\n"
    "_s.socket = _s.create_connection = _s.getaddrinfo = _no_network\n"
)


@dataclass
class Outcome:
    passed: bool
    status: str  # passed | failed | timeout | error text


@functools.cache
def network_isolation() -> str:
    """'namespace' when `unshare -rn` works here, else 'socket-guard'."""
    if shutil.which("unshare") is None:
        return "socket-guard"
    try:
        done = subprocess.run(["unshare", "-rn", sys.executable, "-c", "pass"], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return "socket-guard"
    return "namespace" if done.returncode == 0 else "socket-guard"


def run_program(program: str, timeout_s: float, memory_mb: int) -> Outcome:
    isolation = network_isolation()
    if isolation != "namespace":
        program = SOCKET_GUARD + program
    command = [sys.executable, "-I", "-c", program]
    if isolation == "namespace":
        command = ["unshare", "-rn", *command]

    def limits() -> None:
        os.setsid()
        resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
        cpu = int(timeout_s) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        resource.setrlimit(resource.RLIMIT_FSIZE, (16 << 20, 16 << 20))

    with tempfile.TemporaryDirectory(prefix="forge-sandbox-") as cwd:
        env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, preexec_fn=limits)
        try:
            _, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return Outcome(False, "timeout")
    if proc.returncode == 0:
        return Outcome(True, "passed")
    last = err.decode(errors="replace").strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
    return Outcome(False, f"failed: {last[0][:200]}")


def run_programs(programs: list[str], timeout_s: float, memory_mb: int, workers: int) -> list[Outcome]:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda p: run_program(p, timeout_s, memory_mb), programs))
