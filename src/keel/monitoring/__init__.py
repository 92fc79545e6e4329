"""Monitoring live models: prediction log and feedback, reference profiles, drift, data quality,
performance, monitors and alerting.

May import: keel.registry, keel.tracking, keel.data, keel.storage and the base modules.
"""
