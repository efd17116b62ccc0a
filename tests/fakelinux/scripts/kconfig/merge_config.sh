#!/bin/bash
# Fake merge_config.sh: `-m -O DIR BASE FRAGMENT...`; later files override earlier symbols.
set -e
OUT=.
while [ $# -gt 0 ]; do
	case "$1" in
	-m) shift ;;
	-O) OUT="$2"; shift 2 ;;
	*) break ;;
	esac
done
BASE="$1"; shift
cp "$BASE" "$OUT/.config.merge"
for frag in "$@"; do
	while IFS= read -r line; do
		sym=$(printf '%s\n' "$line" | sed -n 's/^\(# \)\{0,1\}\(CONFIG_[A-Za-z0-9_]*\)[= ].*/\2/p')
		[ -n "$sym" ] || continue
		grep -v -e "^$sym=" -e "^# $sym is not set" "$OUT/.config.merge" > "$OUT/.config.tmp" || true
		printf '%s\n' "$line" >> "$OUT/.config.tmp"
		mv "$OUT/.config.tmp" "$OUT/.config.merge"
	done < "$frag"
done
mv "$OUT/.config.merge" "$OUT/.config"
