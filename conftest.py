"""Test configuration for pytest-agentperf's own suite."""

pytest_plugins = ["pytester"]
