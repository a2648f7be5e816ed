"""Runs a study protocol: every model of a zoo trained, explained and scored on one data set."""

from cam_jax.study.run import run_study, write_study_report

__all__ = ['run_study', 'write_study_report']
