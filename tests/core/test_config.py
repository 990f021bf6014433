from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from exporter.config import ConfigError, load_config, parse_config

GOOD = """
global:
  default_interval: 30s
  default_timeout: 5s
  labels: {env: prod}
probes:
  - name: api
    kind: fake
    interval: 15s
    timeout: 2500ms
    labels: {service: api}
  - name: other
    kind: fake
    mode: fail
"""


def test_good_config_applies_defaults_and_merges_labels() -> None:
    config = parse_config(GOOD)
    api, other = config.probes
    assert (api.interval, api.timeout) == (15.0, 2.5)
    assert (other.interval, other.timeout) == (30.0, 5.0)
    assert dict(api.labels) == {"env": "prod", "service": "api"}
    assert dict(other.labels) == {"env": "prod"}
    # The client gives up a little before the hard deadline.
    assert 0 < api.settings.client_timeout < api.timeout


def test_a_kind_default_interval_beats_the_global_default() -> None:
    config = parse_config(
        "global: {default_interval: 20s}\n"
        "probes:\n"
        "  - {name: stripe, kind: statuspage, url: 'https://status.stripe.com'}\n"
        "  - {name: stripe-fast, kind: statuspage, url: 'https://status.stripe.com',"
        " interval: 15s}\n"
        "  - {name: api, kind: fake}\n"
    )
    assert [p.interval for p in config.probes] == [60.0, 15.0, 20.0]


def test_env_references_are_expanded_and_dollar_escaped() -> None:
    text = "probes:\n  - {name: a, kind: fake, mode: '${MODE}'}\n  - {name: 'b$$', kind: fake}\n"
    with pytest.raises(ConfigError) as err:
        parse_config(text, environ={"MODE": "fail"})
    # "b$" is not a valid name: the $$ escape produced a literal dollar.
    assert err.value.errors == [
        "probes[1].name: String should match pattern '^[A-Za-z0-9_.:-]+$'"
    ]
    config = parse_config(text.replace("'b$$'", "b"), environ={"MODE": "fail"})
    assert config.probes[0].settings.model_dump()["mode"] == "fail"


@pytest.mark.parametrize("text", ["", "# only a comment\n", "global: {}\n", "probes:\n"])
def test_an_empty_file_is_an_error_and_an_explicit_empty_list_is_not(text: str) -> None:
    # A ConfigMap that came up empty must not silently run nothing.
    with pytest.raises(ConfigError) as err:
        parse_config(text)
    assert any("no probes configured" in line for line in err.value.errors), err.value.errors
    assert parse_config("probes: []\n").probes == ()


