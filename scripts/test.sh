#!/usr/bin/env bash
# Run the test suite in .venv with a private store, then the runtime-facing
# tests again as the ordinary user layerlab-ci (rootless layerlab), then check
# that the runs left no mount, network link or Docker daemon behind.
# Extra arguments go to the first pytest run (for example:
# scripts/test.sh -m 'not network'). LAYERLAB_TEST_ROOTLESS=0 skips the second,
# and LAYERLAB_TEST_NOTEBOOKS=0 skips its run of the course notebooks.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${LAYERLAB_VENV:-$repo_root/.venv}"
# Timeouts in seconds: one test (a debian bootstrap can take minutes), and the
# whole run, which must end before CI's 90 minutes with time for set-up.
test_timeout="${LAYERLAB_TEST_TIMEOUT:-900}"
suite_timeout="${LAYERLAB_SUITE_TIMEOUT:-4500}"

if [[ ! -x "$venv/bin/python" ]]; then
    echo "test: $venv is missing; run scripts/setup.sh first" >&2
    exit 2
fi
# shellcheck disable=SC1091
source "$venv/bin/activate"

# Every run gets its own store and scratch space, removed afterwards.
run_dir="$(mktemp -d /var/tmp/layerlab-test-run.XXXXXX)"
chmod 0755 "$run_dir"
export LAYERLAB_ROOT="$run_dir/store"
export LAYERLAB_TEST_RUN_DIR="$run_dir"
mkdir -p "$LAYERLAB_ROOT"

cleanup() {
    # Unmount whatever a failed test left, deepest first, so rm cannot
    # descend into a mounted file system.
    local targets
    targets="$(findmnt -rn -o TARGET | grep -F "$run_dir" | sort -r || true)"
    while read -r target; do
        [[ -n "$target" ]] && umount -l "$target" 2>/dev/null || true
    done <<< "$targets"
    rm -rf "$run_dir" 2>/dev/null || true
}
trap cleanup EXIT

bridge_links() {
    ip -br link | awk '{print $1}' | sed 's/@.*//' | grep -E '^(layerlab|ll-|veth)' | sort || true
}

daemon_pids() {
    { pgrep -x dockerd; pgrep -x containerd; } | sort || true
}

# Links and daemons that were there before the run are not its leaks.
links_before="$(bridge_links)"
daemons_before="$(daemon_pids)"

leaks() {
    local found=0

    local mounts
    mounts="$(findmnt -rn -o TARGET | grep -F "$run_dir" || true)"
    if [[ -n "$mounts" ]]; then
        echo "test: leaked mounts under $run_dir:" >&2
        echo "$mounts" >&2
        found=1
    fi

    local links
    links="$(comm -13 <(echo "$links_before") <(bridge_links))"
    if [[ -n "$links" ]]; then
        echo "test: leaked network links:" >&2
        echo "$links" >&2
        found=1
    fi

    local daemons
    daemons="$(comm -13 <(echo "$daemons_before") <(daemon_pids))"
    if [[ -n "$daemons" ]]; then
        echo "test: leftover dockerd processes:" >&2
        echo "$daemons" >&2
        found=1
    fi

    # Monitors, containers and slirp4netns of the rootless pass run as its user.
    # A zombie (state Z) holds nothing but its pid until init reaps it, so it is no leak.
    local processes=""
    if [[ $rootless_ran -eq 1 ]]; then
        processes="$(ps -u "$rootless_user" -o pid=,stat=,args= 2>/dev/null | awk '$2 !~ /^Z/' || true)"
    fi
    if [[ -n "$processes" ]]; then
        echo "test: processes of $rootless_user left running:" >&2
        echo "$processes" >&2
        found=1
    fi

    return $found
}

pytest_timeout=()
if python -c 'import pytest_timeout' 2>/dev/null; then
    pytest_timeout=(--timeout "$test_timeout")
fi

status=0
timeout -k 60 "$suite_timeout" \
    python -m pytest -q "${pytest_timeout[@]}" "$@" "$repo_root/tests" || status=$?
if [[ $status -eq 124 ]]; then
    echo "test: pytest timed out after $suite_timeout s" >&2
fi

if [[ $status -eq 5 ]]; then
    echo "test: pytest collected no tests; counting that as a failure" >&2
    status=1
fi

# The suites that start containers, which rootless layerlab must pass too.
rootless_suites=(
    tests/engine/runtime
    tests/engine/test_lifecycle.py
    tests/engine/test_detached.py
    tests/engine/test_run_flags.py
    tests/engine/test_build_cache.py
    tests/engine/test_build.py
    tests/engine/test_container_commands.py
)
rootless_user="${LAYERLAB_TEST_USER:-layerlab-ci}"
rootless_ran=0

