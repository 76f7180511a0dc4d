"""Deployment artefacts, checked without Docker or a cluster.

- docker-compose.yml against the compose-spec schema (check-jsonschema's vendored copy);
- every manifest of the kustomize base deploy/k8s against the Kubernetes schemas shipped
  with kubernetes-validate (Strimzi KafkaTopics against the fields we rely on);
- deploy/Dockerfile with hadolint;
- drift: topics, environment variables and ports named in compose/k8s/Prometheus/the image
  against deploy/topics/topics.yaml, the settings classes and shared/cli.py PORTS.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any
from unittest.mock import MagicMock

import kubernetes_validate
import pytest
import yaml
from pydantic import AliasChoices

from shared.cli import PORTS
from shared.clock import Clock
from shared.contracts.topics import SERVICES, TOPICS, dead_letter_topic
from shared.devstack import topics as topic_definitions
from shared.settings import StewardSettings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
BIN = Path(sys.executable).parent  # the venv's bin: the tools come with the dev extras
K8S_VERSION = "1.30"  # the oldest Kubernetes the base claims to support
STRIMZI = "kafka.strimzi.io/v1beta2"
DUMMY_SECRET = "compose-test-secret-0123456789abcdef"
# What deploy/README.md puts in the notification providers' Secret, with stand-in values.
PROVIDERS = {
    "NOTIFICATIONS_SMS_PROVIDER": "http",
    "NOTIFICATIONS_SMS_URL": "https://sms.invalid/send",
    "NOTIFICATIONS_SMS_API_KEY": "key",
    "NOTIFICATIONS_SMS_SECRET": DUMMY_SECRET,
    "NOTIFICATIONS_WECHAT_PROVIDER": "wechat",
    "NOTIFICATIONS_WECHAT_BASE_URL": "https://wechat.invalid",
    "NOTIFICATIONS_WECHAT_APP_ID": "app",
    "NOTIFICATIONS_WECHAT_APP_SECRET": DUMMY_SECRET,
}


# --- loading -------------------------------------------------------------------------


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def app_services() -> dict[str, dict[str, Any]]:
    """Compose services built from the Steward image (the four services and `init`)."""
    return {
        name: svc
        for name, svc in compose()["services"].items()
        if svc.get("build", {}).get("dockerfile") == "deploy/Dockerfile"
    }


@cache
def kustomization() -> dict[str, Any]:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


@cache
def manifests() -> tuple[dict[str, Any], ...]:
    """The base rendered the way kustomize would: every document of every `resources` file."""
    documents: list[dict[str, Any]] = []
    for resource in kustomization()["resources"]:
        path = K8S / resource
        documents += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return tuple(documents)


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in manifests() if doc["kind"] == kind]


def manifest_id(doc: dict[str, Any]) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


def dockerfile_env() -> set[str]:
    """Variables the image itself sets (ENV lines), e.g. STEWARD_SERVICE."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("ENV "):
            names |= set(re.findall(r"([A-Z_][A-Z0-9_]*)=", line))
    return names


def settings_class(service: str) -> type[StewardSettings] | None:
    """The service's settings class, or None while its module does not exist yet."""
    try:
        module = importlib.import_module(f"services.{service}.settings")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith(f"services.{service}"):
            return None
        raise
    classes = [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, StewardSettings)
        and value.__module__ == module.__name__
    ]
    assert len(classes) == 1, f"services.{service}.settings should define one settings class"
    return classes[0]


def env_names(cls: type[StewardSettings]) -> set[str]:
    """The environment variables pydantic-settings reads for a settings class."""
    names: set[str] = set()
    for name, field in cls.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, str):
            names.add(alias.upper())
        elif isinstance(alias, AliasChoices):
            names |= {c.upper() for c in alias.choices if isinstance(c, str)}
        else:
            names.add(name.upper())
    return names


def expected_env(service: str | None) -> set[str]:
    """What a container of `service` (None: a one-shot job) may set."""
    if service is None:
        return env_names(StewardSettings) | dockerfile_env()
    cls = settings_class(service)
    if cls is None:  # not written yet: the shared settings plus its port
        names = (env_names(StewardSettings) - {"PORT"}) | {f"{service.upper()}_PORT"}
    else:
        names = env_names(cls)
    return names | dockerfile_env()


