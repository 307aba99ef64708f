"""The simulated GPU: a device model on a virtual clock.

Time advances only when work runs (:meth:`SimulatedGpu.run`) or the caller waits
(:meth:`SimulatedGpu.idle`), in steps that end on the energy counter's update ticks. Within a
step the power is constant, so the exact energy integral is a sum of ``power * dt``; the
temperature follows a first-order thermal model exactly. The power-cap governor picks, at each
step, the highest supported SM clock at or below the requested one whose power fits the limit.

Sensors behave as NVML documents them: the total-energy counter is published every
``energy_counter_period_s``; ``nvmlDeviceGetPowerUsage`` is a 1-s average on Hopper/Ada and
instantaneous on GA100; readings carry seeded noise. Settings live in a :mod:`state` file.
"""

from __future__ import annotations

import atexit
import bisect
import contextlib
import math
import os
import threading
import time
import uuid
import weakref
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from wattbench.profiler.sim import physics
from wattbench.profiler.sim.physics import Workload
from wattbench.profiler.sim.spec import GpuSpec
from wattbench.profiler.sim.state import SimState, StateFile, state_path

# NVML clock-event reason bits (nvmlClocksEventReason*)
REASON_GPU_IDLE = 0x1
REASON_SW_POWER_CAP = 0x4
REASON_SW_THERMAL = 0x20

#: After work ends, clocks stay up this long before dropping to idle (real GPUs hold ~100s of ms).
IDLE_HOLD_S = 0.25

PRIVILEGE_ENV = "WATTBENCH_SIM_PRIVILEGE"  # root (default) | user | power-only
SEED_ENV = "WATTBENCH_SIM_SEED"


@dataclass(frozen=True)
class Segment:
    """A stretch of virtual time at constant power: [t_start, t_end)."""

    t_start: float
    t_end: float
    power_w: float
    sm_mhz: int
    mem_mhz: int
    reasons: int
    busy: bool


@dataclass
class RunResult:
    """Ground truth of one :meth:`SimulatedGpu.run` call (for tests and the simulated runner)."""

    iterations: int
    elapsed_s: float
    energy_j: float
    sm_mhz_mean: float
    sm_mhz_min: int
    mem_mhz: int
    reasons: int
    segments: list[Segment] = field(default_factory=list, repr=False)

    @property
    def avg_power_w(self) -> float:
        return self.energy_j / self.elapsed_s if self.elapsed_s > 0 else 0.0


#: wall-clock seconds between automatic saves of the counter and virtual time
SAVE_EVERY_WALL_S = 0.5


def _save_at_exit(ref: weakref.ref) -> None:
    gpu = ref()
    if gpu is not None:
        with contextlib.suppress(Exception):
            gpu.save()


