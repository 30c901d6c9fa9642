"""PullMetrics: webinar attendance into CRM check-ins. The run (``run``), one webinar's pull (``pull``), the rules
of when and what to read (``schedule``) and the check-ins written (``checkins``)."""

from shared.metrics.pull import PullStatus, WebinarReport
from shared.metrics.run import MetricsOptions, MetricsPorts, RunReport, pull_metrics, pull_webinar

__all__ = [
    "MetricsOptions",
    "MetricsPorts",
    "PullStatus",
    "RunReport",
    "WebinarReport",
    "pull_metrics",
    "pull_webinar",
]
