from __future__ import annotations

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
    assert {spec.kind for spec in config.probes} == {"http", "tcp"}
