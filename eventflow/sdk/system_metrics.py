"""System metrics of a run (``start_run(log_system_metrics=True)``): CPU, memory, disk and
network through psutil, GPUs through pynvml when it is importable and finds a GPU, under
MLflow's names (``system/cpu_utilization_percentage`` ...), one point per interval (10 s
unless ``EVENTFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL`` says otherwise), until the run ends.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from eventflow import environment_variables as env_vars

PREFIX = "system/"

# Sends one sample: (metrics, timestamp in ms, step).
Publish = Callable[[dict[str, float], int, int], None]


def wanted(log_system_metrics: bool | None) -> bool:
    """The call's choice, else ``EVENTFLOW_ENABLE_SYSTEM_METRICS_LOGGING``."""
    from eventflow.validation import InvalidInput

    if log_system_metrics is not None:
        return bool(log_system_metrics)
    try:
        return bool(env_vars.ENABLE_SYSTEM_METRICS_LOGGING.get())
    except ValueError as error:
        raise InvalidInput(str(error)) from None


def interval() -> float:
    """``EVENTFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL``, checked (start_run reads it before it starts a run)."""
    from eventflow.validation import InvalidInput

    try:
        seconds = env_vars.SYSTEM_METRICS_SAMPLING_INTERVAL.get()
    except ValueError as error:
        raise InvalidInput(str(error)) from None
    if seconds is None or not seconds > 0:
        raise InvalidInput(f"{env_vars.SYSTEM_METRICS_SAMPLING_INTERVAL.name} must be a positive number of seconds, not {seconds!r}")
    return float(seconds)


class _Gpus:
    """NVIDIA GPUs through pynvml; ``None`` from ``find`` where there is none to read."""

    def __init__(self, nvml: Any):
        self.nvml = nvml
        self.handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]

    @classmethod
    def find(cls) -> "_Gpus | None":
        try:
            import pynvml

            pynvml.nvmlInit()
            return cls(pynvml)
        except Exception:  # not installed, no driver, no GPU: no GPU metrics, as MLflow
            return None

    def sample(self) -> dict[str, float]:
        found: dict[str, float] = {}
        for i, handle in enumerate(self.handles):
            try:
                memory = self.nvml.nvmlDeviceGetMemoryInfo(handle)
                found[f"gpu_{i}_memory_usage_percentage"] = round(memory.used / memory.total * 100, 1)
                found[f"gpu_{i}_memory_usage_megabytes"] = memory.used / 1e6
                found[f"gpu_{i}_utilization_percentage"] = float(self.nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
                power = self.nvml.nvmlDeviceGetPowerUsage(handle)
                found[f"gpu_{i}_power_usage_watts"] = power / 1000
                found[f"gpu_{i}_power_usage_percentage"] = power / self.nvml.nvmlDeviceGetEnforcedPowerLimit(handle) * 100
            except self.nvml.NVMLError:  # a reading this GPU does not offer
                continue
        return found


class SystemMetricsMonitor:
    """A daemon thread that samples the machine every ``every`` seconds and publishes it."""

    def __init__(self, publish: Publish, every: float, first_step: int = 0):
        import psutil

        self.psutil = psutil
        self.publish = publish
        self.every = every
        self.step = first_step
        self.gpus = _Gpus.find()
        self._stop = threading.Event()
        network = psutil.net_io_counters()
        self._received, self._sent = network.bytes_recv, network.bytes_sent
        psutil.cpu_percent()  # the first reading is since this call
        self._thread = threading.Thread(target=self._loop, name="eventflow-system-metrics", daemon=True)
        self._thread.start()

    def sample(self) -> dict[str, float]:
        psutil = self.psutil
        memory, disk, network = psutil.virtual_memory(), psutil.disk_usage(os.sep), psutil.net_io_counters()
        found = {
            "cpu_utilization_percentage": float(psutil.cpu_percent()),
            "system_memory_usage_megabytes": memory.used / 1e6,
            "system_memory_usage_percentage": float(memory.percent),
            "disk_usage_percentage": float(disk.percent),
            "disk_usage_megabytes": disk.used / 1e6,
            "disk_available_megabytes": disk.free / 1e6,
            "network_receive_megabytes": (network.bytes_recv - self._received) / 1e6,
            "network_transmit_megabytes": (network.bytes_sent - self._sent) / 1e6,
        }
        if self.gpus is not None:
            found.update(self.gpus.sample())
        return {PREFIX + key: value for key, value in found.items()}

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.publish(self.sample(), int(time.time() * 1000), self.step)
            except Exception as error:  # training goes on; say once why its system metrics stop
                print(f"eventflow: system metrics stopped: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
                return
            self.step += 1

    def stop(self) -> None:
        """Stop sampling; what was sampled is already handed to the sender."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)


def start(publish: Publish, every: float, first_step: int = 0) -> SystemMetricsMonitor | None:
    """A running monitor, or None (with a warning) when psutil is missing."""
    try:
        return SystemMetricsMonitor(publish, every, first_step)
    except ImportError:
        import warnings

        warnings.warn("system metrics are not logged: they need psutil (pip install psutil)", stacklevel=3)
        return None
