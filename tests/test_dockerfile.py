"""The Dockerfile's structure (no Docker engine here: CI builds the image, this checks what it must be)."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
WORKDIR_VOLUME = "/var/lib/sync-job"
SECRET_WORDS = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|DSN|CREDENTIAL", re.IGNORECASE)


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, instruction: str) -> list[str]:
        return [args for name, args in self.instructions if name == instruction]


def parse_dockerfile(text: str) -> list[Stage]:
    """A small Dockerfile parser: comments, line continuations, one Stage per FROM."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or (line.startswith("#") and not pending):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    stages: list[Stage] = []
    global_args: dict[str, str] = {}  # ARGs before the first FROM may be used in FROM lines
    for line in logical:
        instruction, _, args = line.partition(" ")
        instruction, args = instruction.upper(), args.strip()
        if instruction == "ARG" and not stages:
            name, _, default = args.partition("=")
            global_args[name] = default
        elif instruction == "FROM":
            words = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: global_args[m[1] or m[2]], args).split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        else:
            assert stages, f"{instruction} before the first FROM"
            stages[-1].instructions.append((instruction, args))
    return stages


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list), f"not the exec (JSON) form: {args}"
    return [str(v) for v in value]


def env_pairs(args: str) -> dict[str, str]:
    words = shlex.split(args)
    if words and "=" not in words[0]:  # legacy `ENV KEY value`
        return {words[0]: " ".join(words[1:])}
    return dict(word.split("=", 1) for word in words)


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def final(stages: list[Stage]) -> Stage:
    return stages[-1]


def test_parser_handles_continuations_and_comments() -> None:
    parsed = parse_dockerfile("# c\nFROM a:1 AS one\nRUN x \\\n  # inside\n  && y\nFROM b\nUSER 5\n")
    assert [(s.base, s.name) for s in parsed] == [("a:1", "one"), ("b", None)]
    assert parsed[0].instructions == [("RUN", "x && y")]
    assert parsed[1].args("USER") == ["5"]


def test_parser_puts_the_defaults_of_global_args_into_from_lines() -> None:
    parsed = parse_dockerfile("ARG BASE=py:3\nFROM ${BASE} AS one\nFROM $BASE\n")
    assert [s.base for s in parsed] == ["py:3", "py:3"]


def test_is_multi_stage_on_slim_python_bases(stages: list[Stage]) -> None:
    python_stages = [stage for stage in stages if stage.name != "wheels"]
    assert len(python_stages) >= 2
    for stage in python_stages:
        assert re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", stage.base), stage.base


def test_the_wheels_context_is_empty_unless_the_build_passes_one(stages: list[Stage]) -> None:
    """`--build-context wheels=DIR` replaces the stage; without it the builder copies nothing and uses the index."""
    (wheels,) = [stage for stage in stages if stage.name == "wheels"]
    assert wheels.base == "scratch"
    assert wheels.instructions == []


def test_builder_installs_the_locked_dependencies_by_hash_then_the_package_alone(stages: list[Stage]) -> None:
    (builder,) = [stage for stage in stages if stage.name == "builder"]
    runs = builder.args("RUN")
    locked = [run for run in runs if "-r requirements.lock" in run]
    assert locked
    assert "--require-hashes" in locked[0]
    assert "PIP_NO_INDEX=1" in locked[0], "PIP_SOURCE=wheels must never reach an index"
    package = [run for run in runs if re.search(r"pip install .*--no-deps.* \.(\s|$)", run)]
    assert package, "the package installs without resolving dependencies again"
    assert "requirements.lock ./" in builder.args("COPY")


def test_final_stage_takes_only_the_built_venv_from_the_builder(stages: list[Stage], final: Stage) -> None:
    (builder,) = [stage for stage in stages if stage.name == "builder"]
    from_builder = [args for args in final.args("COPY") if args.startswith("--from=builder ")]
    assert from_builder == ["--from=builder /opt/venv /opt/venv"]
    assert any("pip install" in run for run in builder.args("RUN"))
    assert not any("pip install" in run for run in final.args("RUN")), "no build tools run in the final image"


def test_final_stage_runs_as_a_fixed_non_root_uid(final: Stage) -> None:
    users = final.args("USER")
    assert users, "the final stage must set USER"
    user, _, group = users[-1].partition(":")
    assert user.isdigit(), "a numeric uid lets Kubernetes verify runAsNonRoot"
    assert int(user) >= 1000
    assert user not in ("0", "root")
    assert group not in ("0", "root")


# Debian's base-passwd users and groups: every python:*-slim image has them, so useradd/groupadd of one fails.
DEBIAN_SYSTEM_NAMES = {
    "root",
    "daemon",
    "bin",
    "sys",
    "sync",
    "games",
    "man",
    "lp",
    "mail",
    "news",
    "uucp",
    "proxy",
    "www-data",
    "backup",
    "list",
    "irc",
    "gnats",
    "nobody",
    "nogroup",
    "_apt",
    "adm",
    "tty",
    "disk",
    "kmem",
    "dialout",
    "fax",
    "voice",
    "cdrom",
    "floppy",
    "tape",
    "sudo",
    "audio",
    "dip",
    "operator",
    "src",
    "shadow",
    "utmp",
    "video",
    "sasl",
    "plugdev",
    "staff",
    "users",
    "input",
    "sgx",
}


def test_the_user_and_group_the_image_adds_are_not_debian_system_names(final: Stage) -> None:
    """`useradd ... sync` stopped the build: Debian already has the user `sync` (uid 4)."""
    added = [
        shlex.split(command)[-1]
        for run in final.args("RUN")
        for command in re.split(r"&&|;", run)
        if shlex.split(command)[:1] in (["useradd"], ["groupadd"])
    ]
    assert added, "the final stage adds its user"
    assert not set(added) & DEBIAN_SYSTEM_NAMES


