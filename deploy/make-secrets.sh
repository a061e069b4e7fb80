#!/bin/sh
# Create the compose secrets (random passwords) under deploy/secrets/, keeping existing ones.
# The folder is private to you (0700); the files are 0644 because compose bind-mounts them as
# they are, and the containers read them as their own non-root users (postgres, uid 10001).
set -eu
dir="$(dirname "$0")/secrets"
mkdir -p "$dir"
chmod 700 "$dir"
for name in postgres_owner_password claire_user_password grafana_reader_password \
    grafana_admin_password; do
    if [ ! -s "$dir/$name" ]; then
        python3 -c 'import secrets; print(secrets.token_urlsafe(24))' > "$dir/$name"
        chmod 644 "$dir/$name"
        echo "created $dir/$name"
    fi
done
