"""The simulated GPU: a device model on a virtual clock.

Time advances only when work runs (:meth:`SimulatedGpu.run`) or the caller waits
(:meth:`SimulatedGpu.idle`), in steps that end on the sensors' update ticks (integer multiples of
``update_period_s``, counted as integers so that time can never stall). Within a step the power is
constant, so the exact energy integral is a sum of ``power * dt``; the temperature follows a Foster
network of first-order poles exactly. The governor (:func:`physics.govern`) picks the clock at the
start of each step.

Sensors as the sources describe them (docs/sim-spec.md): at each tick the driver publishes the
energy counter and one power reading, which averages only the last ``power_sample_window_s`` of the
period (part-time sampling); ``nvmlDeviceGetPowerUsage`` is the mean of the readings of the last
``power_average_s`` on Hopper / Ada, the latest reading on GA100. Readings carry seeded noise.
Each unit departs from the nominal chip by offsets drawn from its UUID (:func:`physics.unit_for`).
Settings live in a :mod:`state` file.
"""

from __future__ import annotations

import atexit
import bisect
import contextlib
import math
import threading
import time
import uuid
import weakref
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wattbench.profiler.sim import env as sim_env
from wattbench.profiler.sim import physics
from wattbench.profiler.sim.physics import (
    REASON_GPU_IDLE,
    REASON_SW_POWER_CAP,
    REASON_SW_THERMAL,
    Workload,
)
from wattbench.profiler.sim.spec import GpuSpec
from wattbench.profiler.sim.state import MemoryState, SimState, StateFile, state_path

__all__ = [
    "REASON_GPU_IDLE",
    "REASON_SW_POWER_CAP",
    "REASON_SW_THERMAL",
    "RunResult",
    "Segment",
    "SimulatedGpu",
]

#: After work ends, clocks stay up this long before dropping to idle (real GPUs hold ~100s of ms).
IDLE_HOLD_S = 0.25
#: the sample period of nvmlDeviceGetUtilizationRates, s: "between 1 second and 1/6 second
#: depending on the product" (NVML API reference); [U] which one for each simulated GPU
UTILIZATION_PERIOD_S = 1.0

