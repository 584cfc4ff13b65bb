"""What the guard tells operators: the audit trail, metrics, signals and log fields."""
