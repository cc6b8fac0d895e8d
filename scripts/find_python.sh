#!/usr/bin/env bash
# Print the path of a Python 3.10 interpreter (Rasa 3.6 needs it), or explain and fail.
set -u
candidates=(python3.10)
if command -v pyenv >/dev/null 2>&1; then
  for dir in "$(pyenv root)"/versions/3.10*; do candidates+=("$dir/bin/python3.10"); done
fi
candidates+=(/usr/bin/python3.10 /usr/local/bin/python3.10 "$HOME/.pyenv/versions/3.10*/bin/python3.10")
for candidate in "${candidates[@]}"; do
  for path in $candidate; do
    if "$path" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' >/dev/null 2>&1; then
      command -v "$path" 2>/dev/null || echo "$path"
      exit 0
    fi
  done
done
echo "error: Python 3.10 not found. Rasa 3.6 needs it: install it (pyenv install 3.10, or your distribution's python3.10) and run make again." >&2
exit 1
