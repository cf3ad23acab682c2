"""The set-up scripts say "installing ..." once on stderr while they install.

Each runs against stand-ins (a fake python, a fake apt-get) in a scratch
directory, so the test installs nothing and needs no network.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

FAKE_PYTHON = """#!/bin/sh
# Stands in for python3 and for .venv/bin/python: every command succeeds.
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
    mkdir -p "$3/bin" && cp "$0" "$3/bin/python"
fi
exit 0
"""

FAKE_APT = """#!/bin/sh
# Stands in for apt-get: "install" puts an etcd beside it.
if [ "$1" = "install" ]; then
    printf '#!/bin/sh\\nexit 0\\n' > "$(dirname "$0")/etcd" && chmod +x "$(dirname "$0")/etcd"
fi
exit 0
"""


def _executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def test_venv_setup_says_installing_once_then_nothing(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    for script in ("_venv.sh", "ensure-compiler.sh"):
        shutil.copy(ROOT / "scripts" / script, tmp_path / "scripts" / script)
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    python = _executable(tmp_path / "fakepython", FAKE_PYTHON)
    bin_dir = tmp_path / "bin"  # a compiler is there: nothing to install for it
    bin_dir.mkdir()
    _executable(bin_dir / "cc", "#!/bin/sh\nexit 0\n")
    env = dict(os.environ, PYTHON=str(python), PATH=f"{bin_dir}:{os.environ['PATH']}")
    argv = ["bash", "-c", "source scripts/_venv.sh dev"]
    first = _run(argv, tmp_path, env)
    assert first.returncode == 0, first.stderr
    assert first.stderr.count("installing") == 1
    assert "installing shoal and its dev tools into ./.venv" in first.stderr
    again = _run(argv, tmp_path, env)
    assert again.returncode == 0, again.stderr
    assert again.stderr == ""


def test_ensure_etcd_says_installing_once_then_nothing(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"  # the only PATH: no etcd until the fake apt-get adds one
    bin_dir.mkdir()
    _executable(bin_dir / "apt-get", FAKE_APT)
    for tool in ("id", "dirname", "chmod"):
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    if os.geteuid() != 0:
        _executable(bin_dir / "sudo", '#!/bin/sh\nexec "$@"\n')
    env = dict(os.environ, PATH=str(bin_dir))
    argv = ["/bin/sh", str(ROOT / "scripts" / "ensure-etcd.sh")]
    first = _run(argv, tmp_path, env)
    assert first.returncode == 0, first.stderr
    assert first.stderr.count("installing") == 1
    assert "installing etcd-server and etcd-client" in first.stderr
    again = _run(argv, tmp_path, env)
    assert again.returncode == 0, again.stderr
    assert again.stderr == ""


# Stands in for a Python whose headers exist once the fake apt-get installed
# them (the file "headers" beside it); says it is 3.11.
FAKE_PYTHON_HEADERS = """#!/bin/sh
case "$2" in
    *Python.h*) test -f "$(dirname "$0")/headers" ;;
    *version_info*) echo 3.11 ;;
esac
"""

# Stands in for apt-get: "install" puts a cc and the headers beside it, and
# records each call.
FAKE_APT_CC = """#!/bin/sh
echo "$@" >> "$(dirname "$0")/apt-calls"
if [ "$1" = "install" ]; then
    printf '#!/bin/sh\\nexit 0\\n' > "$(dirname "$0")/cc" && chmod +x "$(dirname "$0")/cc"
    : > "$(dirname "$0")/headers"
fi
exit 0
"""


def _compiler_bin(tmp_path: Path, uid: int) -> Path:
    bin_dir = tmp_path / "bin"  # the only PATH: no cc until the fake apt-get adds one
    bin_dir.mkdir()
    _executable(bin_dir / "apt-get", FAKE_APT_CC)
    _executable(bin_dir / "id", f"#!/bin/sh\necho {uid}\n")
    _executable(bin_dir / "python", FAKE_PYTHON_HEADERS)
    for tool in ("dirname", "chmod"):
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    return bin_dir


def _ensure_compiler(bin_dir: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    argv = ["/bin/sh", str(ROOT / "scripts" / "ensure-compiler.sh"), str(bin_dir / "python")]
    return _run(argv, cwd, dict(os.environ, PATH=str(bin_dir)))


def test_ensure_compiler_installs_once_as_root_then_says_nothing(tmp_path: Path) -> None:
    bin_dir = _compiler_bin(tmp_path, 0)
    first = _ensure_compiler(bin_dir, tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stderr.count("installing") == 1
    assert "installing a C compiler and Python 3.11's headers" in first.stderr
    calls = (bin_dir / "apt-calls").read_text()
    assert "gcc libc6-dev python3.11-dev" in calls
    again = _ensure_compiler(bin_dir, tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stderr == ""


def test_ensure_compiler_without_root_installs_nothing_and_goes_on(tmp_path: Path) -> None:
    bin_dir = _compiler_bin(tmp_path, 1000)
    done = _ensure_compiler(bin_dir, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "installed as pure Python" in done.stderr
    assert not (bin_dir / "apt-calls").exists()
