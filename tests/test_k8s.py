"""conf/k8s: every manifest is valid against the Kubernetes schema, and the policies a daily job needs are set."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from sync_job import config
from sync_job.shutdown import DEFAULT_GRACE_SECONDS

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "conf" / "k8s"
# The oldest version the manifests promise to work on (CronJob timeZone and podFailurePolicy are GA by 1.31)
# and the newest schema the validator ships.
VERSIONS = ["1.31", kubernetes_validate.latest_version()]
MANIFESTS = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((K8S / name).read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def cronjob() -> dict[str, Any]:
    return load("cronjob.yaml")


@pytest.fixture(scope="module")
def job(cronjob: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = cronjob["spec"]["jobTemplate"]["spec"]
    return spec


@pytest.fixture(scope="module")
def pod(job: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = job["template"]["spec"]
    return spec


@pytest.fixture(scope="module")
def container(pod: dict[str, Any]) -> dict[str, Any]:
    (only,) = pod["containers"]
    assert isinstance(only, dict)
    return only


def test_the_expected_manifests_exist() -> None:
    assert {"cronjob.yaml", "configmap.yaml", "pvc.yaml", "secret.example.yaml"} <= set(MANIFESTS)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", MANIFESTS)
def test_manifest_is_valid_against_the_kubernetes_schema(name: str, version: str) -> None:
    """Strict validation: unknown fields are errors too, so a typo cannot slip through as 'ignored'."""
    kubernetes_validate.validate(load(name), version, strict=True)


def test_the_validator_is_strict_about_unknown_fields(cronjob: dict[str, Any]) -> None:
    broken = copy.deepcopy(cronjob)
    broken["spec"]["concurencyPolicy"] = "Forbid"  # a typo
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)


def test_cronjob_runs_daily_and_never_overlaps(cronjob: dict[str, Any], job: dict[str, Any]) -> None:
    spec = cronjob["spec"]
    minute, hour, day, month, weekday = spec["schedule"].split()
    assert (day, month, weekday) == ("*", "*", "*")
    assert minute.isdigit()
    assert hour.isdigit()
    assert spec["concurrencyPolicy"] == "Forbid"
    assert 0 < spec["startingDeadlineSeconds"] <= 6 * 3600
    assert 0 < job["activeDeadlineSeconds"] < 24 * 3600
    assert 0 <= job["backoffLimit"] <= 3


def test_config_and_lock_errors_are_not_retried(job: dict[str, Any], pod: dict[str, Any]) -> None:
    """Exit 2 (config/input) and 3 (locked) fail the Job at once: a retry cannot fix them."""
    assert pod["restartPolicy"] == "Never"
    fail_rules = [r for r in job["podFailurePolicy"]["rules"] if r["action"] == "FailJob"]
    codes = {code for rule in fail_rules for code in rule["onExitCodes"]["values"]}
    assert codes == {2, 3}
    assert all(rule["onExitCodes"]["operator"] == "In" for rule in fail_rules)


def test_sigterm_grace_outlasts_the_drain(pod: dict[str, Any]) -> None:
    """Kubernetes waits terminationGracePeriodSeconds after SIGTERM: enough to drain and write the report."""
    assert pod["terminationGracePeriodSeconds"] >= DEFAULT_GRACE_SECONDS + 20


def test_container_has_requests_and_limits(container: dict[str, Any]) -> None:
    resources = container["resources"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources[kind]), kind


def test_runs_non_root_with_a_read_only_root_filesystem(pod: dict[str, Any], container: dict[str, Any]) -> None:
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]


def test_only_the_workdir_and_tmp_are_writable(pod: dict[str, Any], container: dict[str, Any]) -> None:
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    workdir = mounts["/var/lib/sync-job"]
    assert volumes[workdir["name"]]["persistentVolumeClaim"]["claimName"] == load("pvc.yaml")["metadata"]["name"]
    assert not workdir.get("readOnly", False)
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    assert mounts["/etc/sync-job"]["readOnly"] is True
    writable = {path for path, m in mounts.items() if not m.get("readOnly", False)}
    assert writable == {"/var/lib/sync-job", "/tmp"}


def test_token_comes_from_the_secret_only(container: dict[str, Any]) -> None:
    env = {e["name"]: e for e in container["env"]}
    ref = env["PIPEDRIVE_API_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert "value" not in env["PIPEDRIVE_API_TOKEN"]
    secret = load("secret.example.yaml")
    assert ref["name"] == secret["metadata"]["name"]
    assert ref["key"] in secret["stringData"]
    for item in container["env"]:
        if item["name"] != "PIPEDRIVE_API_TOKEN":
            assert not re.search(r"TOKEN|SECRET|PASSWORD|DSN", item["name"]) or "valueFrom" in item


def test_secret_example_holds_a_placeholder_not_a_token() -> None:
    secret = load("secret.example.yaml")
    (value,) = secret["stringData"].values()
    assert "REPLACE" in value
    assert not re.fullmatch(r"[0-9a-f]{40}", value)  # the shape of a real Pipedrive API token


def test_config_comes_from_the_configmap_mounted_as_a_file(pod: dict[str, Any], container: dict[str, Any]) -> None:
    assert container["args"] == ["run", "--config", "/etc/sync-job/sync.yaml", "--log-format", "json"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/etc/sync-job")
    configmap = load("configmap.yaml")
    assert volumes[mount["name"]]["configMap"]["name"] == configmap["metadata"]["name"]
    assert "sync.yaml" in configmap["data"]


def test_configmap_config_is_valid_and_writes_to_the_workdir_volume() -> None:
    """The mounted sync.yaml passes the app's own validation; its workdir is the persistent volume."""
    raw = yaml.safe_load(load("configmap.yaml")["data"]["sync.yaml"])
    settings = config.parse(raw, origin=Path("/etc/sync-job/sync.yaml"))
    assert settings.workdir == Path("/var/lib/sync-job")
    assert "token" not in load("configmap.yaml")["data"]["sync.yaml"].lower()


