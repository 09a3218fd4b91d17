"""deploy/ says what the code reads: compose, the Kubernetes manifests and the Dockerfiles name exactly the
environment variables the services' settings classes read (no unknown one, none missing that has no safe
default), the topics of the contract, and an image holds everything its service imports.

The files' syntax is checked by real linters in ``make lint-deploy`` (Compose specification, kubernetes-validate,
hadolint); this test checks their meaning against the code.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from services.enrollment.settings import EnrollmentSettings
from services.finance.settings import FinanceSettings
from services.reporting.settings import ReportingSettings
from services.scheduling.settings import SchedulingSettings
from shared.contracts.topics import ALL_TOPICS, DEFAULT_PARTITIONS
from shared.store.mongo import database_from_url

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SETTINGS: dict[str, type[BaseSettings]] = {
    "scheduling": SchedulingSettings,
    "enrollment": EnrollmentSettings,
    "finance": FinanceSettings,
    "reporting": ReportingSettings,
}
# defaults that are right for `make run` on a laptop and wrong in a container: deployments must set them
NO_SAFE_DEFAULT = ("kafka_bootstrap_servers", "store_url", "http_host")
SECRET_FIELDS = ("store_url", "kafka_sasl_password")


def env_names(cls: type[BaseSettings]) -> dict[str, str]:
    """field name -> the environment variable pydantic-settings reads for it (as devstack/docs.py derives it)."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    out = {}
    for name, field in cls.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            out[name] = str(alias.choices[0]).upper()
        elif isinstance(alias, str):
            out[name] = alias.upper()
        else:
            out[name] = f"{prefix}{name}".upper()
    return out


def known_and_required(service: str) -> tuple[set[str], set[str]]:
    cls = SETTINGS[service]
    names = env_names(cls)
    assert set(NO_SAFE_DEFAULT) <= set(names), "a setting this test relies on was renamed"
    required = {names[f] for f in NO_SAFE_DEFAULT} | {
        names[f] for f, info in cls.model_fields.items() if info.is_required()
    }
    return set(names.values()), required


def check_names(where: str, service: str, names: set[str]) -> None:
    known, required = known_and_required(service)
    assert not names - known, f"{where} sets variables {service} never reads: {sorted(names - known)}"
    assert not required - names, f"{where} leaves out variables without a safe default: {sorted(required - names)}"


# ---- compose ----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


@pytest.mark.parametrize("service", SETTINGS)
def test_compose_sets_exactly_the_variables_the_service_reads(compose: dict[str, Any], service: str) -> None:
    spec = compose["services"][service]
    env = _environment(spec)
    check_names(f"compose service {service}", service, set(env))
    names = env_names(SETTINGS[service])
    assert env[names["http_host"]] == "0.0.0.0"
    assert env[names["kafka_bootstrap_servers"]].split(":")[0] in compose["services"]
    assert database_from_url(env[names["store_url"]]) == service, "one MongoDB database per service"
    assert env[names["store_url"]].startswith("mongodb://mongo:")
    assert f"{env[names['http_port']]}:{env[names['http_port']]}" in spec["ports"]
    assert spec["build"]["dockerfile"] == f"deploy/{service}/Dockerfile"


def test_compose_creates_the_contract_topics_once_with_their_partitions(compose: dict[str, Any]) -> None:
    script = " ".join(compose["services"]["kafka-topics"]["command"])
    assert sorted(set(re.findall(r"\bilt\.[a-z]+\.[a-z-]+\b", script))) == sorted(ALL_TOPICS)
    assert f"--partitions {DEFAULT_PARTITIONS}" in script
    assert compose["services"]["kafka-topics"]["restart"] == "no"
    for service in SETTINGS:  # no service starts before its topics exist and MongoDB is a primary
        depends = compose["services"][service]["depends_on"]
        assert depends["kafka-topics"]["condition"] == "service_completed_successfully"
        assert depends["mongo"]["condition"] == "service_healthy"
    assert "--replSet" in compose["services"]["mongo"]["command"]


# ---- kubernetes -------------------------------------------------------------------------------------------------

def _manifests(service: str) -> dict[str, dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all((DEPLOY / "k8s" / f"{service}.yaml").read_text()) if d]
    by_kind = {d["kind"]: d for d in docs}
    assert sorted(by_kind) == ["ConfigMap", "Deployment", "Service"] and len(docs) == 3
    return by_kind


