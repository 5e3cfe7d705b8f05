"""Scraping ``/metrics`` in tests: the answer parsed with ``prometheus_client``'s parser
(which nobody here wrote) into ``{(sample name, labels): value}``."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from helpers.sio_client import in_thread

Key = tuple[str, frozenset[tuple[str, str]]]
Samples = dict[Key, float]


def _fetch(url: str) -> tuple[str, str]:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return answer.headers["Content-Type"], answer.read().decode()


async def scrape(url: str) -> Samples:
    """GET ``url`` (in a thread): its samples; the content type must be the 0.0.4 text."""
    content_type, text = await in_thread(_fetch, url)
    assert content_type.startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples) -> dict[Key, float]:
    """The samples that changed, and by how much (the histograms of durations and queue
    depths left out: they move with timing)."""
    skip = ("pyserver_handler_duration_seconds", "pyserver_send_queue_depth")
    return {
        key: after.get(key, 0.0) - before.get(key, 0.0)
        for key in set(before) | set(after)
        if after.get(key, 0.0) != before.get(key, 0.0) and not key[0].startswith(skip)
    }
