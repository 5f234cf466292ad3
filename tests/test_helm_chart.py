"""Tests of the Helm chart in helm/pgsched.

The chart is rendered and linted with the real Helm engine through
``helm_python`` (helm-python-sdk: Helm's Go SDK behind a C ABI, no ``helm``
binary or cluster), and every rendered manifest is validated against the
Kubernetes OpenAPI schemas shipped by ``kubernetes_validate``. No network.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import shutil
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART_DIR = ROOT / "helm" / "pgsched"
EXAMPLE_VALUES = ROOT / "examples" / "values.yaml"

RELEASE = "rel"
NAMESPACE = "jobs"
FULLNAME = "rel-pgsched"

# The chart's kubeVersion floor and the newest schemas kubernetes-validate ships.
K8S_VERSIONS = ("1.25.0", kubernetes_validate.utils.latest_version() + ".0")

# Custom resources: their CRDs are not part of the Kubernetes schemas, so
# kubernetes-validate cannot check them. Only these are skipped (and they get
# hand-written checks below); any other unknown kind fails the test.
CRD_KINDS = {
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
}

SECRET_TOKEN = "s3cr3t-xyz"
DB_URL = f"postgresql://u:{SECRET_TOKEN}@db/app"
LISTEN_URL = f"postgresql://u:{SECRET_TOKEN}@db-direct/app"

QUEUES = ["default", "emails", "reports.daily:v2-x_y"]

ALL_FEATURES: dict[str, Any] = {
    "app": "myapp.tasks:app",
    "image": {"repository": "registry.example.com/myapp", "tag": "1.2.3"},
    "imagePullSecrets": [{"name": "regcred"}],
    "queues": QUEUES,
    "concurrency": 16,
    "database": {"url": DB_URL, "listenUrl": LISTEN_URL, "schema": "jobs_v1"},
    "worker": {
        "shutdownGraceSeconds": 120,
        "terminationGraceMarginSeconds": 20,
        "healthPort": 8081,
        "logLevel": "DEBUG",
    },
    "extraEnv": [{"name": "APP_MODE", "value": "prod"}],
    "envFrom": [{"secretRef": {"name": "app-secrets"}}, {"configMapRef": {"name": "app-config"}}],
    "podAnnotations": {"example.com/team": "platform"},
    "podLabels": {"tier": "jobs"},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "jobs", "operator": "Exists", "effect": "NoSchedule"}],
    "topologySpreadConstraints": [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "pgsched"}},
        }
    ],
    "priorityClassName": "batch",
    "extraVolumes": [{"name": "certs", "secret": {"secretName": "db-ca"}}],
    "extraVolumeMounts": [{"name": "certs", "mountPath": "/certs", "readOnly": True}],
    "serviceAccount": {"annotations": {"iam.example.com/role": "jobs"}},
    "migrations": {"podAnnotations": {"example.com/migrate": "yes"}},
    "keda": {
        "enabled": True,
        "minReplicaCount": 2,
        "maxReplicaCount": 20,
        "targetQueryValue": 16,
        "advanced": {"restoreToOriginalReplicaCount": True},
    },
    "podDisruptionBudget": {"enabled": True, "minAvailable": 1},
    "metrics": {
        "service": {"enabled": True},
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
    },
    "networkPolicy": {
        "enabled": True,
        "metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
        "databaseTo": [{"ipBlock": {"cidr": "10.0.0.0/16"}}],
        "extraEgress": [{"ports": [{"port": 443, "protocol": "TCP"}]}],
    },
}


def with_hpa(values: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(values)
    out["keda"] = {"enabled": False}
    out["autoscaling"] = {
        "enabled": True,
        "minReplicas": 2,
        "maxReplicas": 8,
        "targetMemoryUtilizationPercentage": 80,
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
    }
    return out


def example_values() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE_VALUES.read_text())


VALUE_SETS = {
    "defaults": {},
    "all-features-keda": ALL_FEATURES,
    "all-features-hpa": with_hpa(ALL_FEATURES),
    "examples-values": example_values(),
}


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def chart():
    with helm.Chart.load(CHART_DIR) as loaded:
        yield loaded


def render_files(chart, values: dict[str, Any] | None = None) -> dict[str, str]:
    return chart.render(values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True)


def render(chart, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Render and parse every manifest (NOTES.txt excluded)."""
    docs = []
    for path, text in sorted(render_files(chart, values).items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return docs


def render_raw(chart, values: dict[str, Any] | None = None) -> dict[tuple[str, str], str]:
    """(kind, name) -> the manifest's rendered text."""
    out = {}
    for path, text in render_files(chart, values).items():
        if path.endswith("NOTES.txt"):
            continue
        for chunk in re.split(r"^---\s*$", text, flags=re.M):
            doc = yaml.safe_load(chunk)
            if doc:
                out[(doc["kind"], doc["metadata"]["name"])] = chunk
    return out


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


def kinds(docs: list[dict[str, Any]]) -> list[str]:
    return sorted(d["kind"] for d in docs)


def container(doc: dict[str, Any]) -> dict[str, Any]:
    containers = doc["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env_map(ctr: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in ctr.get("env", [])}


def env_value(ctr: dict[str, Any], name: str) -> str:
    entry = env_map(ctr)[name]
    assert "value" in entry, f"{name} is not a literal value: {entry}"
    return entry["value"]


def reject_message(chart, values: dict[str, Any]) -> str:
    with pytest.raises(helm.HelmError) as info:
        render_files(chart, values)
    return str(info.value)


# --------------------------------------------------------------------------- lint + schemas


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_helm_lint_passes(values):
    report = helm.lint(CHART_DIR, values, strict=True, namespace=NAMESPACE)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], report


@pytest.mark.parametrize("k8s_version", K8S_VERSIONS)
@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_manifests_validate_against_kubernetes_schemas(chart, values, k8s_version):
    docs = render(chart, values)
    assert docs
    skipped = set()
    for doc in docs:
        key = (doc["apiVersion"], doc["kind"])
        if key in CRD_KINDS:
            skipped.add(key)
            continue
        try:
            kubernetes_validate.validate(doc, k8s_version, strict=True)
        except kubernetes_validate.ValidationError as err:
            pytest.fail(
                f"{doc['kind']}/{doc['metadata']['name']} invalid for k8s "
                f"{k8s_version} at {list(err.path)}: {err.message}"
            )
    if values is ALL_FEATURES:
        assert skipped == CRD_KINDS


def test_defaults_render_only_the_core_resources(chart):
    docs = render(chart)
    assert kinds(docs) == ["Deployment", "Job", "ServiceAccount"]


def test_all_features_render_every_optional_resource(chart):
    assert kinds(render(chart, ALL_FEATURES)) == sorted(
        [
            "Deployment",
            "Job",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "ScaledObject",
            "Secret",
            "Service",
            "ServiceAccount",
            "ServiceMonitor",
            "TriggerAuthentication",
        ]
    )
    assert "HorizontalPodAutoscaler" in kinds(render(chart, with_hpa(ALL_FEATURES)))
    assert "ScaledObject" not in kinds(render(chart, with_hpa(ALL_FEATURES)))


# --------------------------------------------------------------------------- worker contract


def test_default_image_is_the_chart_app_version(chart):
    deployment = one(render(chart), "Deployment")
    assert (
        container(deployment)["image"] == f"ghcr.io/pgsched/pgsched:{chart.metadata['appVersion']}"
    )
    pinned = {"image": {"tag": "9.9.9", "digest": "sha256:" + "a" * 64}}
    assert container(one(render(chart, pinned), "Deployment"))["image"] == (
        "ghcr.io/pgsched/pgsched:9.9.9@sha256:" + "a" * 64
    )


@pytest.mark.parametrize(
    ("values", "app", "queues"),
    [
        ({}, "examples/quickstart.py", None),
        ({"app": "myapp.tasks:app", "queues": ["a", "b"],
          "image": {"repository": "registry.example.com/myapp"}}, "myapp.tasks:app", "a,b"),
    ],
)
def test_worker_command(chart, values, app, queues):
    ctr = container(one(render(chart, values), "Deployment"))
    assert ctr["command"] == ["pgsched"]
    args = ctr["args"]
    assert args[:2] == ["worker", app]
    if queues is None:
        assert "--queues" not in args
    else:
        assert args[args.index("--queues") + 1] == queues


@pytest.mark.parametrize("port", [None, 8081])
def test_probes_hit_the_health_server_port(chart, port):
    values = {} if port is None else {"worker": {"healthPort": port}}
    expected = 9108 if port is None else port
    ctr = container(one(render(chart, values), "Deployment"))

    ports = {p["name"]: p["containerPort"] for p in ctr["ports"]}
    assert ports == {"health": expected}
    assert ctr["args"][ctr["args"].index("--health-port") + 1] == str(expected)
    assert env_value(ctr, "PGSCHED_HEALTH_PORT") == str(expected)
    # pgsched binds 127.0.0.1 by default; the kubelet probes the pod's IP.
    assert env_value(ctr, "PGSCHED_HEALTH_HOST") == "0.0.0.0"

    for probe, path in (
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
        ("startupProbe", "/healthz"),
    ):
        get = ctr[probe]["httpGet"]
        assert get["path"] == path
        assert get["port"] in ("health", expected)


def test_metrics_service_and_servicemonitor_target_the_health_port(chart):
    docs = render(chart, ALL_FEATURES)
    service = one(docs, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "health"
    deployment = one(docs, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()

    monitor = one(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"][0]["port"] == "health"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [NAMESPACE]


def test_environment_contract(chart):
    docs = render(chart, ALL_FEATURES)
    ctr = container(one(docs, "Deployment"))
    assert env_value(ctr, "PGSCHED_SCHEMA") == "jobs_v1"
    assert env_value(ctr, "PGSCHED_CONCURRENCY") == "16"
    assert env_value(ctr, "PGSCHED_LOG_JSON") == "true"
    assert env_value(ctr, "PGSCHED_LOG_LEVEL") == "DEBUG"
    assert env_value(ctr, "PGSCHED_HEARTBEAT_INTERVAL") == "5"
    assert env_value(ctr, "PGSCHED_TAKEOVER_TIMEOUT") == "30"
    assert env_value(ctr, "APP_MODE") == "prod"
    assert ctr["envFrom"] == ALL_FEATURES["envFrom"]

    job = container(one(docs, "Job"))
    assert job["command"] == ["pgsched"] and job["args"] == ["migrate"]
    assert env_value(job, "PGSCHED_SCHEMA") == "jobs_v1"
    assert job["envFrom"] == ALL_FEATURES["envFrom"]


@pytest.mark.parametrize(("grace", "margin"), [(None, None), (120, 20), (0, 1), (3600, 5)])
def test_termination_grace_outlasts_the_worker_grace(chart, grace, margin):
    worker = {}
    if grace is not None:
        worker = {"shutdownGraceSeconds": grace, "terminationGraceMarginSeconds": margin}
    deployment = one(render(chart, {"worker": worker}), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    worker_grace = int(env_value(container(deployment), "PGSCHED_SHUTDOWN_GRACE"))
    assert worker_grace == (30 if grace is None else grace)
    assert pod["terminationGracePeriodSeconds"] > worker_grace
    assert pod["terminationGracePeriodSeconds"] == worker_grace + (15 if margin is None else margin)


def test_restrictive_security_context(chart):
    docs = render(chart, ALL_FEATURES)
    for kind in ("Deployment", "Job"):
        doc = one(docs, kind)
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        sc = container(doc)["securityContext"]
        assert sc["runAsNonRoot"] is True
        assert sc["runAsUser"] == 10001
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        mounts = {m["mountPath"]: m["name"] for m in container(doc)["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]]


def test_autoscaler_owns_replicas(chart):
    assert one(render(chart, {"replicaCount": 3}), "Deployment")["spec"]["replicas"] == 3
    assert "replicas" not in one(render(chart, ALL_FEATURES), "Deployment")["spec"]
    docs = render(chart, with_hpa(ALL_FEATURES))
    assert "replicas" not in one(docs, "Deployment")["spec"]
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": FULLNAME,
    }
    assert {m["resource"]["name"] for m in hpa["spec"]["metrics"]} == {"cpu", "memory"}


def test_network_policy_opens_only_the_health_port(chart):
    policy = one(render(chart, ALL_FEATURES), "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    [ingress] = policy["spec"]["ingress"]
    assert ingress["ports"] == [{"port": "health", "protocol": "TCP"}]
    egress_ports = [p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]]
    assert egress_ports == [53, 53, 5432, 443]


# --------------------------------------------------------------------------- secrets + hooks


def _assert_secret_ref(ctr: dict[str, Any], env: str, name: str, key: str) -> None:
    entry = env_map(ctr)[env]
    assert "value" not in entry
    assert entry["valueFrom"]["secretKeyRef"] == {"name": name, "key": key}


def test_database_url_only_inside_the_chart_made_secret(chart):
    values = {"database": {"url": DB_URL, "listenUrl": LISTEN_URL}}
    raw = render_raw(chart, values)
    secret_name = f"{FULLNAME}-database"
    encoded = [base64.b64encode(u.encode()).decode() for u in (DB_URL, LISTEN_URL)]

    for (kind, name), text in raw.items():
        if (kind, name) == ("Secret", secret_name):
            continue
        assert SECRET_TOKEN not in text, f"database password leaked into {kind}/{name}"
        for blob in encoded:
            assert blob not in text, f"encoded database URL leaked into {kind}/{name}"
    notes = render_files(chart, values)["pgsched/templates/NOTES.txt"]
    assert SECRET_TOKEN not in notes

    docs = render(chart, values)
    secret = one(docs, "Secret")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data == {"database-url": DB_URL, "listen-database-url": LISTEN_URL}

    for kind in ("Deployment", "Job"):
        ctr = container(one(docs, kind))
        _assert_secret_ref(ctr, "PGSCHED_DATABASE_URL", secret_name, "database-url")
        _assert_secret_ref(ctr, "PGSCHED_LISTEN_DATABASE_URL", secret_name, "listen-database-url")
    # Workers roll when the chart-made Secret changes.
    annotations = one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert re.fullmatch(r"[0-9a-f]{64}", annotations["checksum/database-secret"])


def test_existing_secret_is_referenced_not_created(chart):
    values = {
        "database": {
            "existingSecret": "prod-db",
            "existingSecretKey": "uri",
            "existingSecretListenKey": "direct-uri",
        }
    }
    docs = render(chart, values)
    assert "Secret" not in kinds(docs)
    for kind in ("Deployment", "Job"):
        ctr = container(one(docs, kind))
        _assert_secret_ref(ctr, "PGSCHED_DATABASE_URL", "prod-db", "uri")
        _assert_secret_ref(ctr, "PGSCHED_LISTEN_DATABASE_URL", "prod-db", "direct-uri")
    # No listen URL configured: the variable is not set at all.
    ctr = container(one(render(chart), "Deployment"))
    assert "PGSCHED_LISTEN_DATABASE_URL" not in env_map(ctr)


def _hook(doc: dict[str, Any]) -> tuple[set[str], int, set[str]]:
    ann = doc["metadata"].get("annotations", {})
    return (
        set(ann.get("helm.sh/hook", "").split(",")) - {""},
        int(ann.get("helm.sh/hook-weight", "0")),
        set(ann.get("helm.sh/hook-delete-policy", "").split(",")) - {""},
    )


@pytest.mark.parametrize("hook_weight", [None, -9, 5])
def test_migration_hook_runs_after_the_chart_made_secret(chart, hook_weight):
    values: dict[str, Any] = {"database": {"url": DB_URL}}
    if hook_weight is not None:
        values["migrations"] = {"hookWeight": hook_weight}
    docs = render(chart, values)

    job_hooks, job_weight, job_delete = _hook(one(docs, "Job"))
    assert job_hooks == {"pre-install", "pre-upgrade"}
    assert job_delete == {"before-hook-creation", "hook-succeeded"}

    # pre-install hooks run before normal resources exist, so the Secret the
    # Job reads must itself be an (earlier) hook, and must survive success.
    secret_hooks, secret_weight, secret_delete = _hook(one(docs, "Secret"))
    assert secret_hooks == {"pre-install", "pre-upgrade"}
    assert job_weight > secret_weight
    assert "hook-succeeded" not in secret_delete

    # Workers are ordinary resources, created only after the hooks succeed.
    assert _hook(one(docs, "Deployment"))[0] == set()


def test_hook_weight_cannot_undercut_the_secret(chart):
    message = reject_message(chart, {"migrations": {"hookWeight": -10}})
    assert "/migrations/hookWeight" in message


def test_migrations_can_be_disabled(chart):
    assert "Job" not in kinds(render(chart, {"migrations": {"enabled": False}}))


# --------------------------------------------------------------------------- bad values


BAD_VALUES = {
    "negative-replicas": ({"replicaCount": -1}, "/replicaCount"),
    "hpa-and-keda": (
        {"autoscaling": {"enabled": True}, "keda": {"enabled": True}, "queues": ["default"]},
        "/autoscaling/enabled",
    ),
    "empty-app": ({"app": ""}, "/app"),
    "missing-app": ({"app": None}, "'app'"),
    "port-too-high": ({"worker": {"healthPort": 65536}}, "/worker/healthPort"),
    "port-zero": ({"worker": {"healthPort": 0}}, "/worker/healthPort"),
    "port-not-a-number": ({"worker": {"healthPort": "http"}}, "/worker/healthPort"),
    "unknown-top-level-key": ({"replicas": 3}, "'replicas'"),
    "unknown-nested-key": ({"keda": {"enable": True}}, "'enable'"),
    "queue-with-quote": ({"queues": ["a'; DROP TABLE x; --"]}, "/queues/0"),
    "queue-with-space": ({"queues": ["ok", "a b"]}, "/queues/1"),
    "keda-without-queues": ({"keda": {"enabled": True}}, "/queues"),
    "schema-injection": ({"database": {"schema": "pgsched; drop"}}, "/database/schema"),
    "no-database": ({"database": {"existingSecret": ""}}, "/database/existingSecret"),
    "zero-concurrency": ({"concurrency": 0}, "/concurrency"),
    "zero-grace-margin": (
        {"worker": {"terminationGraceMarginSeconds": 0}},
        "/worker/terminationGraceMarginSeconds",
    ),
    "bad-db-url": ({"database": {"url": "mysql://x"}}, "/database/url"),
}


@pytest.mark.parametrize(("values", "field"), BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_bad_values_are_rejected_naming_the_field(chart, values, field):
    message = reject_message(chart, values)
    assert "schema" in message
    assert field in message, message
    # Lint reports the same problem as an error.
    report = helm.lint(CHART_DIR, values)
    assert any(field in err for err in report["errors"]), report


@pytest.fixture(scope="module")
def chart_without_schema(tmp_path_factory):
    """The chart minus values.schema.json, as with --skip-schema-validation."""
    dest = tmp_path_factory.mktemp("chart") / "pgsched"
    shutil.copytree(CHART_DIR, dest)
    (dest / "values.schema.json").unlink()
    with helm.Chart.load(dest) as loaded:
        yield loaded


TEMPLATE_GUARDS = {
    "hpa-and-keda": (
        {"autoscaling": {"enabled": True}, "keda": {"enabled": True}, "queues": ["default"]},
        "autoscaling.enabled and keda.enabled",
    ),
    "missing-app": ({"app": ""}, "app is required"),
    "queue-with-quote": ({"queues": ["a'b"]}, "queues:"),
    "schema-injection": ({"database": {"schema": "x.y"}}, "database.schema"),
    "keda-without-queues": ({"keda": {"enabled": True}}, "keda.enabled needs"),
    "no-database": ({"database": {"existingSecret": ""}}, "database.existingSecret"),
}


@pytest.mark.parametrize(
    ("values", "message"), TEMPLATE_GUARDS.values(), ids=TEMPLATE_GUARDS.keys()
)
def test_templates_guard_even_without_schema_validation(chart_without_schema, values, message):
    with pytest.raises(helm.HelmRenderError, match=re.escape(message)):
        render_files(chart_without_schema, values)


# --------------------------------------------------------------------------- KEDA


def expected_query(schema: str, queue: str) -> str:
    # An expected string compared with the rendered manifest; never executed.
    return (
        f"SELECT count(*) FROM {schema}.workflows WHERE status = 'ENQUEUED' "  # noqa: S608
        f"AND queue = '{queue}' AND not_before <= now()"
    )


@pytest.mark.parametrize("schema", [None, "jobs_v1"])
def test_keda_scaledobject_has_one_postgresql_trigger_per_queue(chart, schema):
    values = copy.deepcopy(ALL_FEATURES)
    values["database"] = {"existingSecret": "prod-db", "existingSecretKey": "uri"}
    if schema:
        values["database"]["schema"] = schema
    docs = render(chart, values)

    scaled = one(docs, "ScaledObject")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": FULLNAME,
    }
    assert spec["minReplicaCount"] == 2 and spec["maxReplicaCount"] == 20
    assert spec["advanced"] == {"restoreToOriginalReplicaCount": True}

    auth = one(docs, "TriggerAuthentication")
    assert auth["apiVersion"] == "keda.sh/v1alpha1"
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "connection", "name": "prod-db", "key": "uri"}
    ]

    triggers = spec["triggers"]
    assert len(triggers) == len(QUEUES)
    for trigger, queue in zip(triggers, QUEUES, strict=True):
        assert trigger["type"] == "postgresql"
        assert trigger["authenticationRef"] == {"name": auth["metadata"]["name"]}
        meta = trigger["metadata"]
        # KEDA trigger metadata is map[string]string.
        assert all(isinstance(v, str) for v in meta.values()), meta
        assert meta["query"] == expected_query(schema or "pgsched", queue)
        assert meta["targetQueryValue"] == "16"
        assert meta["activationTargetQueryValue"] == "0"
        assert not ({"connectionFromEnv", "password", "connection"} & meta.keys())


def test_keda_uses_the_chart_made_secret_too(chart):
    auth = one(render(chart, ALL_FEATURES), "TriggerAuthentication")
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "connection", "name": f"{FULLNAME}-database", "key": "database-url"}
    ]


def test_queue_pattern_in_schema_matches_the_template_guard(chart):
    schema = chart.schema if isinstance(chart.schema, dict) else json.loads(chart.schema)
    pattern = schema["definitions"]["queueName"]["pattern"]
    template = (CHART_DIR / "templates" / "_helpers.tpl").read_text()
    assert pattern.rstrip("$").rstrip("+") in template
    for name in QUEUES:
        assert re.fullmatch(pattern, name)
    for name in ["a'b", 'a"b', "a b", "a\\b", "a;b", "", "a\nb", "a$$b"]:
        assert not re.fullmatch(pattern, name), name


# --------------------------------------------------------------------------- docs


def _schema_leaves(schema: dict[str, Any], prefix: str = "") -> list[str]:
    leaves = []
    for key, sub in schema.get("properties", {}).items():
        if key == "global":
            continue
        path = f"{prefix}{key}"
        if "properties" in sub:
            leaves.extend(_schema_leaves(sub, path + "."))
        else:
            leaves.append(path)
    return leaves


def test_readme_documents_every_value(chart):
    schema = chart.schema if isinstance(chart.schema, dict) else json.loads(chart.schema)
    readme = (CHART_DIR / "README.md").read_text()
    documented = set(re.findall(r"^\| `([^`]+)` \|", readme, flags=re.M))
    leaves = set(_schema_leaves(schema))
    assert leaves - documented == set(), "values missing from README.md's table"
    assert documented - leaves == set(), "README.md documents values the chart doesn't have"


def test_notes_render(chart):
    notes = render_files(chart, ALL_FEATURES)["pgsched/templates/NOTES.txt"]
    assert "KEDA" in notes and FULLNAME in notes
    notes = render_files(chart)["pgsched/templates/NOTES.txt"]
    assert "kubectl -n jobs create secret generic pgsched-database" in notes
