from __future__ import annotations

import pytest

from probes.base import Metric, ProbeResult, Sample, counter, gauge, info
from tests.promtool import assert_promtool_clean

pytestmark = pytest.mark.anyio


async def test_families_of_many_probes_merge_and_pass_promtool() -> None:
    first = ProbeResult.ok([
        gauge("fake_value", "A value.", 1.0, {"queue": "critical"}),
        counter("fake_events", "Events seen.", 3.0),
        info("fake_version", "Version.", {"version": "1.2"}),
        Metric("fake_nan", "Not a number yet.", "gauge", (Sample(float("nan")),)),
    ])
    second = ProbeResult.fail("refused", [gauge("fake_value", "A value.", 2.0)])
    text = await assert_promtool_clean("fake", [first, second])
    assert text.count("# TYPE fake_value gauge") == 1
    assert 'fake_value{env="test",kind="fake",probe="fake-1"} 2.0' in text
    assert 'fake_events_total{env="test",kind="fake",probe="fake-0"} 3.0' in text
    assert 'fake_version_info{env="test",kind="fake",probe="fake-0",version="1.2"} 1.0' in text
    failures = 'probe_failures_total{env="test",kind="fake",probe="fake-1",reason="refused"}'
    assert f"{failures} 1.0" in text


async def test_two_kinds_exposing_one_name_differently_never_duplicate_it() -> None:
    # An info family "x" is exposed as x_info: a gauge named x_info must not appear too.
    as_info = ProbeResult.ok([info("fake_tls_version", "Version.", {"version": "TLS 1.3"})])
    as_gauge = ProbeResult.ok([gauge("fake_tls_version_info", "Version.", 1.0)])
    text = await assert_promtool_clean("fake", [as_info, as_gauge])
    assert text.count("# TYPE fake_tls_version_info") == 1
