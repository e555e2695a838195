# Shared set-up for scripts/test, scripts/demo and scripts/bench (sourced, not run).
# Installs the Debian packages speakerd needs (when we may), creates .venv and installs the package.

VENV="${SPEAKERD_VENV:-$PWD/.venv}"
# libasound2-dev, python3-dev, gcc: pyalsaaudio is only published as an sdist and compiles.
# pulseaudio, pulseaudio-utils, libasound2-plugins: the real-time audio tier (null sinks behind ALSA).
# alsa-utils: aplay/arecord for troubleshooting and `speakerd devices` cross-checks.
# systemd: systemd-analyze, to verify and score the shipped unit (a container lacks it).
# debootstrap, systemd-container: the system tier builds a Debian 12 root and boots it with
# systemd-nspawn to run the installed service under a real systemd (tests/system).
APT_PACKAGES=(libasound2-dev python3-dev python3-venv gcc pulseaudio pulseaudio-utils libasound2-plugins alsa-utils systemd
              debootstrap systemd-container)

_missing_apt() {
    local missing=() p
    for p in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    echo "${missing[@]:-}"
}

speakerd_setup() {  # $1: the pip extra to install (test, emulator)
    local extra="$1" missing sudo=""
    missing=$(_missing_apt)
    if [ -n "$missing" ]; then
        if [ "$(id -u)" -ne 0 ]; then
            if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo="sudo"; else
                echo "speakerd: these Debian packages are missing: $missing" >&2
                echo "speakerd: install them with: sudo apt-get install -y $missing" >&2
                return 1
            fi
        fi
        echo "speakerd: installing Debian packages: $missing" >&2
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        # shellcheck disable=SC2086
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        echo "speakerd: creating $VENV" >&2
        python3 -m venv "$VENV"
    fi
    local stamp="$VENV/.speakerd-$extra" src
    src=$(cat pyproject.toml | sha256sum | cut -c1-16)
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$src" ]; then
        "$VENV/bin/pip" install -q --disable-pip-version-check -e ".[$extra]"
        echo "$src" > "$stamp"
    fi
}