BAD_CONFIGS: list[tuple[str, str, str]] = [
    ("yaml syntax", "probes: [\n", "YAML syntax error at line 2"),
    ("top level list", "- a\n- b\n", "top level must be a mapping"),
    ("unknown top key", "probs: []\n", "probs: unknown key (check the spelling)"),
    ("unknown global key", "global: {intervall: 5s}\n", "global.intervall: unknown key"),
    ("bad log level", "global: {log_level: loud}\n", "global.log_level: Input should be"),
    ("bad log format", "global: {log_format: xml}\n", "global.log_format: Input should be"),
    ("bad default interval", "global: {default_interval: soon}\n",
     "global.default_interval: must be a duration"),
    ("zero default timeout", "global: {default_timeout: 0s}\n",
     "global.default_timeout: must be greater than 0"),
    ("history size", "global: {history_size: 0}\n", "global.history_size: Input should be"),
    ("reserved global label", "global: {labels: {probe: x}}\n",
     "global.labels: label name 'probe' is reserved"),
    ("probes not a list", "probes: {a: 1}\n", "probes: must be a list of probes"),
    ("missing name", "probes:\n  - {kind: fake}\n", "probes[0].name: required key is missing"),
    ("missing kind", "probes:\n  - {name: a}\n", "probes[0].kind: required key is missing"),
    ("unknown kind", "probes:\n  - {name: a, kind: htp}\n",
     "probes[0].kind: unknown kind 'htp' (known: "),
    ("timeout above interval", "probes:\n  - {name: a, kind: fake}\n"
     "  - {name: b, kind: fake}\n  - {name: c, kind: fake}\n"
     "  - {name: d, kind: fake, interval: 10s, timeout: 10s}\n",
     "probes[3].timeout: must be less than interval (10s)"),
    ("negative interval", "probes:\n  - {name: a, kind: fake, interval: -5s}\n",
     "probes[0].interval: must be a duration"),
    ("zero interval", "probes:\n  - {name: a, kind: fake, interval: 0}\n",
     "probes[0].interval: must be greater than 0"),
    ("bad duration unit", "probes:\n  - {name: a, kind: fake, timeout: 5 minutes}\n",
     "probes[0].timeout: must be a duration such as 15s"),
    ("duplicate name", "probes:\n  - {name: a, kind: fake}\n  - {name: a, kind: fake}\n",
     "probes[1].name: duplicate probe name 'a' (also probes[0])"),
    ("invalid label name", "probes:\n  - {name: a, kind: fake, labels: {bad-name: x}}\n",
     "probes[0].labels: label name 'bad-name' is not a valid Prometheus label name"),
    ("reserved label", "probes:\n  - {name: a, kind: fake, labels: {kind: x}}\n",
     "probes[0].labels: label name 'kind' is reserved"),
    ("kind key typo", "probes:\n  - {name: a, kind: fake, mdoe: ok}\n",
     "probes[0].mdoe: unknown key (check the spelling)"),
    ("kind value wrong", "probes:\n  - {name: a, kind: fake, mode: sideways}\n",
     "probes[0].mode: Input should be"),
    ("kind value type", "probes:\n  - {name: a, kind: fake, value: lots}\n",
     "probes[0].value: Input should be a valid number"),
    ("client timeout set by hand", "probes:\n  - {name: a, kind: fake, client_timeout: 3}\n",
     "probes[0].client_timeout: unknown key"),
    ("missing env var", "probes:\n  - {name: a, kind: fake, mode: '${NOPE_NOT_SET}'}\n",
     "probes[0].mode: environment variable NOPE_NOT_SET is not set"),
    ("name with spaces", "probes:\n  - {name: my probe, kind: fake}\n",
     "probes[0].name: String should match pattern"),
    ("probe entry not a mapping", "probes:\n  - just-a-string\n",
     "probes[0]: must be a mapping with at least name and kind"),
]


@pytest.mark.parametrize(
    ("text", "expected"), [(t, e) for _, t, e in BAD_CONFIGS], ids=[n for n, _, _ in BAD_CONFIGS]
)
def test_bad_config_names_the_field_and_why(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(text, environ={})
    assert any(expected in line for line in err.value.errors), err.value.errors


def test_missing_env_var_names_path_and_variable() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config("probes:\n  - {name: a, kind: fake, mode: '${NOPE}'}\n", environ={})
    assert "probes[0].mode: environment variable NOPE is not set" in err.value.errors


def test_all_errors_are_reported_at_once() -> None:
    text = "probes:\n  - {name: a, kind: fake, mdoe: x}\n  - {name: b, kind: nope}\n"
    with pytest.raises(ConfigError) as err:
        parse_config(text)
    assert len(err.value.errors) == 2


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "missing.yml")
    assert "cannot read config file: No such file or directory" in err.value.errors[0]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    launcher = Path(__file__).with_name("run_with_fake.py")
    return subprocess.run(
        [sys.executable, str(launcher), *args], capture_output=True, text=True, timeout=60
    )


