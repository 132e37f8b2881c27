"""What an operator watches: Prometheus metrics, structured logs, health probes."""
