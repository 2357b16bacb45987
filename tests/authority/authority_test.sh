#!/bin/sh
# authority_test.sh - holds the method table of docs/authority.md against what haven-node
# serves: every method served has a row, every row names a method served, and the roles that
# may call each method (the cells that are not "—") are exactly the roles the code allows.
# A method without handler (UNIMPLEMENTED) fails too.
#
#   authority_test.sh HAVEN_NODE DOCS/AUTHORITY.MD
set -eu

node=$1
doc=$2
base=${HAVEN_TEST_TMP:-/tmp}
mkdir -p "$base"
tmp=$(mktemp -d "$base/authority-XXXXXX")
trap 'rm -rf "$tmp"' EXIT

"$node" --data "$tmp/d" --print-methods >"$tmp/code.txt" 2>"$tmp/node.log" || {
	echo "authority_test: haven-node --print-methods failed" >&2
	cat "$tmp/node.log" >&2
	exit 1
}
[ -s "$tmp/code.txt" ] || { echo "authority_test: the node printed no method" >&2; exit 1; }

# The table's rows: | method | anonymous | operator | admin | coordinator | referrer | provider |
# municipality | national coordinator |, in rpc_role order, as "METHOD role,role" (or "none").
awk -F'|' '
	$2 ~ /^ *haven\./ {
		split("anonymous operator admin coordinator referrer provider municipality national-coordinator", role, " ")
		m = $2; gsub(/ /, "", m)
		out = ""
		if (NF != 11) { printf "authority_test: %s has %d cells, not 9\n", m, NF - 2 > "/dev/stderr"; bad = 1 }
		for (i = 1; i <= 8; i++) {
			c = $(i + 2); gsub(/^ +| +$/, "", c)
			if (c == "") { printf "authority_test: %s has an empty cell\n", m > "/dev/stderr"; bad = 1 }
			if (c != "—" && c != "-") { out = out (out == "" ? "" : ",") role[i] }
		}
		print m " " (out == "" ? "none" : out)
	}
	END { exit bad }' "$doc" | sort >"$tmp/doc.txt"
sort "$tmp/code.txt" >"$tmp/code.sorted"

if ! diff -u "$tmp/doc.txt" "$tmp/code.sorted" >"$tmp/diff"; then
	echo "authority_test: docs/authority.md (-) and the code (+) differ:" >&2
	grep '^[-+]h' "$tmp/diff" >&2
	exit 1
fi
dups=$(cut -d' ' -f1 "$tmp/doc.txt" | uniq -d)
[ -z "$dups" ] || { echo "authority_test: rows twice: $dups" >&2; exit 1; }
echo "authority_test: $(wc -l <"$tmp/code.sorted") methods match docs/authority.md"
