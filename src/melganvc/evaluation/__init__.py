"""Evaluation: metrics, scoring of systems, the report."""
