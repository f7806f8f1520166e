"""Observability: Prometheus metrics and lifecycle log lines from committed decisions.

`LedgerRuntime` builds a `metrics.LedgerMetrics` (its own registry) and a
`lifecycle_log.LifecycleLog` and hands both to its `Ledger` as decision observers;
`route.create_metrics_route(runtime)` serves `/metrics`; `log_format` holds the JSON
log formatter and the logging configuration of `workerledger serve`.
"""