def interpolate(value: Any) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error}, with test values for required ones."""

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if op in (":-", "-"):
            return arg
        return "test-password" if name == "POSTGRES_PASSWORD" else DUMMY_SECRET

    return re.sub(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}", substitute, str(value))


def container_env(container: dict[str, Any]) -> dict[str, Any]:
    """A k8s container's environment: ConfigMap keys (envFrom) and env entries."""
    maps = {cm["metadata"]["name"]: cm["data"] for cm in of_kind("ConfigMap")}
    env: dict[str, Any] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:  # a secretRef's keys are not committed
            env |= maps[source["configMapRef"]["name"]]
    for entry in container.get("env", []):
        env[entry["name"]] = entry.get("value", entry.get("valueFrom"))
    return env


def deployment(service: str) -> dict[str, Any]:
    [doc] = [d for d in of_kind("Deployment") if d["metadata"]["name"] == service]
    return doc


def main_container(service: str) -> dict[str, Any]:
    [container] = deployment(service)["spec"]["template"]["spec"]["containers"]
    return container


def settings_from(service: str, env: dict[str, Any]) -> StewardSettings:
    """Instantiate the service's settings from exactly this environment."""
    cls = settings_class(service) or StewardSettings
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update({k: str(v) for k, v in env.items()})
        return cls()  # type: ignore[call-arg]
    finally:
        os.environ.clear()
        os.environ.update(saved)


# --- compose -------------------------------------------------------------------------


def run_tool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=120, cwd=ROOT
    )