make_readable_by_user() {
    # The user runs the venv's python and imports the checkout in place, so
    # both must be readable, and every folder above them searchable.
    chmod -R a+rX "$repo_root" "$venv"
    local dir
    for dir in "$repo_root" "$venv"; do
        dir="$(dirname "$(realpath "$dir")")"
        while [[ "$dir" != "/" ]]; do
            if [[ "$(stat -c %A "$dir")" != ?????????[xt] ]]; then
                echo "test: allowing others to search $dir, so that $rootless_user reaches the checkout"
                chmod o+x "$dir"
            fi
            dir="$(dirname "$dir")"
        done
    done
}

run_rootless_pass() {
    if ! id -u "$rootless_user" >/dev/null 2>&1; then
        # useradd also gives the user ranges in /etc/subuid and /etc/subgid.
        useradd -m "$rootless_user"
    fi
    local user_home
    user_home="$(getent passwd "$rootless_user" | cut -d: -f6)"
    make_readable_by_user

    # Everything the user writes lives in a folder it owns under run_dir.
    # cleanup removes it as root, because container processes create files
    # owned by subordinate ids, which the user cannot delete from outside.
    local user_dir="$run_dir/rootless"
    install -d -m 0755 -o "$rootless_user" -g "$rootless_user" \
        "$user_dir" "$user_dir/store" "$user_dir/cache"
    install -d -m 0700 -o "$rootless_user" -g "$rootless_user" "$user_dir/runtime" "$user_dir/tmp"

    if ! (cd / && runuser -u "$rootless_user" -- "$venv/bin/python" -c 'import layerlab.engine' 2>/dev/null); then
        echo "test: $rootless_user cannot run $venv/bin/python; make the venv with /usr/bin/python3" >&2
        return 1
    fi

    # Runs pytest with the given arguments as the user, from the checkout.
    # -p no:cacheprovider: the user cannot write .pytest_cache in the checkout.
    pytest_as_user() {
        (
            cd "$repo_root"
            timeout -k 60 "$suite_timeout" runuser -u "$rootless_user" -- env -i \
                HOME="$user_home" USER="$rootless_user" LOGNAME="$rootless_user" LANG=C.UTF-8 \
                PATH="$venv/bin:/usr/bin:/bin" \
                XDG_RUNTIME_DIR="$user_dir/runtime" TMPDIR="$user_dir/tmp" \
                LAYERLAB_ROOT="$user_dir/store" LAYERLAB_TEST_CACHE="$user_dir/cache" CI="${CI:-}" \
                "$venv/bin/python" -m pytest -q -rs -p no:cacheprovider "${pytest_timeout[@]}" "$@"
        )
    }

    echo "test: running the runtime tests as $rootless_user"
    local status=0
    pytest_as_user --basetemp "$user_dir/pytest" -m "not network and not docker" \
        "${rootless_suites[@]}" || status=$?

    # The course notebooks as a student runs them, in a store of their own.
    # They need the Debian archive, so LAYERLAB_TEST_NOTEBOOKS=0 skips them.
    if [[ "${LAYERLAB_TEST_NOTEBOOKS:-1}" != "0" ]]; then
        echo "test: running the course notebooks as $rootless_user"
        local notebooks_status=0
        pytest_as_user --basetemp "$user_dir/pytest-notebooks" \
            tests/test_notebooks.py::test_notebooks_run_as_ordinary_user || notebooks_status=$?
        if [[ $status -eq 0 ]]; then
            status=$notebooks_status
        fi
    fi
    return $status
}

rootless_status=0
if [[ "${LAYERLAB_TEST_ROOTLESS:-1}" != "0" ]]; then
    rootless_ran=1
    run_rootless_pass || rootless_status=$?
    if [[ $rootless_status -eq 124 ]]; then
        echo "test: the rootless pass timed out after $suite_timeout s" >&2
    fi
    if [[ $rootless_status -eq 5 ]]; then
        echo "test: the rootless pass collected no tests; counting that as a failure" >&2
        rootless_status=1
    fi
fi

leak_status=0
leaks || leak_status=$?

if [[ $status -eq 0 && $rootless_status -eq 0 && $leak_status -eq 0 ]]; then
    echo "test: passed (pytest exit 0 as root and as $rootless_user, no leaked mounts, links or daemons)"
    exit 0
fi
echo "test: failed (pytest exit $status as root, $rootless_status as $rootless_user, leak check exit $leak_status)"
if [[ $status -ne 0 ]]; then
    exit "$status"
fi
exit $(( rootless_status != 0 ? rootless_status : leak_status ))
