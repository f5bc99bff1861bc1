#!/usr/bin/env bash
# Style limits (TigerBeetle's tidy check): no function longer than 70 lines (signature to
# closing brace), no line wider than 100 columns, in every Rust file of the workspace except
# fuzz/ (its own workspace) and build output. Relies on rustfmt's layout: a function body
# closes with a `}` at the indentation of its `fn`.
set -euo pipefail
cd "$(dirname "$0")/.."

FN_LINES_MAX=${FN_LINES_MAX:-70}
COLUMNS_MAX=${COLUMNS_MAX:-100}

files=$(git ls-files '*.rs' | grep -vE '^(fuzz|target)/' || true)
[ -n "$files" ] || exit 0

# shellcheck disable=SC2086
LC_ALL=C awk -v fn_max="$FN_LINES_MAX" -v col_max="$COLUMNS_MAX" '
FNR == 1 { depth = 0 }
{
    # Columns are characters: count UTF-8 continuation bytes out (awk runs with LC_ALL=C).
    s = $0
    cont = gsub(/[\200-\277]/, "", s)
    cols = length($0) - cont
    if (cols > col_max) {
        printf "%s:%d: line of %d columns (max %d)\n", FILENAME, FNR, cols, col_max
        bad = 1
    }
    if (depth > 0) {
        # Inside a function: it ends at a closing brace at its own indentation.
        if ($0 == indent[depth] "}") {
            n = FNR - start[depth] + 1
            if (n > fn_max) {
                printf "%s:%d: fn %s is %d lines (max %d)\n", FILENAME, start[depth], name[depth], n, fn_max
                bad = 1
            }
            depth--
        }
    }
    if (match($0, /^[ ]*((pub(\([a-z:]+\))? )?(const )?(async )?(unsafe )?(extern "C" )?fn [A-Za-z0-9_]+)/)) {
        line = $0
        sub(/[^ ].*$/, "", line)
        fname = $0
        sub(/^.*fn /, "", fname)
        sub(/[^A-Za-z0-9_].*$/, "", fname)
        pending_indent = line; pending_start = FNR; pending_name = fname; pending = 1
    }
    if (pending) {
        # The signature ends at `{` (a body) or `;` (a declaration without one).
        if ($0 ~ /\{[ ]*$/ || $0 ~ /\{[ ]*\}[ ]*$/ || $0 ~ /[^{]\}[ ]*$/) {
            pending = 0
            if ($0 !~ /\}[ ]*$/) {
                depth++; indent[depth] = pending_indent; start[depth] = pending_start
                name[depth] = pending_name
            }
        } else if ($0 ~ /;[ ]*$/) {
            pending = 0
        }
    }
}
END { exit bad }
' $files
