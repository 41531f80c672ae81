"""The performance guide's classes, usable without pytest.

Cache, batching, connection pool, async monitor, memory optimizer, optimisation
checker, profiler, load tester and request middleware.  Users call them from
their own code; the plugin's fixtures (:mod:`pytest_agentperf.plugin.fixtures`)
hand them to tests.  Nothing here imports pytest.
"""