def test_compose_file_matches_the_compose_spec():
    result = run_tool(
        BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", COMPOSE_FILE
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_compose_spec_check_rejects_a_broken_file(tmp_path):
    broken = tmp_path / "compose.yml"
    document = compose() | {"services": {"tiering": {"image": "steward", "helthcheck": {}}}}
    broken.write_text(yaml.safe_dump(document))
    result = run_tool(BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", broken)
    assert result.returncode != 0
    assert "helthcheck" in result.stdout


def test_compose_runs_every_service_on_its_port_with_a_health_check():
    apps = app_services()
    assert set(apps) == {*SERVICES, "init"}
    for name in SERVICES:
        svc, port = apps[name], PORTS[name]
        assert svc["command"] == ["python", "-m", f"services.{name}"]
        assert svc["environment"]["STEWARD_SERVICE"] == name  # the health check's port
        assert int(svc["environment"][f"{name.upper()}_PORT"]) == port
        assert svc["ports"] == [f"127.0.0.1:{port}:{port}"]  # this machine only
        assert svc["healthcheck"]["test"][-2:] == ["/opt/steward/healthcheck.py", "/readyz"]
        assert svc["depends_on"] == {
            "kafka": {"condition": "service_healthy"},
            "postgres": {"condition": "service_healthy"},
            "init": {"condition": "service_completed_successfully"},
        }
    for infra in ("kafka", "postgres"):
        assert compose()["services"][infra]["healthcheck"]["test"]


def test_compose_init_creates_topics_and_migrates():
    init = app_services()["init"]
    script = init["command"][-1]
    assert "steward topics --replication 1" in script
    assert "steward migrate" in script
    assert init["restart"] == "no"
    assert init["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert interpolate(init["environment"]["DATABASE_URL"]).startswith("postgresql+asyncpg://")


def test_compose_kafka_is_a_single_kraft_node_without_auto_created_topics():
    kafka = compose()["services"]["kafka"]
    env = kafka["environment"]
    assert kafka["image"].startswith("apache/kafka:")
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert "kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert compose()["services"]["postgres"]["image"].startswith("postgres:")


def test_compose_settings_are_production_ones_and_secrets_come_from_the_environment():
    for name in SERVICES:
        env = app_services()[name]["environment"]
        assert env["STEWARD_ENV"] == "prod"
        assert env["STEWARD_KAFKA_IDEMPOTENCE"] == "true"
        assert re.fullmatch(r"\$\{STEWARD_JWT_SECRET:\?[^}]+\}", env["STEWARD_JWT_SECRET"])
        assert "${POSTGRES_PASSWORD:?" in env["DATABASE_URL"]


@pytest.mark.parametrize("name", [*SERVICES, "init"])
def test_compose_env_vars_are_settings_of_the_service(name):
    service = None if name == "init" else name
    env = app_services()[name]["environment"]
    unknown = set(env) - expected_env(service)
    assert not unknown, f"{name} sets variables no settings class reads: {sorted(unknown)}"
    if service:  # and the values parse: the service would start with them
        settings = settings_from(service, {k: interpolate(v) for k, v in env.items()})
        assert settings.port == PORTS[service]
        assert not settings.is_dev
        assert settings.steward_kafka_idempotence is True


def test_prometheus_scrapes_every_service_metrics_endpoint():
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    targets = {
        job["job_name"]: (job.get("metrics_path", "/metrics"), job["static_configs"][0]["targets"])
        for job in config["scrape_configs"]
    }
    assert targets == {name: ("/metrics", [f"{name}:{PORTS[name]}"]) for name in SERVICES}
    mounts = compose()["services"]["prometheus"]["volumes"]
    assert "./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounts


# --- Dockerfile ----------------------------------------------------------------------


def test_dockerfile_passes_hadolint():
    result = run_tool(BIN / "hadolint", DOCKERFILE)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install requests\nCMD python -m x\n")
    result = run_tool(BIN / "hadolint", bad)
    assert result.returncode != 0
    assert "DL3006" in result.stdout  # untagged base image


def test_every_hadolint_ignore_says_why():
    for line in DOCKERFILE.read_text().splitlines():
        if "hadolint ignore=" in line:
            reason = re.sub(r"#\s*hadolint ignore=\S+", "", line).strip(" #-:")
            assert reason, f"explain the ignored rule: {line!r}"


def test_image_is_slim_non_root_and_installs_the_project_without_dev_extras():
    text = DOCKERFILE.read_text()
    bases = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert bases and all(b.startswith("python:3.11-slim") for b in bases)
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    installs = re.findall(r"pip install [^\n]*", text)
    assert installs == ["pip install --no-cache-dir -c constraints.txt ."]  # exact versions
    assert 'CMD ["python", "/opt/steward/healthcheck.py", "/healthz"]' in text
    assert set(map(int, re.findall(r"^EXPOSE (.+)$", text, re.MULTILINE)[0].split())) == set(
        PORTS.values()
    )


def test_image_puts_the_topics_file_where_the_installed_cli_reads_it():
    # shared/devstack/topics.py reads <dir holding the `shared` package>/deploy/topics/…;
    # installed, that directory is the venv's site-packages
    relative = topic_definitions.TOPICS_FILE.relative_to(ROOT)
    site_packages = "/opt/venv/lib/python3.11/site-packages"
    assert f"COPY {relative} {site_packages}/{relative}" in DOCKERFILE.read_text()


def test_dockerignore_sends_what_the_image_needs():
    allowed = {
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    copies = re.findall(r"^COPY (?!--from)(.+)$", DOCKERFILE.read_text(), re.MULTILINE)
    copied = {source for line in copies for source in line.split()[:-1]}  # all but the target
    assert "constraints.txt" in copied
    assert {c.rstrip("/") for c in copied} <= allowed


def test_healthcheck_script_knows_the_code_ports():
    spec = importlib.util.spec_from_file_location("healthcheck", DEPLOY / "healthcheck.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.DEFAULT_PORTS == PORTS


# --- Kubernetes ----------------------------------------------------------------------


def test_kustomization_uses_only_what_this_render_understands():
    assert set(kustomization()) <= {"apiVersion", "kind", "resources", "images"}
    assert all((K8S / r).is_file() for r in kustomization()["resources"])


@pytest.mark.parametrize(
    "doc", [d for d in manifests() if d["apiVersion"] != STRIMZI], ids=manifest_id
)
def test_manifest_matches_the_kubernetes_schema(doc):
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{manifest_id(doc)}: {exc.message} at {list(exc.absolute_path)}")


def test_the_kubernetes_schema_check_rejects_a_broken_manifest():
    doc = yaml.safe_load(yaml.safe_dump(deployment("tiering")))
    doc["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_k8s_files_are_what_the_generator_writes():
    spec = importlib.util.spec_from_file_location("k8s_generate", K8S / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    for name, content in module.render().items():
        assert (K8S / name).read_text() == content, (
            f"deploy/k8s/{name} is stale: run .venv/bin/python deploy/k8s/generate.py"
        )


def test_each_service_has_deployment_service_budget_and_autoscaler():
    for kind in ("Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"):
        assert {d["metadata"]["name"] for d in of_kind(kind)} == set(SERVICES), kind
    for name in SERVICES:
        pod_labels = deployment(name)["spec"]["template"]["metadata"]["labels"]
        [svc] = [s for s in of_kind("Service") if s["metadata"]["name"] == name]
        [pdb] = [p for p in of_kind("PodDisruptionBudget") if p["metadata"]["name"] == name]
        [hpa] = [h for h in of_kind("HorizontalPodAutoscaler") if h["metadata"]["name"] == name]
        assert svc["spec"]["selector"].items() <= pod_labels.items()
        assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
        assert hpa["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": name,
        }
        assert hpa["spec"]["minReplicas"] > pdb["spec"]["minAvailable"]


@pytest.mark.parametrize("name", SERVICES)
def test_deployment_probes_resources_and_security(name):
    container = main_container(name)
    pod = deployment(name)["spec"]["template"]["spec"]
    assert container["command"] == ["python", "-m", f"services.{name}"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz/http"  # the API's
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for kind in ("requests", "limits"):
        assert set(container["resources"][kind]) == {"cpu", "memory"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False


@pytest.mark.parametrize("name", SERVICES)
def test_k8s_ports_are_the_code_ports(name):
    port = PORTS[name]
    container = main_container(name)
    [svc] = [s for s in of_kind("Service") if s["metadata"]["name"] == name]
    annotations = deployment(name)["spec"]["template"]["metadata"]["annotations"]
    assert [p["containerPort"] for p in container["ports"]] == [port]
    assert [p["port"] for p in svc["spec"]["ports"]] == [port]
    assert annotations["prometheus.io/port"] == str(port)
    assert container_env(container)[f"{name.upper()}_PORT"] == str(port)


def k8s_containers() -> list[tuple[str | None, dict[str, Any]]]:
    """(service or None for a job, container) for every container of the base."""
    found: list[tuple[str | None, dict[str, Any]]] = []
    for doc in of_kind("Deployment") + of_kind("Job"):
        for container in doc["spec"]["template"]["spec"]["containers"]:
            service = doc["metadata"]["name"] if doc["kind"] == "Deployment" else None
            found.append((service, container))
    return found


@pytest.mark.parametrize(
    ("service", "container"), k8s_containers(), ids=lambda v: v if isinstance(v, str) else None
)
def test_k8s_env_vars_are_settings_of_the_service(service, container):
    env = container_env(container)
    unknown = set(env) - expected_env(service)
    assert not unknown, f"{container['name']} sets variables no settings class reads: {unknown}"
    for secret in ("DATABASE_URL", "STEWARD_JWT_SECRET"):
        if secret in env:  # secrets by reference only
            assert set(env[secret]) == {"secretKeyRef"}, secret
    if service:
        resolved = {
            k: (DUMMY_SECRET if isinstance(v, dict) else v)
            for k, v in env.items()
            if k != "DATABASE_URL"
        }
        if service == "notifications":  # its Secret of provider settings, as the README says
            secrets = [f["secretRef"]["name"] for f in container["envFrom"] if "secretRef" in f]
            assert secrets == ["steward-notification-providers"]
            resolved |= PROVIDERS
        settings = settings_from(service, resolved | {"DATABASE_URL": "postgresql+asyncpg://x"})
        assert settings.port == PORTS[service]
        assert not settings.is_dev
        assert settings.steward_kafka_idempotence is True


def test_no_secret_values_are_committed():
    assert not of_kind("Secret")
    config = {k for cm in of_kind("ConfigMap") for k in cm["data"]}
    assert not config & {"DATABASE_URL", "STEWARD_JWT_SECRET"}


def test_migration_job_migrates_every_service_with_its_own_database_secret():
    [job] = of_kind("Job")
    containers = job["spec"]["template"]["spec"]["containers"]
    assert {c["name"]: c["command"] for c in containers} == {
        name: ["steward", "migrate", name] for name in SERVICES
    }
    for c in containers:
        service_ref = container_env(main_container(c["name"]))["DATABASE_URL"]
        assert container_env(c)["DATABASE_URL"] == service_ref


# --- topics --------------------------------------------------------------------------


def test_kafka_topics_match_the_topic_definitions():
    declared = {t.name: t for t in topic_definitions.load_topics()}
    resources = of_kind("KafkaTopic")
    assert {r["spec"]["topicName"] for r in resources} == set(declared)
    assert len(resources) == len(declared)
    for resource in resources:
        assert resource["apiVersion"] == STRIMZI
        assert resource["metadata"]["labels"]["strimzi.io/cluster"]
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", resource["metadata"]["name"])
        spec, topic = resource["spec"], declared[resource["spec"]["topicName"]]
        assert set(spec) <= {"topicName", "partitions", "replicas", "config"}
        assert (spec["partitions"], spec["replicas"]) == (
            topic.partitions,
            topic.replication_factor,
        )
        assert int(spec["config"]["retention.ms"]) == topic.retention_ms
        assert spec["config"]["min.insync.replicas"] <= spec["replicas"]


def test_topic_definitions_cover_every_topic_the_code_uses():
    used = set(TOPICS) | {dead_letter_topic(s) for s in SERVICES}
    assert {t.name for t in topic_definitions.load_topics()} == used


def test_every_topic_named_in_compose_or_k8s_is_defined():
    declared = {t.name for t in topic_definitions.load_topics()}
    topic_like = re.compile(r"\b[a-z]+\.[a-z-]+\.v\d+\b")
    texts = [COMPOSE_FILE.read_text(), (DEPLOY / "prometheus.yml").read_text()]
    texts += [(K8S / r).read_text() for r in kustomization()["resources"]]
    named = {m for text in texts for m in topic_like.findall(text)}
    assert named - declared == set()


# --- scaling -------------------------------------------------------------------------


def prod_settings(service: str) -> Any:
    """The service's settings as a cluster would give them (image defaults, prod env)."""
    return settings_from(
        service,
        {
            "KAFKA_BOOTSTRAP_SERVERS": "kafka:9092",
            "DATABASE_URL": "postgresql+asyncpg://x",
            "STEWARD_JWT_SECRET": DUMMY_SECRET,
            "STEWARD_ENV": "prod",
            # the providers' Secret is not committed: its stand-in, the sandbox, allowed
            "NOTIFICATIONS_ALLOW_SANDBOX": "true",
        },
    )


def subscription_partitions(service: str) -> dict[str, int]:
    """Partitions of each consumer group of a service (wiring read without starting it)."""
    try:
        spec = importlib.import_module(f"services.{service}.app").SPEC
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith(f"services.{service}"):
            pytest.skip(f"services.{service} is not built yet")
        raise
    settings = prod_settings(service)
    # wire() only builds handlers; whatever else of the runtime it touches is a stand-in
    runtime = MagicMock(settings=settings, state={}, clock=Clock(), spec=None)
    runtime.name = service
    partitions = {t.name: t.partitions for t in topic_definitions.load_topics()}
    wiring = spec.wire(runtime)
    return {sub.name: sum(partitions[t] for t in sub.topics) for sub in wiring.subscriptions}


@pytest.mark.parametrize("name", SERVICES)
def test_autoscaler_never_exceeds_the_partitions_of_a_consumer_group(name):
    # a group member beyond its partition count gets no partitions and is never ready;
    # each replica runs CONSUMER_CONCURRENCY members of every group
    [hpa] = [h for h in of_kind("HorizontalPodAutoscaler") if h["metadata"]["name"] == name]
    groups = subscription_partitions(name)
    assert groups, f"{name} has no consumers?"
    members = prod_settings(name).consumer_concurrency
    assert hpa["spec"]["maxReplicas"] * members <= min(groups.values()), (members, groups)


# --- database roles ------------------------------------------------------------------


def test_roles_sql_gives_each_service_its_own_schema_only():
    sql = (DEPLOY / "postgres" / "roles.sql").read_text()
    listed = re.search(r"unnest\(ARRAY\[([^\]]*)\]\)", sql)
    assert listed and re.findall(r"'(\w+)'", listed.group(1)) == list(SERVICES)
    grants = re.findall(r"GRANT USAGE, CREATE ON SCHEMA (\w+) TO (\w+);", sql)
    assert sorted(grants) == sorted((s, f"steward_{s}") for s in SERVICES)