def test_check_config_cli_exit_codes_and_no_traceback(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.yml", tmp_path / "bad.yml"
    good.write_text(GOOD)
    bad.write_text(textwrap.dedent("""
        probes:
          - {name: a, kind: fake, interval: 10s, timeout: 20s}
          - {name: b, kind: fake, color: blue}
    """))
    ok = _cli("check-config", str(good))
    assert ok.returncode == 0, ok.stderr
    assert "2 probe(s)" in ok.stdout
    failed = _cli("check-config", str(bad))
    assert failed.returncode == 2
    assert "probes[0].timeout: must be less than interval (10s)" in failed.stderr
    assert "probes[1].color: unknown key" in failed.stderr
    assert "Traceback" not in failed.stderr + failed.stdout
    missing = _cli("check-config", str(tmp_path / "nope.yml"))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


def test_bundled_demo_config_is_valid() -> None:
    config = load_config(Path(__file__).parents[2] / "exporter" / "demo.yaml")
    assert config.global_.demo
    # every kind that can run without an external service (pgbouncer needs one)
    assert {spec.kind for spec in config.probes} == {
        "http", "tcp", "statuspage", "tls", "kubernetes", "postgres", "redis"}


def _errors(
    text: str, environ: dict[str, str] | None = None, check_files: bool = False
) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_config(text, environ={} if environ is None else environ, check_files=check_files)
    return err.value.errors


def test_every_stage_reports_its_errors_at_once() -> None:
    # A bad port used to hide a duplicate name, and a bad name a bad port.
    errors = _errors(
        "global: {default_interval: soon}\n"
        "probes:\n"
        "  - {name: db, kind: postgres, port: 99999}\n"
        "  - {name: db, kind: fake}\n"
        "  - {name: 'bad name', kind: postgres, port: 0}\n"
    )
    assert any(e.startswith("global.default_interval: must be a duration") for e in errors)
    assert "probes[0].port: must be between 1 and 65535" in " ".join(errors)
    assert "probes[1].name: duplicate probe name 'db' (also probes[0])" in errors
    assert any(e.startswith("probes[2].name: String should match") for e in errors)
    assert "probes[2].port: must be between 1 and 65535" in " ".join(errors), errors


def test_an_error_says_where_a_defaulted_value_came_from() -> None:
    errors = _errors("global: {default_interval: 10s}\nprobes:\n  - {name: a, kind: fake}\n")
    assert errors == [
        "probes[0]: timeout 10s (from global.default_timeout) must be less than interval "
        "10s (from global.default_interval); set timeout on the probe"
    ]
    assert not any("probes[0].timeout" in e for e in errors)  # the user never wrote it
    errors = _errors("global: {default_interval: 3s}\n"
                     "probes:\n  - {name: a, kind: fake, timeout: 5s}\n")
    assert errors == [
        "probes[0].timeout: must be less than interval (3s, from global.default_interval)"
    ]


def test_a_kind_default_interval_is_named_as_the_source() -> None:
    errors = _errors("global: {default_timeout: 90s}\n"
                     "probes:\n  - {name: s, kind: statuspage, url: 'https://x.test'}\n")
    assert errors == [
        "probes[0]: timeout 90s (from global.default_timeout) must be less than interval "
        "60s (from the statuspage kind's default); set timeout on the probe"
    ]


def test_a_static_label_colliding_with_a_kind_sample_label_names_both() -> None:
    errors = _errors(
        "probes:\n  - {name: k8s, kind: kubernetes, labels: {namespace: prod}}\n"
    )
    assert len(errors) == 1 and errors[0].startswith("probes[0].labels.namespace: ")
    assert "'namespace'" in errors[0] and "kubernetes kind" in errors[0]
    errors = _errors("global: {labels: {queue: main}}\n"
                     "probes:\n  - {name: r, kind: redis, url: 'redis://127.0.0.1:6379'}\n")
    assert errors[0].startswith("global.labels.queue: ") and "redis kind" in errors[0]


def test_every_kind_declares_the_labels_its_docs_list() -> None:
    # The docs' metric tables list each kind's sample labels: the declaration must cover
    # them, or the collision check above misses one.
    from probes import KIND_MODULES, load_kind

    docs = Path(__file__).parents[2] / "docs" / "probes"
    for kind_name in KIND_MODULES:
        page = docs / f"{kind_name}.md"
        if not page.exists():
            continue
        documented: set[str] = set()
        column = None
        for line in page.read_text().splitlines():
            if not line.startswith("|"):
                column = None
                continue
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if column is None:
                column = next((i for i, c in enumerate(cells) if c.lower() == "labels"), -1)
            elif 0 <= column < len(cells) and not set(cells[column]) <= set("-: "):
                cell = re.sub(r"\([^)]*\)", "", cells[column])  # drop "(values...)"
                documented |= set(re.findall(r"`([a-z_]+)`", cell))
        missing = documented - load_kind(kind_name).sample_labels
        assert not missing, f"{kind_name}: sample_labels lacks {sorted(missing)}"


def test_a_secret_variable_in_a_static_label_is_rejected() -> None:
    env = {"API_TOKEN": "t0k3n-value", "CLUSTER": "eu-1"}
    errors = _errors("global: {labels: {team: '${API_TOKEN}'}}\n"
                     "probes:\n  - {name: a, kind: fake, labels: {x: 'a-${API_TOKEN}'}}\n"
                     "  - {name: 'b-${API_TOKEN}', kind: fake}\n", env)
    assert [e.split(":")[0] for e in errors] == [
        "global.labels.team", "probes[0].labels.x", "probes[1].name"
    ]
    assert all("t0k3n-value" not in e for e in errors)
    # A variable that does not look like a secret is fine in a label.
    config = parse_config("probes:\n  - {name: a, kind: fake, labels: {c: '${CLUSTER}'}}\n",
                          environ=env)
    assert dict(config.probes[0].labels) == {"c": "eu-1"}


def test_a_probe_identity_is_its_own_settings_not_the_file_secrets() -> None:
    env = {"API_TOKEN": "t0k3n-value", "PGPASSWORD": "pw"}
    before = parse_config("probes:\n  - {name: a, kind: fake}\n"
                          "  - {name: db, kind: postgres, password: '${PGPASSWORD}'}\n",
                          environ=env)
    after = parse_config("probes:\n  - {name: a, kind: fake}\n"
                         "  - {name: db, kind: postgres, password: '${PGPASSWORD}'}\n"
                         "  - {name: api, kind: http, url: 'http://x.test/?t=${API_TOKEN}'}\n",
                         environ=env)
    assert before.probes[0] == after.probes[0]
    assert before.probes[1] == after.probes[1]  # the scheduler keeps them running
    assert "t0k3n-value" not in after.probes[1].secrets()
    assert after.probes[2].secrets() == {"t0k3n-value"}


def test_check_files_reports_missing_secret_ca_and_kubeconfig_files(tmp_path: Path) -> None:
    present = tmp_path / "db.pw"
    present.write_text("secret")
    text = textwrap.dedent(f"""
        probes:
          - {{name: db, kind: postgres, password_file: {tmp_path / 'absent-pw'}}}
          - {{name: db2, kind: postgres, password_file: {present}}}
          - {{name: api, kind: http, url: 'https://x.test/', ca_file: {tmp_path / 'ca.pem'}}}
          - {{name: k8s, kind: kubernetes, kubeconfig: {tmp_path / 'kubeconfig'}}}
          - {{name: dir, kind: redis, url: 'redis://127.0.0.1:6379', password_file: {tmp_path}}}
          - {{name: certs, kind: tls, files: ['{tmp_path}/*.pw', '{tmp_path}/*.crt']}}
    """)
    assert len(parse_config(text).probes) == 6  # the daemon does not check: the run reports
    errors = _errors(text, check_files=True)
    assert errors == [
        f"probes[0].password_file: cannot read {tmp_path / 'absent-pw'}: "
        "No such file or directory",
        f"probes[2].ca_file: cannot read {tmp_path / 'ca.pem'}: No such file or directory",
        f"probes[3].kubeconfig: cannot read {tmp_path / 'kubeconfig'}: "
        "No such file or directory",
        f"probes[4].password_file: {tmp_path} is not a regular file",
        f"probes[5].files[1]: no file matches {tmp_path}/*.crt",
    ]


# --- Hostile and broken files -----------------------------------------------------------
# Each is answered by check-config within 1 s of CPU and 200 MB of memory (on top of the
# interpreter's start-up), with an error naming the place, and no traceback.

_LAUGHS = (
    "lol: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    + "".join(f"l{i}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(9))
    + "probes: [*j]\n"
)
HOSTILE: list[tuple[str, bytes, str]] = [
    ("billion laughs", _LAUGHS.encode(), "aliases expand the document by more than"),
    ("500 nested lists", b"probes: " + b"[" * 500 + b"]" * 500 + b"\n",
     "nested more than 64 levels deep"),
    ("100k open brackets", b"[" * 100_000, "nested more than 64 levels deep"),
    ("deep mappings", b"".join(b"  " * i + b"k:\n" for i in range(2_000)),
     "nested more than 64 levels deep"),
    ("recursive alias", b"probes: &p [*p]\n", "refers to the node that contains it"),
    ("alias to nothing", b"probes: [*nope]\n", "alias *nope has no anchor"),
    ("20,000 unknown keys",
     b"probes:\n  - {name: a, kind: fake, " + b", ".join(b"k%d: 1" % i for i in range(20_000))
     + b"}\n", "... and 19900 more error(s)"),
    ("10,000 bad probes",
     b"probes:\n" + b"".join(b"  - {name: p%d, kind: fake, color: x, interval: 1s, "
                             b"timeout: 2s}\n" % i for i in range(10_000)),
     "probes[0].color: unknown key"),
    ("a number of 5,000 digits", b"global: {history_size: " + b"9" * 5000 + b"}\n",
     "line 1, column 24: the value has too many digits"),
    ("infinite timeout", b"probes:\n  - {name: a, kind: fake, timeout: .inf}\n",
     "probes[0].timeout: must be a finite duration"),
    ("NaN interval", b"probes:\n  - {name: a, kind: fake, interval: .nan}\n",
     "probes[0].interval: must be a finite duration"),
    ("400-digit duration", b"probes:\n  - {name: a, kind: fake, interval: " + b"9" * 400
     + b"s}\n", "probes[0].interval: must be a finite duration"),
    ("a 1 MB key", b"probes:\n  - name: a\n    kind: fake\n    ? " + b"k" * 1_000_000
     + b"\n    : 1\n", "probes[0]." + "k" * 60 + "...: unknown key"),
    ("a python tag", b"probes: !!python/object/apply:os.system [echo]\n", "is not supported"),
    ("a custom tag", b"probes: [!include other.yml]\n", "tag !include is not supported"),
    ("two documents", b"probes: []\n---\nprobes: []\n", "expected one document"),
    ("a NUL byte", b"probes: [\x00]\n", "YAML syntax error at character 10"),
    ("not UTF-8", b"probes: [\xff\xfe]\n", "config file is not UTF-8 text"),
    ("17 MiB", b"probes: []\n#" + b"x" * (17 << 20) + b"\n", "larger than 16 MiB"),
    ("a top-level scalar", b"just text\n", "top level must be a mapping"),
    ("probes of every wrong type", b"probes: [null, 1, x, [], {}]\n",
     "probes[4].name: required key is missing"),
    ("a duplicate key", b"probes:\n  - name: a\n    kind: fake\n    kind: fake\n",
     "line 4, column 5: key 'kind' appears twice"),
    ("a list as a key", b"? [a, b]\n: 1\n", "a mapping key must be a plain value"),
    ("a merge of a scalar", b"probes:\n  - {<<: 1, name: a}\n", "a merge (<<) takes a mapping"),
    ("a variable used 200,000 times", b"probes:\n  - {name: a, kind: fake, mode: '"
     + b"${NOPE}" * 200_000 + b"'}\n", "probes[0].mode: environment variable NOPE is not set"),
    ("empty", b"", "no probes configured"),
    ("a 1 MB label value", b"probes:\n  - {name: a, kind: fake, labels: {x: '" + b"v" * (1 << 20)
     + b"'}}\n", "probes[0].labels: the value of label 'x' is longer than 1024 characters"),
    ("50,000 static labels", b"global: {labels: {"
     + b", ".join(b"l%d: v" % i for i in range(50_000)) + b"}}\nprobes: []\n",
     "global.labels: at most 64 static labels, not 50000"),
]