@pytest.mark.parametrize("service", SETTINGS)
def test_k8s_names_exactly_the_variables_the_service_reads(service: str) -> None:
    m = _manifests(service)
    pod = m["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["envFrom"] == [{"configMapRef": {"name": m["ConfigMap"]["metadata"]["name"]}}]
    config = set(m["ConfigMap"]["data"])
    env = {e["name"]: e for e in container.get("env", [])}
    assert not config & set(env), "a variable set twice"
    check_names(f"deploy/k8s/{service}.yaml", service, config | set(env))

    names = env_names(SETTINGS[service])
    for field in SECRET_FIELDS:  # credentials come from Secrets, never from the ConfigMap
        assert names[field] not in config
        assert "secretKeyRef" in env[names[field]]["valueFrom"], f"{names[field]} must come from a Secret"
    assert m["ConfigMap"]["data"][names["http_host"]] == "0.0.0.0"


@pytest.mark.parametrize("service", SETTINGS)
def test_k8s_deployment_probes_resources_and_service(service: str) -> None:
    m = _manifests(service)
    pod = m["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    port = int(m["ConfigMap"]["data"][env_names(SETTINGS[service])["http_port"]])
    assert container["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert {"cpu", "memory"} <= set(container["resources"]["requests"]) | set(container["resources"]["limits"])
    assert set(container["resources"]["limits"]) == {"cpu", "memory"}
    assert pod["terminationGracePeriodSeconds"] >= 30
    assert pod["securityContext"]["runAsNonRoot"] is True
    labels = m["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert m["Service"]["spec"]["selector"].items() <= labels.items()
    assert m["Service"]["spec"]["ports"][0]["targetPort"] == "http"


# ---- Dockerfiles ------------------------------------------------------------------------------------------------

def _dockerfile(service: str) -> str:
    return (DEPLOY / service / "Dockerfile").read_text()


def _copied_sources(service: str) -> list[str]:
    return [line.split()[1] for line in _dockerfile(service).splitlines()
            if line.startswith("COPY ") and "--from=" not in line]


@pytest.mark.parametrize("service", SETTINGS)
def test_dockerfile_copies_only_this_service_and_sets_only_known_variables(service: str) -> None:
    assert _copied_sources(service) == ["pyproject.toml", "shared/", "services/__init__.py", f"services/{service}/"]
    text = _dockerfile(service)
    env = set(re.findall(r"\b([A-Z][A-Z0-9_]+)=", text.split("\nFROM ")[-1].split("\nRUN ")[0]))
    service_env = {e for e in env if not e.startswith(("PYTHON", "PIP_"))}
    known, _ = known_and_required(service)
    assert service_env and service_env <= known, sorted(service_env - known)
    assert re.search(r"^USER 10001$", text, re.M), "runs as a non-root user"
    assert re.search(r"^HEALTHCHECK .*\n?.*CMD \[\"python\".*/healthz", text, re.M)
    assert f'CMD ["python", "-m", "services.{service}"]' in text


def test_an_image_holds_everything_its_service_imports(tmp_path: Path) -> None:
    """Each service, built from only what its Dockerfile copies (in a directory of its own, not this checkout),
    imports and assembles its app: no hidden import of another service, devstack or demo."""
    runs = {}
    for service in SETTINGS:
        stage = tmp_path / service
        for source in _copied_sources(service):
            if source == "pyproject.toml":
                continue
            src, dst = ROOT / source, stage / source
            if src.is_dir():
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(src, dst)
        code = (f"import services.{service}.bootstrap as b; app = b.build(); "
                f"import services, shared, sys; "
                f"assert all(m.__file__.startswith({str(stage)!r}) for m in (b, services, shared)), 'not isolated'; "
                f"assert not [m for m in sys.modules if m.split('.')[0] in ('devstack', 'demo')]; "
                f"assert not [m for m in sys.modules if m.startswith('services.') and "
                f"m.split('.')[1] != {service!r}]; print(app.title)")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "SCHEDULING_", "ENROLLMENT_",
                                                                          "FINANCE_", "REPORTING_"))}
        runs[service] = subprocess.Popen([sys.executable, "-c", code], cwd=stage, env=env, text=True,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for service, run in runs.items():
        out, err = run.communicate(timeout=60)
        assert run.returncode == 0, f"{service}: {err[-2000:]}"
        assert service in out.lower()
