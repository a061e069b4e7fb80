"""No command prints a password from DATABASE_URL or REDIS_URL, however malformed (issue 22.1).

Every command that reads a URL runs as a subprocess with the malformed URLs of the issue — an
unclosed IPv6 bracket, an unescaped '@' in the password — in either variable: it must stop at
once with exit 2 and one line naming the variable, and neither half of the password may appear in
its stdout or stderr. A well-formed URL with a password to a server that is not there must fail
(exit 1) without printing the password either.
"""

from __future__ import annotations

import pytest

from tests.acceptance.test_cli import cli

# The two halves of a password that holds an '@': libpq reads only the first half as the
# password and prints the second as part of a host name.
HEAD = "pgHeadQ7"
TAIL = "PWtailZ9"
SECRETS = (HEAD, TAIL, f"{HEAD}%40{TAIL}", f"{HEAD}@{TAIL}")

MALFORMED = {
    "DATABASE_URL": {
        "unclosed-bracket": f"postgresql://u:{HEAD}%40{TAIL}@[::1/x",
        "unescaped-at": f"postgresql://u:{HEAD}@{TAIL}@127.0.0.1:5432/x",
    },
    "REDIS_URL": {
        "unclosed-bracket": f"redis://:{HEAD}%40{TAIL}@[::1/0",
        "unescaped-at": f"redis://:{HEAD}@{TAIL}@127.0.0.1:6379/15",
    },
}

# Every command that reads DATABASE_URL or REDIS_URL (demo starts servers of its own, but its
# settings are read from the same environment first).
COMMANDS = {
    "status": ["status"],
    "migrate-status": ["migrate", "status"],
    "migrate-up": ["migrate", "up"],
    "migrate-verify": ["migrate", "verify"],
    "migrate-down": ["migrate", "down", "--to", "0"],
    "run": ["run", "--until-idle"],
    "replay": ["replay"],
    "export": ["export", "--out", "/nonexistent-dir/never-written.jsonl"],
    "prune": ["prune", "--older-than", "90d"],
    "report": ["report"],
    "snapshot": ["snapshot"],
    "publish": ["publish", "--events", "1"],
    "demo": ["demo", "--events", "1", "--data-dir", "/nonexistent-dir/demo"],
}


def _env(variable: str, url: str, db_url: str, redis_url: str) -> dict[str, str]:
    env = {"DATABASE_URL": db_url, "REDIS_URL": redis_url, "PAPER_METRICS_PORT": "0"}
    env[variable] = url
    return env


def _assert_no_secret(output: str) -> None:
    for secret in SECRETS:
        assert secret not in output, f"{secret!r} printed:\n{output}"


@pytest.mark.slow
@pytest.mark.parametrize("variable", sorted(MALFORMED))
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_malformed_url_is_one_error_naming_the_variable_without_the_password(
    command, variable, db_url, redis_url
):
    for kind, url in MALFORMED[variable].items():
        result = cli(*COMMANDS[command], env=_env(variable, url, db_url, redis_url), timeout=30)
        output = result.stdout + result.stderr
        _assert_no_secret(output)
        assert result.returncode == 2, f"{kind}: {output}"
        assert result.stdout == ""
        (line,) = result.stderr.splitlines()  # one clear line, no traceback
        assert variable in line, kind


@pytest.mark.parametrize("kind", sorted(MALFORMED["DATABASE_URL"]))
def test_a_malformed_replay_database_url_flag_is_refused_the_same_way(kind, db_url, redis_url):
    url = MALFORMED["DATABASE_URL"][kind]
    env = _env("DATABASE_URL", db_url, db_url, redis_url)
    result = cli("replay", "--database-url", url, env=env, timeout=30)
    _assert_no_secret(result.stdout + result.stderr)
    assert result.returncode == 2, result.stderr
    assert "--database-url" in result.stderr


UNREACHABLE = {
    "DATABASE_URL": f"postgresql://u:{HEAD}%40{TAIL}@127.0.0.1:1/x?connect_timeout=2",
    "REDIS_URL": f"redis://:{HEAD}%40{TAIL}@127.0.0.1:1/0",
}
READS = {
    "DATABASE_URL": ["status", "migrate-status", "prune", "report", "snapshot", "replay"],
    "REDIS_URL": ["status", "publish", "export"],
}


@pytest.mark.slow
@pytest.mark.parametrize("variable", sorted(UNREACHABLE))
def test_a_server_that_is_not_there_fails_without_printing_the_password(
    variable, db_url, redis_url
):
    for command in READS[variable]:
        env = _env(variable, UNREACHABLE[variable], db_url, redis_url)
        result = cli(*COMMANDS[command], env=env, timeout=30)
        _assert_no_secret(result.stdout + result.stderr)
        assert result.returncode == 1, f"{command}: {result.stdout + result.stderr}"
