"""/metrics in Prometheus' text format (prometheus_client), built from the
rows of one statement (serving.ServerReads.metrics) per scrape: a custom
collector on a registry of its own, so nothing is counted in this process
and several servers report the same numbers."""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily


class _Scrape:
    def __init__(self, data: dict[str, Any], window_s: float):
        self.data = data
        self.window_s = window_s

    def collect(self):
        data = self.data
        jobs = GaugeMetricFamily(
            "jobctl_jobs", "Jobs by status and queue: every queued and running job, and the "
            f"finished ones started in the last {self.window_s:g} s", labels=["status", "queue"])
        for (status, queue), n in sorted(data["jobs"].items()):
            jobs.add_metric([status, queue], n)
        yield jobs
        yield GaugeMetricFamily("jobctl_jobs_running", "Jobs running now (as their rows say)",
                                value=data["running"])
        yield GaugeMetricFamily("jobctl_jobs_queued", "Jobs queued now", value=data["queued"])
        yield GaugeMetricFamily("jobctl_pools_alive", "`jobctl worker` pools alive (heartbeat "
                                "or process seen)", value=data["pools_alive"])
        hist = HistogramMetricFamily(
            "jobctl_job_duration_seconds", "Run time of the completed jobs started in the last "
            f"{self.window_s:g} s, per procedure", labels=["procedure"])
        edges = data["buckets"]
        for name, h in sorted(data["durations"].items()):
            cumulative, buckets = 0, []
            for edge, n in zip(edges, h["counts"]):
                cumulative += n
                buckets.append((_edge(edge), cumulative))
            buckets.append(("+Inf", cumulative + h["counts"][-1]))
            hist.add_metric([name], buckets, h["sum"])
        yield hist


def _edge(value: float) -> str:
    return f"{float(value):g}"


def exposition(data: dict[str, Any], window_s: float) -> tuple[bytes, str]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Scrape(data, window_s))
    return generate_latest(registry), CONTENT_TYPE_LATEST
