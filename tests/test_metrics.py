"""The sans-IO metrics core: counters, histograms and the text exposition (parsed by
``prometheus_client``'s parser, which nobody here wrote)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from pyserver.metrics import (
    DURATION_BUCKETS,
    EngineCounters,
    Exposition,
    Histogram,
    NamespaceCounters,
    render,
)


def parsed(
    exposition: Exposition,
) -> dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    families = {}
    for family in text_string_to_metric_families(render(exposition).decode()):
        families[family.name] = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for sample in family.samples
        }
    return families


def test_counter_gauge_and_escaping() -> None:
    out = Exposition()
    out.counter(
        "pyserver_x",
        'help with \\ and "quotes"\nand a newline',
        [({"reason": 'a "b"\\c\nd'}, 3), ({}, 0)],
    )
    out.gauge("pyserver_y", "a gauge", [({"transport": "websocket"}, 2.5)])
    families = parsed(out)
    assert families["pyserver_x"] == {
        ("pyserver_x_total", (("reason", 'a "b"\\c\nd'),)): 3.0,
        ("pyserver_x_total", ()): 0.0,
    }
    assert families["pyserver_y"] == {("pyserver_y", (("transport", "websocket"),)): 2.5}


def test_histogram_buckets_are_cumulative() -> None:
    histogram = Histogram((1, 10))
    for value in (0.5, 1, 2, 11, 100):
        histogram.observe(value)
    out = Exposition()
    out.histogram("pyserver_h", "h", [({"namespace": "/"}, histogram)])
    samples = parsed(out)["pyserver_h"]
    ns = ("namespace", "/")
    assert samples[("pyserver_h_bucket", (("le", "1.0"), ns))] == 2  # (le is inclusive)
    assert samples[("pyserver_h_bucket", (("le", "10.0"), ns))] == 3
    assert samples[("pyserver_h_bucket", (("le", "+Inf"), ns))] == 5
    assert samples[("pyserver_h_count", (ns,))] == 5
    assert samples[("pyserver_h_sum", (ns,))] == 114.5


def test_counters_start_at_zero() -> None:
    engine = EngineCounters()
    assert (engine.packets_in, engine.bytes_out, engine.opened, engine.closed) == (0, 0, {}, {})
    namespace = NamespaceCounters("/chat")
    assert namespace.handler_seconds.bounds == DURATION_BUCKETS
    assert namespace.events_in == namespace.acks_timed_out == 0
