"""The deployment files, checked without a Docker engine (also run by ``make check-deploy``).

``check-jsonschema`` validates compose.yaml against the Compose Specification and hadolint lints
the Dockerfile; these tests assert what a schema cannot: the services, their health checks and
start order, who runs what, that passwords only travel as secret files, that Prometheus scrapes
the consumer and that the Grafana dashboard only asks for metrics the worker exports. The
dashboard's SQL runs against a migrated database in tests/integration/test_dashboard_sql.py.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from consumer.metrics import Metrics
from consumer.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((REPO / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def dashboard():
    return json.loads((DEPLOY / "grafana" / "dashboards" / "paper-consumer.json").read_text())


def test_compose_has_the_services_and_the_observability_profile(compose):
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "migrate", "consumer", "prometheus", "grafana"}
    for name in ("postgres", "redis", "migrate", "consumer"):
        assert "profiles" not in services[name], name
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["observability"]
    assert services["postgres"]["image"].startswith("postgres:15")
    assert services["redis"]["image"].startswith("redis:7")


def test_servers_have_healthchecks_volumes_and_a_safe_redis_policy(compose):
    services = compose["services"]
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert "ping" in services["redis"]["healthcheck"]["test"]
    command = services["redis"]["command"]
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    named = set(compose["volumes"])
    for name in ("postgres", "redis"):
        sources = {v.split(":")[0] for v in services[name]["volumes"]}
        assert sources & named, f"{name} keeps its data in a named volume"


def test_consumer_starts_after_healthy_servers_and_a_finished_migrate(compose):
    services = compose["services"]
    assert services["consumer"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
        "migrate": {"condition": "service_completed_successfully"},
    }
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["migrate"]["command"] == ["migrate", "up"]
    assert services["migrate"]["restart"] == "no"
    assert services["consumer"]["command"] == ["run"]
    # Same image for both: the migrations ship inside the package.
    assert services["migrate"]["image"] == services["consumer"]["image"]


def test_migrate_runs_as_owner_and_the_worker_as_claire_user(compose):
    services = compose["services"]
    assert services["migrate"]["environment"]["POSTGRES_USER"] == "postgres"
    env = services["consumer"]["environment"]
    assert env["POSTGRES_USER"] == "claire_user"
    assert env["POSTGRES_HOST"] == "postgres"
    assert env["REDIS_HOST"] == "redis"
    assert env["PAPER_METRICS_PORT"] == "9108"
    # The bot's names are what Settings reads: the environment yields a working configuration.
    settings = Settings(**{k: v for k, v in env.items() if not k.endswith("_FILE")})
    assert settings.database_dsn().startswith("postgresql://claire_user@postgres:5432/")
    assert settings.redis_dsn() == "redis://redis:6379/0"
    assert settings.metrics_port == 9108


def test_passwords_only_travel_as_secret_files(compose):
    declared = set(compose["secrets"])
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if "PASSWORD" in key:
                assert key.endswith("_FILE"), f"{name}: {key} must be a *_FILE"
                secret = value.removeprefix("/run/secrets/")
                assert value.startswith("/run/secrets/"), f"{name}: {key}"
                assert secret in service["secrets"], f"{name} mounts {secret}"
        for secret in service.get("secrets", []):
            assert secret in declared
    for secret in compose["secrets"].values():
        assert secret["file"].startswith("./deploy/secrets/")
    text = (REPO / "compose.yaml").read_text()
    assert not re.search(r"PASSWORD:\s*[^/\s]", text.replace("PASSWORD_FILE", "")), "plaintext"
    # The role script reads the same secrets it is given.
    roles = (DEPLOY / "postgres" / "10-roles.sh").read_text()
    for secret in ("claire_user_password", "grafana_reader_password"):
        assert f"/run/secrets/{secret}" in roles
        assert secret in compose["services"]["postgres"]["secrets"]
    assert "CREATE ROLE claire_user LOGIN" in roles


def test_dockerfile_is_multi_stage_non_root_with_a_healthcheck():
    text = (REPO / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", text, re.M)
    assert stages == ["python:3.11-slim", "python:3.11-slim"]
    assert re.search(r"^USER (?!root|0\b)\S+", text, re.M)
    assert "/healthz" in text.split("HEALTHCHECK", 1)[1]
    assert 'ENTRYPOINT ["paper-consumer"]' in text
    assert 'CMD ["run"]' in text
    assert re.search(r"^EXPOSE 9108$", text, re.M)
    final = text.split("\nFROM ", 2)[2]
    for tool in ("gcc", "build-essential", "apt-get"):
        assert tool not in final


def test_prometheus_scrapes_the_consumer(compose):
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "paper-consumer"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = [t for group in job["static_configs"] for t in group["targets"]]
    assert targets == ["consumer:9108"]
    assert "9108" in " ".join(compose["services"]["consumer"]["ports"])


def test_grafana_provisions_both_datasources_and_the_dashboard(dashboard):
    provisioning = DEPLOY / "grafana" / "provisioning"
    sources = yaml.safe_load((provisioning / "datasources" / "datasources.yaml").read_text())
    by_uid = {s["uid"]: s for s in sources["datasources"]}
    assert by_uid["prometheus"]["url"] == "http://prometheus:9090"
    postgres = by_uid["paper-postgres"]
    assert postgres["user"] == "paper_reader"
    assert postgres["secureJsonData"]["password"].startswith("$__file{/run/secrets/")
    providers = yaml.safe_load((provisioning / "dashboards" / "dashboards.yaml").read_text())
    assert providers["providers"][0]["options"]["path"] == "/etc/grafana/dashboards"
    used = {p["datasource"]["uid"] for p in dashboard["panels"]}
    assert used == set(by_uid)


def test_dashboard_has_the_panels_the_issue_asks_for(dashboard):
    titles = " | ".join(p["title"].lower() for p in dashboard["panels"])
    for words in ("p&l over time", "open positions", "throughput", "lag", "dead letters", "p99"):
        assert words in titles
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_dashboard_asks_only_for_metrics_the_worker_exports(dashboard):
    exported = {m.name for m in Metrics().registry.collect()}
    exported |= {f"{name}_total" for name in exported} | {f"{n}_bucket" for n in exported}
    queries = [t["expr"] for p in dashboard["panels"] for t in p["targets"] if "expr" in t]
    assert queries
    for expr in queries:
        for name in re.findall(r"\bpaper_consumer_\w+", expr):
            assert name in exported, f"{name} in {expr!r}"


def test_shell_scripts_parse():
    for script in (DEPLOY / "postgres" / "10-roles.sh", DEPLOY / "make-secrets.sh"):
        subprocess.run(["sh", "-n", str(script)], check=True)