#: "0" makes every unit the nominal chip (no unit-to-unit spread); default "1"
UNIT_VARIATION_ENV = sim_env.UNIT_VARIATION_ENV


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

    iterations: float  # a fraction when a runner steps through a launch (host polls mid-kernel)
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
    """One simulated device. Thread-safe; all public methods take the lock.

    ``unit_variation`` (default: ``WATTBENCH_SIM_UNIT_VARIATION``, on) makes this unit depart from
    the nominal chip as its UUID dictates; ``persist=False`` keeps settings, counter and time in
    this process only (experiments that must not touch the user's simulated GPUs);
    ``state_folder`` keeps the state file elsewhere than the state folder (the shared service's
    node is another machine than ``sim:<key>``: same cards, its own settings and counters).
    """

    def __init__(
        self,
        spec: GpuSpec,
        index: int = 0,
        *,
        noise: bool = True,
        seed: int | None = None,
        privilege: str | None = None,
        record_trace: bool = False,
        unit_variation: bool | None = None,
        persist: bool = True,
        state_folder: Path | None = None,
    ) -> None:
        self.spec = spec
        self.index = index
        host = sim_env.sim_host()  # an emulated node's cards are its own
        where = f"wattbench-sim/{spec.source}/{index}" + (f"@{host}" if host else "")
        ident = uuid.uuid5(uuid.NAMESPACE_URL, where)
        self.uuid = "GPU-" + str(ident)
        self.serial = f"{1650000000000 + ident.int % 10**12:013d}"
        self.pci_bus_id = f"00000000:{0x18 + index:02X}:00.0"
        self.privilege = privilege or sim_env.privilege()
        if self.privilege not in sim_env.PRIVILEGES:
            raise ValueError(f"privilege must be one of {sim_env.PRIVILEGES}")
        if unit_variation is None:
            unit_variation = sim_env.unit_variation()
        self.unit = physics.unit_for(spec, self.uuid) if unit_variation else physics.NOMINAL
        self._lock = threading.RLock()
        self._board_w = physics.board_w(spec)
        if seed is None:
            seed = sim_env.seed()
        self._rng = np.random.default_rng([seed, index])
        self.noise = noise
        self.record_trace = record_trace
        self.trace: list[Segment] = []

        path = state_path(spec.key, spec.source, index, host)
        if state_folder is not None:
            path = state_folder / path.name
        self._file = StateFile(path) if persist else MemoryState()
        st = self._file.read()
        self.state: SimState = st
        self.now_s = st.time_s
        self._rises_c = self._initial_rises(st)
        self.energy_j = st.energy_mj / 1000.0  # exact integral since "driver load"
        self._published_mj = float(st.energy_mj)
        self._published_exact_j = self.energy_j
        period = spec.sensors.update_period_s
        # ticks are counted as integers: tick k is published at k * period
        self._tick = math.floor(self.now_s / period) + 1
        while self._tick * period <= self.now_s:
            self._tick += 1
        self._history: deque[tuple[float, float]] = deque([(self.now_s, self.energy_j)])
        self._pinned = None
        self._timings: dict[tuple, physics.Timing] = {}
        n_avg = max(1, round(spec.sensors.power_average_s / period))
        idle_w = self._power(None, *self.idle_clocks())
        self._readings: deque[float] = deque([idle_w] * n_avg, maxlen=n_avg)
        # each reading's sensor noise is drawn once, when it is published: a reading queried
        # twice between updates answers the same value, as a real sensor's register does
        self._reading_noise: deque[float] = deque([0.0] * n_avg, maxlen=n_avg)
        self._last: Segment | None = None
        self._busy_log: deque[tuple[float, float, float]] = deque()
        self._busy_until_s = -math.inf
        # persist the counter and virtual time now and then, and at exit, so that a process that
        # ends without nvmlShutdown (or is killed) does not make the next one's counter go back
        self._saved_wall_s = time.monotonic()
        atexit.register(_save_at_exit, weakref.ref(self))
        # settings are read once per run() call (another process's change applies from the
        # next); iteration timings are cached per (work, SM MHz, memory MHz): both spare the CPU

    def _initial_rises(self, st: SimState) -> list[float]:
        poles = self.spec.thermal.poles
        if st.thermal_rises_c is not None and len(st.thermal_rises_c) == len(poles):
            return list(st.thermal_rises_c)
        r_total = self.spec.thermal.resistance_c_per_w or 1.0
        if st.temp_c is not None and math.isfinite(st.temp_c):
            rise = st.temp_c - self.spec.thermal.ambient_c
        else:
            rise = self.spec.thermal.resistance_c_per_w * self.spec.power.idle_w
        return [rise * p.resistance_c_per_w / r_total for p in poles]

    @property
    def temp_c(self) -> float:
        """Die temperature, °C: ambient plus the rise of every thermal pole."""
        return self.spec.thermal.ambient_c + sum(self._rises_c)

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

    @property
    def state_path(self) -> Path:
        """The state file (a path that does not exist for ``persist=False``)."""
        return getattr(self._file, "path", Path("/nonexistent/in-memory-state"))

    def persistence_enabled(self) -> bool:
        """Persistence mode; enabled unless set otherwise [U: as nvidia-persistenced leaves
        data-centre nodes]."""
        with self._lock:
            mode = self._settings().persistence_mode
            return True if mode is None else mode

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
        st.thermal_rises_c = list(self._rises_c)

    # --- the governor ----------------------------------------------------------------------------

    def requested_sm_mhz(self) -> int:
        lock = self.sm_locked_mhz()
        return lock[1] if lock else self.spec.clocks.sm_mhz_max

    def effective_mem_mhz(self) -> int:
        lock = self.mem_locked_mhz()
        return lock[1] if lock else self.spec.clocks.memory_mhz_max

    def _power(self, work: Workload | None, sm_mhz: int, mem_mhz: int) -> float:
        return physics.work_power_w(
            self.spec, self._board_w, work, sm_mhz, mem_mhz, self.temp_c, self.unit
        )

    def _timing(self, work: Workload, sm_mhz: int, mem_mhz: int) -> physics.Timing:
        key = (work, sm_mhz, mem_mhz)
        t = self._timings.get(key)
        if t is None:
            if len(self._timings) > 4096:
                self._timings.clear()
            t = self._timings[key] = physics.iteration_timing(self.spec, work, sm_mhz, mem_mhz)
        return t

    def iteration_time_s(self, work: Workload) -> float:
        """Seconds one iteration of ``work`` takes at the clock the governor picks now."""
        sm, mem, _, _ = self.governed_clock(work)
        return self._timing(work, sm, mem).time_s

    def governed_clock(self, work: Workload) -> tuple[int, int, int, float]:
        """(sm_mhz, mem_mhz, reasons, power_w) the governor picks for ``work`` now."""
        g = physics.govern(
            self.spec,
            self._board_w,
            work,
            requested_sm_mhz=self.requested_sm_mhz(),
            mem_mhz=self.effective_mem_mhz(),
            temp_c=self.temp_c,
            limit_w=self.power_limit_mw() / 1000.0,
            unit=self.unit,
        )
        return g.sm_mhz, g.mem_mhz, g.reasons, g.power_w

    # --- advancing virtual time ------------------------------------------------------------------

    def _next_tick_s(self) -> float:
        return self._tick * self.spec.sensors.update_period_s

    def run(self, work: Workload, iterations: float) -> RunResult:
        """Execute ``iterations`` of ``work`` back to back; advance time, energy and temperature.
        A fraction is part of one launch: the GPU keeps working while the host looks in."""
        if not iterations > 0:
            raise ValueError("iterations must be > 0")
        return self._run(work, float(iterations), math.inf)

    def run_for(
        self, work: Workload, seconds: float, max_iterations: float = math.inf
    ) -> RunResult:
        """Execute ``work`` back to back for ``seconds`` of virtual time, or until
        ``max_iterations`` are done if that comes first (the real-time service's loads)."""
        if not seconds > 0 or not max_iterations > 0:
            raise ValueError("seconds and max_iterations must be > 0")
        return self._run(work, float(max_iterations), float(seconds))

    def _run(self, work: Workload, iterations: float, max_s: float) -> RunResult:
        with self._lock:
            t0, e0 = self.now_s, self.energy_j
            remaining = float(iterations)
            segs: list[Segment] = []
            sm_time = 0.0
            sm_min = 10**9
            reasons = 0
            self._pinned = self._settings()
            mem = self.effective_mem_mhz()
            end_s = t0 + max_s
            done_total = 0.0
            try:
                while remaining > 1e-9 and end_s - self.now_s > 1e-12:
                    sm, mem, why, p = self.governed_clock(work)
                    timing = self._timing(work, sm, mem)
                    t_iter = timing.time_s
                    to_tick = self._next_tick_s() - self.now_s
                    left_s = min(remaining * t_iter, end_s - self.now_s)
                    at_tick = left_s >= to_tick
                    if at_tick:
                        dt, done = to_tick, to_tick / t_iter
                    else:  # the work (or the time given) ends before the next tick
                        dt = left_s
                        done = remaining if dt >= remaining * t_iter else dt / t_iter
                    seg = self._advance(dt, p, sm, mem, why, busy=True, at_tick=at_tick)
                    self._note_busy(seg, timing.memory_activity)
                    segs.append(seg)
                    remaining -= done
                    done_total += done
                    sm_time += sm * dt
                    sm_min = min(sm_min, sm)
                    reasons |= why
            finally:
                self._pinned = None
            self._busy_until_s = self.now_s
            elapsed = self.now_s - t0
            return RunResult(
                iterations=done_total if math.isfinite(max_s) else iterations,
                elapsed_s=elapsed,
                energy_j=self.energy_j - e0,
                sm_mhz_mean=sm_time / elapsed if elapsed > 0 else float(sm_min),
                sm_mhz_min=sm_min,
                mem_mhz=mem,
                reasons=reasons,
                segments=segs if self.record_trace else [],
            )

    def idle(self, seconds: float) -> None:
        """Let ``seconds`` of virtual time pass with no work on the GPU."""
        if not seconds >= 0:
            raise ValueError("seconds must be >= 0")
        with self._lock:
            left = float(seconds)
            while left > 1e-12:
                sm, mem = self.idle_clocks()
                p = self._power(None, sm, mem)
                to_tick = self._next_tick_s() - self.now_s
                dt = min(to_tick, left)
                self._advance(dt, p, sm, mem, REASON_GPU_IDLE, busy=False, at_tick=dt == to_tick)
                left -= dt

    def _note_busy(self, seg: Segment, memory_activity: float) -> None:
        """Keep the busy stretches of the last utilisation sample period (and a little more)."""
        log = self._busy_log
        log.append((seg.t_start, seg.t_end, memory_activity))
        while log and log[0][1] < self.now_s - UTILIZATION_PERIOD_S - 1.0:
            log.popleft()

    def utilization_pct(self) -> tuple[int, int]:
        """(GPU, memory) utilisation, %, over the last ``UTILIZATION_PERIOD_S``: the share of
        the period during which a kernel ran, and the share during which device memory was
        read or written (a kernel's DRAM activity: its fraction of peak bandwidth) -- NVML's
        definitions of ``nvmlDeviceGetUtilizationRates``."""
        with self._lock:
            t0 = self.now_s - UTILIZATION_PERIOD_S
            busy = mem = 0.0
            for a, b, activity in self._busy_log:
                overlap = max(0.0, min(b, self.now_s) - max(a, t0))
                busy += overlap
                mem += overlap * activity
            return (
                round(100 * min(1.0, busy / UTILIZATION_PERIOD_S)),
                round(100 * min(1.0, mem / UTILIZATION_PERIOD_S)),
            )

    def performance_state(self) -> int:
        """P0 while work ran within ``IDLE_HOLD_S``, else P8 (an idle data-centre GPU's state
        in nvidia-smi) [U: no source gives the simulated GPUs' idle P-state]."""
        with self._lock:
            return 0 if self._active() is not None else 8

    def idle_clocks(self) -> tuple[int, int]:
        lock = self.sm_locked_mhz()
        sm = self.spec.clocks.snap_down(lock[0]) if lock else self.spec.clocks.sm_mhz_idle
        return sm, self.effective_mem_mhz()

    def _advance(
        self, dt: float, p: float, sm: int, mem: int, reasons: int, busy: bool, at_tick: bool
    ) -> Segment:
        """Advance by ``dt`` at power ``p``; a step ``at_tick`` ends exactly on the next tick and
        publishes it, then the integer tick count moves on (time can never stall)."""
        end = self._next_tick_s() if at_tick else self.now_s + dt
        seg = Segment(self.now_s, end, p, sm, mem, reasons, busy)
        self.now_s = end
        self.energy_j += p * dt
        r_scale = self.unit.resistance_scale
        for i, pole in enumerate(self.spec.thermal.poles):
            target = pole.resistance_c_per_w * r_scale * p
            self._rises_c[i] = target + (self._rises_c[i] - target) * math.exp(
                -dt / pole.time_constant_s
            )
        self._history.append((self.now_s, self.energy_j))
        horizon = self.now_s - self.spec.sensors.update_period_s - 1.0
        while len(self._history) > 2 and self._history[1][0] < horizon:
            self._history.popleft()
        if at_tick:
            self._publish()
            self._tick += 1
        self._last = seg
        if self.record_trace:
            self.trace.append(seg)
        return seg

    def _publish(self) -> None:
        """One sensor update: a part-time power reading and the energy counter's increment."""
        sn = self.spec.sensors
        window = sn.power_sample_window_s
        reading_w = (self.energy_j - self._energy_at(self.now_s - window)) / window
        self._readings.append(reading_w)
        self._reading_noise.append(self._gauss(sn.power_noise_rel))
        if sn.energy_counter_source == "samples":
            inc_j = reading_w * sn.update_period_s
        else:
            inc_j = self.energy_j - self._published_exact_j
        self._published_exact_j = self.energy_j
        noise = self._gauss(sn.energy_noise_rel)
        self._published_mj += max(0.0, inc_j * 1000.0 * (1.0 + noise))
        if time.monotonic() - self._saved_wall_s > SAVE_EVERY_WALL_S:
            self.save()

    def _gauss(self, rel: float) -> float:
        return float(self._rng.normal(0.0, rel)) if self.noise and rel > 0 else 0.0

    # --- sensors ---------------------------------------------------------------------------------

    def _energy_at(self, t: float) -> float:
        """Exact energy integral (J) at virtual time ``t`` within the kept history (power is
        constant between history points, so interpolation is exact)."""
        h = self._history
        if t >= h[-1][0]:
            return h[-1][1]
        if t <= h[0][0]:
            # before the kept history: extend at the oldest step's power
            (ta, ea), (tb, eb) = h[0], h[1] if len(h) > 1 else (h[0][0] + 1, h[0][1])
            return ea - (eb - ea) / (tb - ta) * (ta - t) if tb > ta else ea
        i = bisect.bisect_left([x[0] for x in h], t)
        (ta, ea), (tb, eb) = h[i - 1], h[i]
        return ea + (eb - ea) * (t - ta) / (tb - ta)

    def _active(self) -> Segment | None:
        """The last segment run while the GPU still counts as busy; None when idle."""
        if self.now_s - self._busy_until_s <= IDLE_HOLD_S:
            return self._last
        return None

    def instant_power_w(self, noisy: bool = True) -> float:
        """The latest power reading (NVML_FI_DEV_POWER_INSTANT): the mean power over the sample
        window at the end of the last update period (with its sensor noise when ``noisy``)."""
        with self._lock:
            return self._readings[-1] * (1.0 + (self._reading_noise[-1] if noisy else 0.0))

    def average_power_w(self, noisy: bool = True) -> float:
        """The mean of the readings of the last ``power_average_s`` (NVML_FI_DEV_POWER_AVERAGE)."""
        with self._lock:
            if not noisy:
                return sum(self._readings) / len(self._readings)
            pairs = zip(self._readings, self._reading_noise, strict=True)
            return sum(w * (1.0 + n) for w, n in pairs) / len(self._readings)

    def power_usage_mw(self) -> int:
        """nvmlDeviceGetPowerUsage: the running average or the latest reading, as the spec says."""
        averaged = self.spec.sensors.power_average_s > 0
        p = self.average_power_w() if averaged else self.instant_power_w()
        return max(0, round(p * 1000))

    def energy_counter_mj(self) -> int:
        with self._lock:
            return int(self._published_mj)

    def sm_clock_mhz(self) -> int:
        with self._lock:
            seg = self._active()
            return seg.sm_mhz if seg is not None else self.idle_clocks()[0]

    def mem_clock_mhz(self) -> int:
        with self._lock:
            seg = self._active()
            return seg.mem_mhz if seg is not None else self.idle_clocks()[1]

    def temperature_c(self) -> int:
        with self._lock:
            return round(self.temp_c)

    def clock_event_reasons(self) -> int:
        with self._lock:
            seg = self._active()
            return seg.reasons if seg is not None else REASON_GPU_IDLE


class VirtualClock:
    """A simulated GPU's virtual time as the measurement loop's clock (``measure.clock.Clock``):
    reading it gives the GPU's time, sleeping lets the GPU idle. The simulator provides it, so the
    measurement layer knows clocks, not simulators."""

    def __init__(self, gpu: SimulatedGpu) -> None:
        self.gpu = gpu

    def now_s(self) -> float:
        return self.gpu.now_s

    def sleep(self, seconds: float) -> None:
        self.gpu.idle(max(0.0, seconds))
