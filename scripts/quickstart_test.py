"""The README's quick start as a newcomer runs it: `sudo ./scripts/serve.sh` with Rust installed by rustup for
their own user, so that cargo is in ~/.cargo/bin and sudo's reset PATH does not have it.

A throwaway user gets a stand-in cargo in ~/.cargo/bin that records who ran it and "builds" a stand-in server; a
copy of the scripts then runs as sudo would start it (root, a reset PATH, SUDO_USER set). The build must run as
that user, with that user's cargo, and the server as root. Needs root and sudo, which the test command has (CI
runs it as root); elsewhere it skips loudly, or fails when PYEXEC_REQUIRE_FULL_ISOLATION says root is required.
"""

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
USER = "pyexec-newcomer"
SUDO_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

STAND_IN_CARGO = """#!/bin/sh
echo "$(id -un) $*" >> "$HOME/cargo-calls"
case "$1" in
  build)
    mkdir -p target/release
    printf '#!/bin/sh\\necho "server as $(id -un) $*"\\n' > target/release/pyexec-apiserver
    chmod +x target/release/pyexec-apiserver ;;
esac
"""


def require_root():
    if os.geteuid() == 0 and shutil.which("sudo"):
        return
    message = "the quick-start test needs root and sudo"
    if os.environ.get("PYEXEC_REQUIRE_FULL_ISOLATION"):
        pytest.fail(message + " (PYEXEC_REQUIRE_FULL_ISOLATION is set)")
    print(f"!!! SKIPPED: {message}")
    pytest.skip(message)


@pytest.fixture
def newcomer():
    """A user whose home holds a stand-in rustup install, and a checkout of the scripts that it owns."""
    require_root()
    # Not pytest's tmp_path: its parents are root's alone, and the user must reach its home.
    tmp_path = Path(tempfile.mkdtemp(prefix="pyexec-quickstart-"))
    home = tmp_path / "home"
    try:
        pwd.getpwnam(USER)
        subprocess.run(["usermod", "--home", str(home), USER], check=True)
    except KeyError:
        subprocess.run(["useradd", "--no-create-home", "--home-dir", str(home), "--shell", "/bin/sh", USER],
                       check=True)
    tmp_path.chmod(0o755)
    cargo = home / ".cargo" / "bin" / "cargo"
    cargo.parent.mkdir(parents=True)
    cargo.write_text(STAND_IN_CARGO)
    cargo.chmod(0o755)
    checkout = tmp_path / "python-executor"
    (checkout / "scripts").mkdir(parents=True)
    for script in ["serve.sh", "setup.sh", "toolchain.sh", "install-uv.sh"]:
        shutil.copy2(REPO / "scripts" / script, checkout / "scripts" / script)
    user = pwd.getpwnam(USER)
    for path in [home, *home.rglob("*"), checkout, *checkout.rglob("*")]:
        os.chown(path, user.pw_uid, user.pw_gid)
    yield home, checkout
    shutil.rmtree(tmp_path)


def as_sudo_starts(script: Path, *args: str, sudo_user: str = USER) -> subprocess.CompletedProcess:
    """`sudo script args`: root, sudo's PATH (no ~/.cargo/bin), SUDO_USER naming who ran it."""
    env = {"PATH": SUDO_PATH, "HOME": "/root", "SUDO_USER": sudo_user, "LANG": "C.UTF-8"}
    return subprocess.run(["bash", str(script), *args], env=env, capture_output=True, text=True, timeout=600)


def test_sudo_serve_builds_with_the_users_toolchain_and_serves_as_root(newcomer):
    home, checkout = newcomer
    run = as_sudo_starts(checkout / "scripts" / "serve.sh", "--port", "18999")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "server as root --port 18999" in run.stdout, run.stdout + run.stderr
    calls = (home / "cargo-calls").read_text().splitlines()
    assert f"{USER} build --release --locked -p pyexec-apiserver" in calls, calls
    assert all(call.startswith(USER + " ") for call in calls), f"cargo never runs as root: {calls}"
    built = checkout / "target" / "release" / "pyexec-apiserver"
    assert built.stat().st_uid == pwd.getpwnam(USER).pw_uid, "the build's output stays the user's"


def test_without_any_cargo_the_scripts_say_how_to_get_one(newcomer):
    home, checkout = newcomer
    shutil.rmtree(home / ".cargo")
    run = as_sudo_starts(checkout / "scripts" / "serve.sh")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "rustup" in run.stderr and f"~{USER}/.cargo/bin" in run.stderr, run.stderr
