"""The guide's own classes, copied from performance-tuning-guide.txt, kept for comparison.

This is the guide's code (indentation restored, only the imports it needs added),
not ours: it is what the benchmarks in bench/ measure our versions against.  Do
not fix it.  Helpers append their class here; keep each a faithful copy.
"""
# ruff: noqa
# mypy: ignore-errors

import asyncio
import statistics
import time
from typing import Any, Callable, Dict, List


# --- guide: "Load Testing Framework" ------------------------------------------
class LoadTester:
    def __init__(self):
        self.results = []

    async def run_load_test(self,
                            test_func: Callable,
                            concurrent_users: int = 10,
                            requests_per_user: int = 100,
                            ramp_up_time: float = 10.0) -> Dict[str, Any]:
        """Run load test with gradual ramp-up"""
        # Calculate ramp-up delay
        ramp_up_delay = ramp_up_time / concurrent_users
        # Create user tasks
        user_tasks = []
        for user_id in range(concurrent_users):
            # Stagger user start times
            start_delay = user_id * ramp_up_delay
            user_task = asyncio.create_task(
                self._simulate_user(
                    user_id,
                    test_func,
                    requests_per_user,
                    start_delay
                )
            )
            user_tasks.append(user_task)
        # Wait for all users to complete
        await asyncio.gather(*user_tasks)
        # Calculate statistics
        return self._calculate_statistics()

    async def _simulate_user(self,
                             user_id: int,
                             test_func: Callable,
                             num_requests: int,
                             start_delay: float):
        """Simulate a single user"""
        # Wait for ramp-up
        await asyncio.sleep(start_delay)
        for request_id in range(num_requests):
            start_time = time.time()
            success = False
            error = None
            try:
                await test_func(user_id, request_id)
                success = True
            except Exception as e:
                error = str(e)
            response_time = time.time() - start_time
            self.results.append({
                "user_id": user_id,
                "request_id": request_id,
                "response_time": response_time,
                "success": success,
                "error": error,
                "timestamp": start_time
            })

    def _calculate_statistics(self) -> Dict[str, Any]:
        """Calculate load test statistics"""
        if not self.results:
            return {"error": "No results collected"}
        # Response times
        response_times = [r["response_time"] for r in self.results]
        successful_times = [r["response_time"] for r in self.results if r["success"]]
        # Error rate
        total_requests = len(self.results)
        failed_requests = sum(1 for r in self.results if not r["success"])
        error_rate = failed_requests / total_requests
        # Throughput
        test_duration = max(r["timestamp"] for r in self.results) - min(r["timestamp"] for r in self.results)
        throughput = total_requests / test_duration if test_duration > 0 else 0
        return {
            "total_requests": total_requests,
            "successful_requests": total_requests - failed_requests,
            "failed_requests": failed_requests,
            "error_rate": error_rate,
            "throughput_rps": throughput,
            "response_time": {
                "min": min(response_times),
                "max": max(response_times),
                "mean": statistics.mean(response_times),
                "median": statistics.median(response_times),
                "p95": statistics.quantiles(response_times, n=20)[18] if len(response_times) > 20 else max(response_times),
                "p99": statistics.quantiles(response_times, n=100)[98] if len(response_times) > 100 else max(response_times)
            }
        }


# --- guide: "Optimization Strategies" 1-3 (IntelligentCache, BatchProcessor, ConnectionPool)
import hashlib
import pickle
import threading
from asyncio import Queue
from typing import Generic, Optional, Tuple, TypeVar

import aiohttp


