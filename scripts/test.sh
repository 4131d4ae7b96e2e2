#!/usr/bin/env bash
# Run the test suite in .venv with a private store, then check that the run
# left no mount, network link or Docker daemon behind.
# Extra arguments go to pytest (for example: scripts/test.sh -m 'not network').
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

leak_status=0
leaks || leak_status=$?

if [[ $status -eq 0 && $leak_status -eq 0 ]]; then
    echo "test: passed (pytest exit 0, no leaked mounts, links or daemons)"
    exit 0
fi
echo "test: failed (pytest exit $status, leak check exit $leak_status)"
exit $(( status != 0 ? status : leak_status ))
