"""Conversion: the converter, its streaming pipeline, batch jobs and exports."""