class IntelligentCache:
    def __init__(self, max_size: int = 1000, ttl_seconds: int = 3600):
        self.max_size = max_size
        self.ttl_seconds = ttl_seconds
        self.cache: Dict[str, Dict[str, Any]] = {}
        self.access_count: Dict[str, int] = {}
        self.computation_time: Dict[str, float] = {}
        self._lock = threading.Lock()

    def _generate_key(self, func_name: str, args: tuple, kwargs: dict) -> str:
        """Generate cache key from function arguments"""
        key_data = {
            "func": func_name,
            "args": args,
            "kwargs": kwargs
        }
        # Create hash of the data
        key_str = pickle.dumps(key_data)
        return hashlib.sha256(key_str).hexdigest()

    def cached(self, ttl_override: Optional[int] = None):
        """Decorator for caching function results"""
        def decorator(func):
            def wrapper(*args, **kwargs):
                cache_key = self._generate_key(func.__name__, args, kwargs)
                # Check cache
                with self._lock:
                    if cache_key in self.cache:
                        entry = self.cache[cache_key]
                        # Check TTL
                        age = time.time() - entry["timestamp"]
                        ttl = ttl_override or self.ttl_seconds
                        if age < ttl:
                            self.access_count[cache_key] = self.access_count.get(cache_key, 0) + 1
                            return entry["value"]
                # Compute value
                start_time = time.time()
                result = func(*args, **kwargs)
                computation_time = time.time() - start_time
                # Store in cache
                with self._lock:
                    # Evict if necessary
                    if len(self.cache) >= self.max_size:
                        self._evict_least_valuable()
                    self.cache[cache_key] = {
                        "value": result,
                        "timestamp": time.time()
                    }
                    self.access_count[cache_key] = 1
                    self.computation_time[cache_key] = computation_time
                return result
            return wrapper
        return decorator

    def _evict_least_valuable(self):
        """Evict least valuable cache entry"""
        if not self.cache:
            return
        # Calculate value score for each entry
        scores = {}
        current_time = time.time()
        for key, entry in self.cache.items():
            age = current_time - entry["timestamp"]
            access_count = self.access_count.get(key, 1)
            comp_time = self.computation_time.get(key, 0.1)
            # Value = (access_count * computation_time) / age
            value_score = (access_count * comp_time) / max(age, 1)
            scores[key] = value_score
        # Evict lowest score
        evict_key = min(scores.keys(), key=lambda k: scores[k])
        del self.cache[evict_key]
        self.access_count.pop(evict_key, None)
        self.computation_time.pop(evict_key, None)

    def get_cache_stats(self) -> Dict[str, Any]:
        """Get cache performance statistics"""
        with self._lock:
            if not self.access_count:
                return {"cache_size": len(self.cache)}
            total_hits = sum(count - 1 for count in self.access_count.values())
            total_misses = len(self.access_count)
            hit_rate = total_hits / (total_hits + total_misses) if (total_hits + total_misses) > 0 else 0
            # Calculate time saved
            time_saved = sum(
                (count - 1) * self.computation_time.get(key, 0)
                for key, count in self.access_count.items()
            )
            return {
                "cache_size": len(self.cache),
                "hit_rate": hit_rate,
                "total_hits": total_hits,
                "total_misses": total_misses,
                "estimated_time_saved": time_saved,
                "avg_computation_time": sum(self.computation_time.values()) / len(self.computation_time)
            }


T = TypeVar('T')
R = TypeVar('R')


class BatchProcessor(Generic[T, R]):
    def __init__(self,
                 batch_size: int = 100,
                 max_wait_time: float = 0.1,
                 max_workers: int = 4):
        self.batch_size = batch_size
        self.max_wait_time = max_wait_time
        self.max_workers = max_workers
        self.pending_items: List[Tuple[T, asyncio.Future]] = []
        self.processing = False
        self._lock = asyncio.Lock()

    async def process(self, item: T, processor_func: Callable[[List[T]], List[R]]) -> R:
        """Add item for batch processing"""
        future = asyncio.Future()
        async with self._lock:
            self.pending_items.append((item, future))
            # Start processing if not already running
            if not self.processing:
                asyncio.create_task(self._process_batches(processor_func))
        return await future

    async def _process_batches(self, processor_func: Callable[[List[T]], List[R]]):
        """Process items in batches"""
        self.processing = True
        try:
            while True:
                # Wait for batch to fill or timeout
                start_wait = time.time()
                while len(self.pending_items) < self.batch_size:
                    if time.time() - start_wait > self.max_wait_time:
                        break
                    if not self.pending_items:
                        await asyncio.sleep(0.01)
                        continue
                    await asyncio.sleep(0.001)
                # Get batch
                async with self._lock:
                    if not self.pending_items:
                        break
                    batch_items = self.pending_items[:self.batch_size]
                    self.pending_items = self.pending_items[self.batch_size:]
                # Process batch
                items = [item for item, _ in batch_items]
                futures = [future for _, future in batch_items]
                try:
                    # Process in parallel if supported
                    if asyncio.iscoroutinefunction(processor_func):
                        results = await processor_func(items)
                    else:
                        # Run in thread pool for CPU-bound operations
                        loop = asyncio.get_event_loop()
                        results = await loop.run_in_executor(None, processor_func, items)
                    # Distribute results
                    for future, result in zip(futures, results):
                        future.set_result(result)
                except Exception as e:
                    # Set exception for all futures in batch
                    for future in futures:
                        future.set_exception(e)
        finally:
            self.processing = False


