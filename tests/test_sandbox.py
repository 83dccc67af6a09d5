"""Model-generated programs, written as a hostile one would be, are contained by the sandbox:
each attack fails or does nothing, the machine is unchanged, and the next program runs."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from forge.eval import isolation
from forge.eval.humaneval import problems, program
from forge.eval.sandbox import run_program, run_programs

pytestmark = pytest.mark.skipif(isolation.level().name != isolation.BUBBLEWRAP,
                                reason=f"no bubblewrap boundary here: {isolation.level().why}")
OK = "assert 1 + 1 == 2\n"


def run(code: str, timeout_s: float = 5, memory_mb: int = 512):
    """The program's outcome, and that of an ordinary one run right after it."""
    first, after = run_programs([code, OK], timeout_s=timeout_s, memory_mb=memory_mb, workers=1)
    assert after.passed, f"the program after it failed: {after.status}"
    return first


def tree_digest(*roots: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for root in roots for p in sorted(root.rglob("*"))}


@pytest.fixture
def planted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A home with a secret and a project with code, as on a developer's laptop."""
    home, project = tmp_path / "home", tmp_path / "project"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nplanted\n")
    (project / "src").mkdir(parents=True)
    (project / "src" / "main.py").write_text("print('hello')\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("FORGE_PLANTED_TOKEN", "planted-token-value")
    return home, project


def test_files_outside_its_folder_cannot_be_deleted_overwritten_or_created(planted: tuple[Path, Path]) -> None:
    home, project = planted
    before = tree_digest(home, project)
    attacks = [
        f"import os\nos.remove({str(project / 'src' / 'main.py')!r})\n",
        f"open({str(project / 'src' / 'main.py')!r}, 'w').write('pwned')\n",
        f"open({str(project / 'new.py')!r}, 'w').write('pwned')\n",
        f"import shutil\nshutil.rmtree({str(home)!r})\n",
        "import os, shutil\nshutil.rmtree(os.path.expanduser('~'))\nopen('/etc/forge-pwned', 'w')\n",
        "import os\nfor d in ('/usr', '/tmp', '.'):\n    open(os.path.join(d, 'x'), 'w').write('x')\n",
    ]
    for code in attacks:
        run(code)
    assert tree_digest(home, project) == before, "the planted home and project are unchanged"
    assert not Path("/etc/forge-pwned").exists() and not Path("/usr/x").exists()


def test_secrets_of_the_machine_are_not_readable(planted: tuple[Path, Path]) -> None:
    home, project = planted
    code = (
        "import os\n"
        f"for path in ({str(home / '.ssh' / 'id_ed25519')!r}, {str(project / 'src' / 'main.py')!r}, '/etc/passwd', '/etc/shadow'):\n"
        "    assert not os.path.exists(path), path\n"
        "assert 'FORGE_PLANTED_TOKEN' not in os.environ and os.environ['HOME'] == '/sandbox'\n"
        "assert os.listdir('.') == [] and os.getcwd() == '/sandbox'\n"
    )
    assert run(code).passed


def test_a_fork_bomb_is_capped_and_leaves_nothing_behind() -> None:
    start = time.monotonic()
    outcome = run("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n", timeout_s=3)
    assert not outcome.passed and time.monotonic() - start < 20
    capped = run("import os\nn = 0\ntry:\n    while True:\n        if os.fork() == 0:\n            import time; time.sleep(5); os._exit(0)\n"
                 "        n += 1\nexcept OSError:\n    raise SystemExit(f'{n} processes')\n")
    started = int(capped.status.split()[1])
    assert 56 <= started < 64, "eval.sandbox.processes=64 counts the sandbox's own init and the program too"


def _alive(marker: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                found.append(int(pid))
        except OSError:
            pass
    return found


def test_a_detached_child_dies_with_the_program() -> None:
    code = ("import os\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
            "        os.execv('/bin/sleep', ['sleep', '31.4159'])\n    os._exit(0)\nos.wait()\n")
    assert run(code).passed
    time.sleep(0.2)
    assert _alive("31.4159") == [], "nothing it started outlives it"


def test_it_cannot_signal_the_machine() -> None:
    bystander = subprocess.Popen(["sleep", "30"])
    try:
        outcome = run("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nos.kill(-1, signal.SIGKILL)\n"
                      f"os.kill({os.getpid()}, signal.SIGKILL)\n")
        assert not outcome.passed, "pids of the machine are not visible from its PID namespace"
        assert bystander.poll() is None, "a process of the machine is untouched"
    finally:
        bystander.kill()


@pytest.mark.parametrize("code, status", [
    ("x = bytearray(4 << 30)\n", "failed: MemoryError"),
    ("while True:\n    pass\n", "timeout"),
    ("open('big', 'wb').write(b'x' * (200 << 20))\n", "failed: "),
    ("open('/tmp/big', 'wb').write(b'x' * (200 << 20))\n", "failed: "),
    ("import os\nfds = [os.open('/dev/null', os.O_RDONLY) for _ in range(10000)]\n", "failed: OSError: [Errno 24] Too many open files"),
])
def test_resource_bombs_fail_alone(code: str, status: str) -> None:
    assert run(code, timeout_s=3).status.startswith(status)


def test_the_machines_loopback_is_out_of_reach() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(4)
    port = server.getsockname()[1]
    accepted: list[socket.socket] = []

    def accept() -> None:
        try:
            accepted.append(server.accept()[0])
        except OSError:
            pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    code = f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\nexcept OSError:\n    pass\nelse:\n    raise SystemExit('connected')\n"
    assert run(code).passed
    thread.join(5)
    server.close()
    assert accepted == []


def test_an_output_flood_is_cut_off() -> None:
    start = time.monotonic()
    flood = run("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n    sys.stderr.write('y' * 65536)\n", timeout_s=5)
    assert not flood.passed and len(flood.status) < 300 and time.monotonic() - start < 15


def test_canonical_solutions_pass_behind_the_boundary_as_without_it() -> None:
    """Every HumanEval problem: its canonical solution passes and a wrong one fails, exactly as in
    a plain subprocess, so a model's pass@1 is the same behind the boundary."""
    items = problems()
    programs = [program(p, p["canonical_solution"]) for p in items] + [program(p, "    return None\n") for p in items]
    boxed = run_programs(programs, timeout_s=10, memory_mb=1024, workers=2)
    plain = run_programs(programs, timeout_s=10, memory_mb=1024, workers=2, level=isolation.NONE)
    assert [o.passed for o in boxed] == [o.passed for o in plain] == [True] * len(items) + [False] * len(items)


def test_it_runs_the_real_boundary() -> None:
    code = "import os\nassert os.getpid() == 1 and [p for p in os.listdir('/proc') if p.isdigit()] == ['1']\n"
    assert run_program(code, 5, 512).passed, "its own PID namespace: it is its init and sees only itself"
