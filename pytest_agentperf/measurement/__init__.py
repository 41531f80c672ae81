"""What the plugin measures around a test, usable without pytest.

- :mod:`.memory`: a test's peak memory (kernel high-water mark, sampler, tracemalloc);
- :mod:`.leaks`: memory a test leaves behind, and what holds it;
- :mod:`.loopblock`: asyncio event-loop blocking and its culprit.
"""
