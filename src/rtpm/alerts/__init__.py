"""Alerting: rules, evaluation (the state machine), templating."""
