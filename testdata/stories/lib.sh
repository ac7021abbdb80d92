# What the story scripts share. A tutorial's reader waits for a server by looking again; the
# stories do the same, a bounded number of times, and then say what never answered. Each look is
# bounded too: a SYN lost while a container's network comes up must not stall curl for minutes.
set -euo pipefail

# wait_for_http URL: until URL answers at all (60 s at most).
wait_for_http() {
	local i
	for i in $(seq 300); do
		curl -s --connect-timeout 2 --max-time 10 -o /dev/null "$1" && return 0
		sleep 0.2
	done
	echo "story: nothing answered on $1 within 60 s" >&2
	return 1
}

# wait_until COMMAND...: until COMMAND succeeds (60 s at most).
wait_until() {
	local i
	for i in $(seq 300); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	echo "story: '$*' did not succeed within 60 s" >&2
	return 1
}

# wait_for_text URL TEXT: until the page at URL contains TEXT (120 s at most), as a reader
# reloads a page whose server is still starting.
wait_for_text() {
	local i
	for i in $(seq 600); do
		curl -s --connect-timeout 2 --max-time 10 "$1" 2>/dev/null | grep -q "$2" && return 0
		sleep 0.2
	done
	echo "story: $1 did not show '$2' within 120 s" >&2
	return 1
}