_MEASURED_CHECK = """
import json, resource, sys, time
sys.path.insert(0, sys.argv[2])
from tests.core import run_with_fake  # registers the fake kind
from exporter.cli import main
import exporter.config, probes.postgres  # the imports are start-up, not the file's cost
before = resource.getrusage(resource.RUSAGE_SELF)
cpu = time.process_time()
code = main(["check-config", sys.argv[1]])
cpu = time.process_time() - cpu
after = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"code": code, "cpu": cpu, "grown_kb": after.ru_maxrss - before.ru_maxrss}))
"""


@pytest.mark.parametrize(("content", "expected"), [(c, e) for _, c, e in HOSTILE],
                         ids=[n for n, _, _ in HOSTILE])
def test_hostile_files_are_answered_quickly_with_the_place_and_no_traceback(
    tmp_path: Path, content: bytes, expected: str
) -> None:
    import json

    path = tmp_path / "hostile.yml"
    path.write_bytes(content)
    result = subprocess.run(
        [sys.executable, "-c", _MEASURED_CHECK, str(path), str(Path(__file__).parents[2])],
        capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"},
    )
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    measured = json.loads(result.stdout.splitlines()[-1])
    assert measured["code"] == 2
    assert expected in result.stderr, result.stderr[:3000]
    assert len(result.stderr.splitlines()) <= 102
    assert measured["cpu"] <= 1.0, measured
    assert measured["grown_kb"] <= 200 * 1024, measured


def test_dev_zero_and_a_directory_as_the_config_file(tmp_path: Path) -> None:
    for path, expected in (("/dev/zero", "larger than 16 MiB"),
                           (str(tmp_path), "cannot read config file: Is a directory")):
        result = _cli("check-config", path)
        assert result.returncode == 2 and expected in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
