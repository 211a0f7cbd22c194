"""Observability of every role: Prometheus metrics, ``/healthz`` and ``/readyz``, JSON logs."""