def test_k8s_manifest_runs_as_the_image_uid(final: Stage) -> None:
    uid = int(final.args("USER")[-1].partition(":")[0])
    cronjob = yaml.safe_load((ROOT / "conf" / "k8s" / "cronjob.yaml").read_text(encoding="utf-8"))
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == uid
    assert pod["securityContext"]["fsGroup"] == uid


def test_entrypoint_is_the_cli_and_the_default_command_is_the_offline_demo(final: Stage) -> None:
    entrypoint = exec_form(final.args("ENTRYPOINT")[-1])
    assert entrypoint == ["sync-job"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert "sync-job" in scripts
    cmd = exec_form(final.args("CMD")[-1])
    assert cmd[0] == "demo"
    # /app belongs to root: the demo must write to the workdir volume
    assert cmd[cmd.index("--workdir") + 1].startswith(WORKDIR_VOLUME + "/")


def test_workdir_is_app_and_the_workdir_volume_is_owned_by_the_user(final: Stage) -> None:
    assert final.args("WORKDIR")[-1] == "/app"
    assert exec_form(final.args("VOLUME")[-1]) == [WORKDIR_VOLUME]
    uid = final.args("USER")[-1].partition(":")[0]
    assert any(f"chown {uid}:" in run and WORKDIR_VOLUME in run for run in final.args("RUN"))


def test_conf_and_data_are_copied_for_the_offline_demo(final: Stage) -> None:
    copies = final.args("COPY")
    assert "conf/ conf/" in copies
    assert "data/ data/" in copies


def test_demo_config_sources_are_inside_the_copied_folders() -> None:
    """`sync-job demo` in the image reads /app/conf/demo.yaml, whose sources must be in /app/data."""
    demo = yaml.safe_load((ROOT / "conf" / "demo.yaml").read_text(encoding="utf-8"))
    for name, source in demo["sources"].items():
        path = (ROOT / "conf" / source).resolve()
        assert path.is_relative_to(ROOT / "data"), f"{name}: {source}"


def test_no_secret_is_baked_into_the_image(stages: list[Stage]) -> None:
    for stage in stages:
        for instruction, args in stage.instructions:
            if instruction == "ENV":
                keys = env_pairs(args)
            elif instruction == "ARG":
                keys = {args.partition("=")[0]: args.partition("=")[2]}
            else:
                continue
            for key, value in keys.items():
                assert not SECRET_WORDS.search(key), f"{instruction} {key}: secrets come from the runtime only"
                assert not SECRET_WORDS.search(value), f"{instruction} {key}={value}"
        for args in stage.args("COPY") + stage.args("ADD"):
            assert ".env" not in args.split()
            assert "secret" not in args.lower()


def _dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _ignored(path: str, patterns: list[str]) -> bool:
    return any(fnmatch(path, p) or path.startswith(p.rstrip("/") + "/") or path == p for p in patterns)


@pytest.mark.parametrize("path", [".venv", ".git", ".sync-job", "workdir", "bench", ".env", "tests", "wheelhouse"])
def test_dockerignore_keeps_bulky_and_secret_things_out_of_the_context(path: str) -> None:
    assert _ignored(path, _dockerignore())


def test_every_copied_source_exists_and_is_in_the_build_context(stages: list[Stage]) -> None:
    patterns = _dockerignore()
    for stage in stages:
        for args in stage.args("COPY"):
            if args.startswith("--from="):
                continue
            *sources, _dest = args.split()
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: missing from the repository"
                assert not _ignored(source.rstrip("/"), patterns), f"COPY {source}: excluded by .dockerignore"


def test_ci_lints_type_checks_tests_and_builds_and_runs_the_image() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text(encoding="utf-8"))
    commands = {
        name: " ; ".join(str(step.get("run", "")) for step in job["steps"]) for name, job in workflow["jobs"].items()
    }
    assert "ruff check" in commands["lint"]
    assert "ruff format --check" in commands["lint"]
    assert "mypy" in commands["typecheck"]
    assert "bash .ci/run" in commands["tests"]
    build = [s for s in workflow["jobs"]["image"]["steps"] if str(s.get("uses", "")).startswith("docker/build-push")]
    assert build, "the image job builds the Dockerfile"
    assert build[0]["with"]["push"] is False
    assert "--network none" in commands["image"]  # the offline demo is proven in the built image


def test_the_tests_job_runs_on_the_oldest_supported_python_and_a_newer_one() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text(encoding="utf-8"))
    versions = workflow["jobs"]["tests"]["strategy"]["matrix"]["python-version"]
    oldest = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["requires-python"]
    assert oldest.removeprefix(">=") in versions
    assert max(versions, key=lambda v: tuple(map(int, v.split(".")))) != oldest.removeprefix(">=")


def test_the_image_job_also_builds_air_gapped_without_network() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text(encoding="utf-8"))
    runs = " ; ".join(str(step.get("run", "")) for step in workflow["jobs"]["image"]["steps"])
    assert "make wheelhouse" in runs
    assert re.search(r"docker build [^;]*--network none[^;]*--build-arg PIP_SOURCE=wheels", runs.replace("\\\n", " "))


def test_ci_run_builds_and_runs_the_image_here() -> None:
    """.ci/run ends with the image check; .ci/image holds all of its logic."""
    lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert any(line.split("#")[0].split() == ["bash", ".ci/image"] for line in lines)