class ConnectionPool:
    def __init__(self,
                 min_connections: int = 5,
                 max_connections: int = 20,
                 connection_timeout: float = 30.0):
        self.min_connections = min_connections
        self.max_connections = max_connections
        self.connection_timeout = connection_timeout
        self.available_connections: Queue = Queue()
        self.active_connections = 0
        self.total_connections = 0
        self._lock = asyncio.Lock()
        self._connector = None
        self._stats = {
            "connections_created": 0,
            "connections_reused": 0,
            "connection_errors": 0,
            "wait_time_total": 0
        }

    async def initialize(self):
        """Initialize connection pool"""
        self._connector = aiohttp.TCPConnector(
            limit=self.max_connections,
            limit_per_host=self.max_connections
        )
        # Create minimum connections
        for _ in range(self.min_connections):
            conn = await self._create_connection()
            await self.available_connections.put(conn)

    async def acquire(self) -> aiohttp.ClientSession:
        """Acquire a connection from the pool"""
        start_time = time.time()
        # Try to get available connection
        try:
            connection = await asyncio.wait_for(
                self.available_connections.get(),
                timeout=0.1
            )
            self._stats["connections_reused"] += 1
        except asyncio.TimeoutError:
            # Create new connection if under limit
            async with self._lock:
                if self.total_connections < self.max_connections:
                    connection = await self._create_connection()
                else:
                    # Wait for connection to become available
                    connection = await self.available_connections.get()
                    self._stats["connections_reused"] += 1
        self._stats["wait_time_total"] += time.time() - start_time
        async with self._lock:
            self.active_connections += 1
        return connection

    async def release(self, connection: aiohttp.ClientSession):
        """Release connection back to pool"""
        async with self._lock:
            self.active_connections -= 1
        # Check if connection is still valid
        if not connection.closed:
            await self.available_connections.put(connection)
        else:
            async with self._lock:
                self.total_connections -= 1
            # Create replacement if below minimum
            if self.total_connections < self.min_connections:
                try:
                    new_conn = await self._create_connection()
                    await self.available_connections.put(new_conn)
                except Exception:
                    pass

    async def _create_connection(self) -> aiohttp.ClientSession:
        """Create a new connection"""
        try:
            session = aiohttp.ClientSession(
                connector=self._connector,
                timeout=aiohttp.ClientTimeout(total=self.connection_timeout)
            )
            async with self._lock:
                self.total_connections += 1
                self._stats["connections_created"] += 1
            return session
        except Exception as e:
            self._stats["connection_errors"] += 1
            raise

    def get_pool_stats(self) -> Dict[str, Any]:
        """Get connection pool statistics"""
        return {
            "total_connections": self.total_connections,
            "active_connections": self.active_connections,
            "available_connections": self.available_connections.qsize(),
            "connection_reuse_rate": (
                self._stats["connections_reused"] /
                max(self._stats["connections_created"] + self._stats["connections_reused"], 1)
            ),
            **self._stats
        }


# --- guide: "Agent Performance Profiler" -------------------------------------
import cProfile
import io
import pstats
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Optional

import psutil


@dataclass
class PerformanceMetrics:
    agent_name: str
    operation: str
    start_time: float
    end_time: Optional[float] = None
    cpu_percent_start: float = 0
    cpu_percent_end: float = 0
    memory_mb_start: float = 0
    memory_mb_end: float = 0
    tokens_used: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    custom_metrics: Dict[str, Any] = field(default_factory=dict)


class PerformanceProfiler:
    def __init__(self):
        self.metrics: List[PerformanceMetrics] = []
        self.active_profiles: Dict[str, cProfile.Profile] = {}
        self._lock = threading.Lock()
        self.process = psutil.Process()

    @contextmanager
    def profile_operation(self, agent_name: str, operation: str):
        """Profile a specific operation"""
        # Start profiling
        profile = cProfile.Profile()
        profile_key = f"{agent_name}:{operation}"
        # Collect initial metrics
        metric = PerformanceMetrics(
            agent_name=agent_name,
            operation=operation,
            start_time=time.time(),
            cpu_percent_start=self.process.cpu_percent(),
            memory_mb_start=self.process.memory_info().rss / 1024 / 1024
        )
        with self._lock:
            self.active_profiles[profile_key] = profile
        profile.enable()
        try:
            yield metric
        finally:
            profile.disable()
            # Collect final metrics
            metric.end_time = time.time()
            metric.cpu_percent_end = self.process.cpu_percent()
            metric.memory_mb_end = self.process.memory_info().rss / 1024 / 1024
            with self._lock:
                self.metrics.append(metric)
                if profile_key in self.active_profiles:
                    del self.active_profiles[profile_key]
