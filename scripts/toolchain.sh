# Sourced by the scripts that build: finds the Rust toolchain, also when the script was started with sudo.
#
# rustup installs cargo for one user, under ~/.cargo/bin, and adds that to the user's PATH; sudo resets PATH, so
# `sudo ./scripts/serve.sh` would not find it. When cargo is not on PATH and the script runs under sudo, the
# invoking user's toolchain is used:
#   - `as_builder CMD...` runs CMD as that user (so target/ and ~/.cargo stay theirs): builds that need no root;
#   - `use_builders_toolchain` puts that user's toolchain on PATH for cargo run as root (the test suite, whose
#     sandbox tests need root), with root's own CARGO_HOME so that nothing root-owned lands in the user's ~/.cargo.
# Otherwise both run cargo as it is.

builder_home=""
if ! command -v cargo >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ] && [ -n "${SUDO_USER:-}" ]; then
  candidate=$(getent passwd "$SUDO_USER" | cut -d: -f6)
  if [ -n "$candidate" ] && [ -x "$candidate/.cargo/bin/cargo" ]; then
    if [ "$SUDO_USER" = root ]; then
      # root ran sudo: its own toolchain, put back on the PATH that sudo reset.
      export PATH="$candidate/.cargo/bin:$PATH"
    else
      builder_home=$candidate
    fi
  fi
fi

if [ -z "$builder_home" ] && ! command -v cargo >/dev/null 2>&1; then
  {
    echo "cargo was not found on PATH${SUDO_USER:+, nor in ~$SUDO_USER/.cargo/bin}."
    echo "Install Rust for your user with rustup (https://rustup.rs), open a new shell (or run: . \"\$HOME/.cargo/env\"),"
    echo "then run this script again; with sudo it finds the toolchain of the user who ran sudo."
  } >&2
  exit 1
fi

as_builder() {
  if [ -n "$builder_home" ]; then
    sudo -u "$SUDO_USER" -H env "PATH=$builder_home/.cargo/bin:$PATH" "$@"
  else
    "$@"
  fi
}

use_builders_toolchain() {
  if [ -n "$builder_home" ]; then
    export PATH="$builder_home/.cargo/bin:$PATH"
    export RUSTUP_HOME="${RUSTUP_HOME:-$builder_home/.rustup}"
    export CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}"
    echo "using the Rust toolchain of $SUDO_USER ($builder_home/.cargo/bin)"
  fi
}