def test_configmap_config_matches_conf_sync_yaml_except_the_workdir() -> None:
    cluster = yaml.safe_load(load("configmap.yaml")["data"]["sync.yaml"])
    local = yaml.safe_load((ROOT / "conf" / "sync.yaml").read_text(encoding="utf-8"))
    cluster.pop("workdir")
    local.pop("workdir")
    assert cluster == local


def test_kustomization_applies_everything_but_the_secret_example() -> None:
    """`kubectl apply -k conf/k8s` must never overwrite a real Secret with the placeholder."""
    kustomization = load("kustomization.yaml")
    resources = kustomization["resources"]
    assert "secret.example.yaml" not in resources
    assert set(resources) == set(MANIFESTS) - {"secret.example.yaml"}
    for name in resources:
        assert (K8S / name).is_file()
    container_image = load("cronjob.yaml")["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert container_image.split(":")[0] in {image["name"] for image in kustomization["images"]}


# ---- observability: the alert webhook, the Pushgateway and the PrometheusRule ------------------------------

PROMETHEUS_RULE = K8S / "monitoring" / "prometheusrule.yaml"


def test_the_alert_webhook_comes_from_an_optional_secret(container: dict[str, Any]) -> None:
    """The URL is a credential: from a Secret only, and a cluster without that Secret still runs the job."""
    env = {e["name"]: e for e in container["env"]}
    ref = env["SYNC_JOB_WEBHOOK_URL"]["valueFrom"]["secretKeyRef"]
    assert ref["optional"] is True
    assert "value" not in env["SYNC_JOB_WEBHOOK_URL"]
    assert ref["name"] != load("secret.example.yaml")["metadata"]["name"]  # its own Secret, created on demand


def test_the_configmap_documents_the_pushgateway_url_as_an_optional_setting() -> None:
    text = load("configmap.yaml")["data"]["sync.yaml"]
    commented = "\n".join(line.strip().lstrip("#").rstrip() for line in text.splitlines() if "#" in line)
    raw = yaml.safe_load(text)
    raw["metrics"] = yaml.safe_load(commented.split("metrics:", 1)[1].split("\n", 2)[1].strip())
    settings = config.parse(raw, origin=Path("/etc/sync-job/sync.yaml"))
    assert settings.metrics.pushgateway_url is not None
    assert settings.metrics.pushgateway_url.startswith("http://")


def test_the_prometheus_rule_alerts_on_failure_and_on_no_success_in_26_hours() -> None:
    from sync_job import metrics
    from sync_job.report import RunReport

    rule = yaml.safe_load(PROMETHEUS_RULE.read_text(encoding="utf-8"))
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    rules = {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}
    assert "sync_job_last_run_exit_code" in rules["SyncJobFailed"]["expr"]
    assert "sync_job_last_success_timestamp_seconds" in rules["SyncJobNoSuccessIn26h"]["expr"]
    assert "26 * 3600" in rules["SyncJobNoSuccessIn26h"]["expr"]
    # Every metric a rule names is one a successful run pushes: a renamed metric cannot silence an alert.
    report = RunReport("r", "pipedrive", status="ok", started_at="2026-01-01T00:00:00+00:00")
    report.ended_at = "2026-01-01T00:00:01+00:00"
    pushed = {m.name for m in metrics.registry(report).collect()}
    for name, r in rules.items():
        named = set(re.findall(r"\bsync_job_[a-z_]+", r["expr"]))
        assert named, name
        assert named <= pushed, (name, named - pushed)