class SimulatedGpu:
    """One simulated device. Thread-safe; all public methods take the lock."""

    def __init__(
        self,
        spec: GpuSpec,
        index: int = 0,
        *,
        noise: bool = True,
        seed: int | None = None,
        privilege: str | None = None,
        record_trace: bool = False,
    ) -> None:
        self.spec = spec
        self.index = index
        self.uuid = "GPU-" + str(
            uuid.uuid5(uuid.NAMESPACE_URL, f"wattbench-sim/{spec.source}/{index}")
        )
        self.pci_bus_id = f"00000000:{0x18 + index:02X}:00.0"
        self.privilege = privilege or os.environ.get(PRIVILEGE_ENV, "root")
        if self.privilege not in ("root", "user", "power-only"):
            raise ValueError(f"{PRIVILEGE_ENV} must be root, user or power-only")
        self._lock = threading.RLock()
        self._board_w = physics.board_w(spec)
        self._sm_clocks = sorted(spec.clocks.sm_clocks_mhz())  # ascending
        if seed is None:
            seed = int(os.environ.get(SEED_ENV, "0"))
        self._rng = np.random.default_rng([seed, index])
        self.noise = noise
        self.record_trace = record_trace
        self.trace: list[Segment] = []

        self._file = StateFile(state_path(spec.key, spec.source, index))
        st = self._file.read()
        self.state: SimState = st
        self.now_s = st.time_s
        self.temp_c = (
            st.temp_c if st.temp_c is not None else physics.steady_temp_c(spec, spec.power.idle_w)
        )
        self.energy_j = st.energy_mj / 1000.0  # exact integral since "driver load"
        self._published_mj = float(st.energy_mj)
        self._published_exact_j = self.energy_j
        period = spec.sensors.energy_counter_period_s
        self._next_tick_s = (math.floor(self.now_s / period) + 1) * period
        self._history: deque[tuple[float, float]] = deque([(self.now_s, self.energy_j)])
        self._last: Segment | None = None
        self._busy_until_s = -math.inf
        # persist the counter and virtual time now and then, and at exit, so that a process that
        # ends without nvmlShutdown (or is killed) does not make the next one's counter go back
        self._saved_wall_s = time.monotonic()
        atexit.register(_save_at_exit, weakref.ref(self))
        # settings read once per run() call (another process's change applies from the next);
        # iteration timing per (work, SM MHz, memory MHz): both only spare the host CPU
        self._pinned = None
        self._timings: dict[tuple, physics.Timing] = {}

    # --- settings (persisted) --------------------------------------------------------------------

    def _settings(self):
        if self._pinned is not None:
            return self._pinned
        if self._file.changed_since_read():
            fresh = self._file.read()
            self.state.settings = fresh.settings
            self.state.processes = fresh.processes
        return self.state.settings

    def power_limit_mw(self) -> int:
        with self._lock:
            lim = self._settings().power_limit_mw
            return lim if lim is not None else int(self.spec.power.limit_w_default * 1000)

    def sm_locked_mhz(self) -> tuple[int, int] | None:
        with self._lock:
            return self._settings().sm_locked_mhz

    def mem_locked_mhz(self) -> tuple[int, int] | None:
        with self._lock:
            return self._settings().mem_locked_mhz

    def processes(self) -> list[dict[str, int]]:
        with self._lock:
            self._settings()
            return list(self.state.processes)

    def update_settings(self, **changes) -> None:
        """Apply setting ``changes`` to the state file (under its lock) and count the call."""
        with self._lock, self._file.locked() as st:
            for k, v in changes.items():
                setattr(st.settings, k, v)
            self._stamp(st)
            self.state = st

    def count_setter_call(self, setter: str) -> None:
        """Count every setter invocation, refused or not, in the state file."""
        with self._lock, self._file.locked() as st:
            st.setter_calls[setter] = st.setter_calls.get(setter, 0) + 1
            self._stamp(st)
            self.state = st

    def save(self) -> None:
        """Persist the energy counter, virtual time and temperature (at nvmlShutdown, at exit,
        and every ``SAVE_EVERY_WALL_S`` of wall time while the counter advances)."""
        with self._lock, self._file.locked() as st:
            self._stamp(st)
            self.state = st
            self._saved_wall_s = time.monotonic()

    def _stamp(self, st: SimState) -> None:
        st.energy_mj = int(self._published_mj)
        st.time_s = self.now_s
        st.temp_c = self.temp_c

    # --- the governor ----------------------------------------------------------------------------

    def requested_sm_mhz(self) -> int:
        lock = self.sm_locked_mhz()
        return lock[1] if lock else self.spec.clocks.sm_mhz_max

    def effective_mem_mhz(self) -> int:
        lock = self.mem_locked_mhz()
        return lock[1] if lock else self.spec.clocks.memory_mhz_max

    def _snap_down(self, mhz: float) -> int:
        i = bisect.bisect_right(self._sm_clocks, mhz) - 1
        return self._sm_clocks[max(i, 0)]

    def _power(self, work: Workload | None, sm_mhz: int, mem_mhz: int) -> float:
        if work is None:
            sm_act, mem_act = self.spec.power.sm_activity_idle, 0.0
        else:
            t = self._timing(work, sm_mhz, mem_mhz)
            sm_act, mem_act = t.sm_activity, t.memory_activity
        return physics.power_w(
            self.spec, self._board_w, sm_mhz, mem_mhz, self.temp_c, sm_act, mem_act
        )

    def _timing(self, work: Workload, sm_mhz: int, mem_mhz: int) -> physics.Timing:
        key = (work, sm_mhz, mem_mhz)
        t = self._timings.get(key)
        if t is None:
            if len(self._timings) > 4096:
                self._timings.clear()
            t = self._timings[key] = physics.iteration_timing(self.spec, work, sm_mhz, mem_mhz)
        return t

    def governed_clock(self, work: Workload) -> tuple[int, int, int, float]:
        """(sm_mhz, mem_mhz, reasons, power_w) the governor picks for ``work`` now."""
        mem = self.effective_mem_mhz()
        top = self._snap_down(self.requested_sm_mhz())
        top = min(top, self._snap_down(self.spec.clocks.sm_mhz_max_per_memory.get(mem, top)))
        reasons = 0
        th = self.spec.thermal
        if self.temp_c > th.slowdown_c:
            over_c = self.temp_c - th.slowdown_c
            cap = self._snap_down(self.spec.clocks.sm_mhz_max - th.slowdown_mhz_per_c * over_c)
            if cap < top:
                top, reasons = cap, reasons | REASON_SW_THERMAL
        limit_w = self.power_limit_mw() / 1000.0
        p_top = self._power(work, top, mem)
        if p_top <= limit_w:
            return top, mem, reasons, p_top
        # Power is monotonic in the SM clock: bisect for the highest clock that fits.
        hi = bisect.bisect_right(self._sm_clocks, top) - 1
        lo, best = 0, 0
        while lo <= hi:
            mid = (lo + hi) // 2
            if self._power(work, self._sm_clocks[mid], mem) <= limit_w:
                best, lo = mid, mid + 1
            else:
                hi = mid - 1
        f = self._sm_clocks[best]
        return f, mem, reasons | REASON_SW_POWER_CAP, self._power(work, f, mem)

    # --- advancing virtual time ------------------------------------------------------------------

    def run(self, work: Workload, iterations: int) -> RunResult:
        """Execute ``iterations`` of ``work`` back to back; advance time, energy and temperature."""
        if iterations < 1:
            raise ValueError("iterations must be >= 1")
        with self._lock:
            t0, e0 = self.now_s, self.energy_j
            remaining = float(iterations)
            segs: list[Segment] = []
            sm_time = 0.0
            sm_min = 10**9
            reasons = 0
            self._pinned = self._settings()
            mem = self.effective_mem_mhz()
            try:
                while remaining > 1e-9:
                    sm, mem, why, p = self.governed_clock(work)
                    t_iter = self._timing(work, sm, mem).time_s
                    dt = min(self._next_tick_s - self.now_s, remaining * t_iter)
                    dt = max(dt, 1e-12)
                    seg = self._advance(dt, p, sm, mem, why, busy=True)
                    segs.append(seg)
                    remaining -= dt / t_iter
                    sm_time += sm * dt
                    sm_min = min(sm_min, sm)
                    reasons |= why
            finally:
                self._pinned = None
            self._busy_until_s = self.now_s
            elapsed = self.now_s - t0
            return RunResult(
                iterations=iterations,
                elapsed_s=elapsed,
                energy_j=self.energy_j - e0,
                sm_mhz_mean=sm_time / elapsed,
                sm_mhz_min=sm_min,
                mem_mhz=mem,
                reasons=reasons,
                segments=segs if self.record_trace else [],
            )

    def idle(self, seconds: float) -> None:
        """Let ``seconds`` of virtual time pass with no work on the GPU."""
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        with self._lock:
            end = self.now_s + seconds
            while end - self.now_s > 1e-12:
                sm, mem = self.idle_clocks()
                p = self._power(None, sm, mem)
                dt = min(self._next_tick_s - self.now_s, end - self.now_s)
                self._advance(max(dt, 1e-12), p, sm, mem, REASON_GPU_IDLE, busy=False)

    def idle_clocks(self) -> tuple[int, int]:
        lock = self.sm_locked_mhz()
        sm = self._snap_down(lock[0]) if lock else self.spec.clocks.sm_mhz_idle
        return sm, self.effective_mem_mhz()

    def _advance(self, dt: float, p: float, sm: int, mem: int, reasons: int, busy: bool) -> Segment:
        seg = Segment(self.now_s, self.now_s + dt, p, sm, mem, reasons, busy)
        self.now_s += dt
        self.energy_j += p * dt
        t_ss = physics.steady_temp_c(self.spec, p)
        self.temp_c = t_ss + (self.temp_c - t_ss) * math.exp(
            -dt / self.spec.thermal.time_constant_s
        )
        self._history.append((self.now_s, self.energy_j))
        horizon = self.now_s - max(self.spec.sensors.power_average_s, 0.0) - 1.0
        while len(self._history) > 2 and self._history[1][0] < horizon:
            self._history.popleft()
        if self.now_s >= self._next_tick_s - 1e-12:
            self._publish()
        self._last = seg
        if self.record_trace:
            self.trace.append(seg)
        return seg

    def _publish(self) -> None:
        period = self.spec.sensors.energy_counter_period_s
        inc_j = self.energy_j - self._published_exact_j
        self._published_exact_j = self.energy_j
        noise = self._gauss(self.spec.sensors.energy_noise_rel)
        self._published_mj += max(0.0, inc_j * 1000.0 * (1.0 + noise))
        self._next_tick_s = (math.floor(self.now_s / period + 1e-9) + 1) * period
        if time.monotonic() - self._saved_wall_s > SAVE_EVERY_WALL_S:
            self.save()

    def _gauss(self, rel: float) -> float:
        return float(self._rng.normal(0.0, rel)) if self.noise and rel > 0 else 0.0

    # --- sensors ---------------------------------------------------------------------------------

    def _energy_at(self, t: float) -> float:
        """Exact energy integral (J) at virtual time ``t`` within the kept history."""
        h = self._history
        if t >= h[-1][0]:
            return h[-1][1]
        if t <= h[0][0]:
            return h[0][1]
        i = bisect.bisect_left([x[0] for x in h], t)
        (ta, ea), (tb, eb) = h[i - 1], h[i]
        return ea + (eb - ea) * (t - ta) / (tb - ta)

    def _active(self) -> bool:
        return self.now_s - self._busy_until_s <= IDLE_HOLD_S and self._last is not None

    def instant_power_w(self, noisy: bool = True) -> float:
        with self._lock:
            if self._last is not None and self._last.busy:
                p = self._last.power_w
            else:
                sm, mem = self.idle_clocks()
                p = self._power(None, sm, mem)
            return p * (1.0 + (self._gauss(self.spec.sensors.power_noise_rel) if noisy else 0.0))

    def average_power_w(self, window_s: float = 1.0, noisy: bool = True) -> float:
        with self._lock:
            start = self.now_s - window_s
            if start < self._history[0][0]:
                start = self._history[0][0]
            if self.now_s - start < 1e-9:
                return self.instant_power_w(noisy)
            p = (self.energy_j - self._energy_at(start)) / (self.now_s - start)
            return p * (1.0 + (self._gauss(self.spec.sensors.power_noise_rel) if noisy else 0.0))

    def power_usage_mw(self) -> int:
        """nvmlDeviceGetPowerUsage: 1-s average or instantaneous, as the spec says."""
        w = self.spec.sensors.power_average_s
        p = self.average_power_w(w) if w > 0 else self.instant_power_w()
        return max(0, round(p * 1000))

    def energy_counter_mj(self) -> int:
        with self._lock:
            return int(self._published_mj)

    def sm_clock_mhz(self) -> int:
        with self._lock:
            return self._last.sm_mhz if self._active() else self.idle_clocks()[0]

    def mem_clock_mhz(self) -> int:
        with self._lock:
            return self._last.mem_mhz if self._active() else self.idle_clocks()[1]

    def temperature_c(self) -> int:
        with self._lock:
            return round(self.temp_c)

    def clock_event_reasons(self) -> int:
        with self._lock:
            return self._last.reasons if self._active() else REASON_GPU_IDLE
