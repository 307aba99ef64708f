"""The L2 policy: how the launches of a problem meet the GPU's L2 cache, the same way in the
energy loop (real-GPU runners repeat :func:`wattbench.kernels.catalog.gpu_launch`) and in the
CUDA-event timing (:mod:`wattbench.kernels.timing`, used by ``check``,
``suites/bench/kernels.py`` and the pytest fixture).

Policies (stable names, written into records as they are):

* ``"rotate"`` (the default): the problem's inputs are allocated as K *sets*, seeded ``seed``,
  ``seed + 1``, ..., each with its own output (and whatever its implementation's launch
  allocates), and call i of the launch runs set ``i mod K``. K is the smallest number of sets
  whose operand and output bytes together reach :data:`COVER_FACTOR` x the L2 size (K = 1
  when one set is that large already): the K - 1 other sets, twice the L2 less one set, pass
  between two uses of a set, so that under any replacement close to least-recently-used
  (NVIDIA does not document L2's) the set has been evicted and the launch reads its operands
  from device memory. Nothing is flushed: the only dirty lines a launch meets are the outputs
  of the launches before it, as in any back-to-back run of the kernel.
* ``"warm"``: one set, the same inputs every launch (what an application that reuses its
  weights sees; small problems then run from L2).

K is bounded by memory: the sets may take at most :func:`memory_cap_bytes` in all (the larger of
:data:`MEMORY_FLOOR_BYTES` and the cover target, never more than :data:`FREE_FRACTION` of the
device memory free before they are allocated), and there are never more than :data:`MAX_SETS`
sets (tiny problems). A rotation that falls short of the target says so: :attr:`L2Plan.covered`
is False and :attr:`L2Plan.limited_by` names the bound. :class:`L2Plan` is what a record stores.

The planning (:func:`plan_sets`, :func:`memory_cap_bytes`, :func:`sets_to_cover`,
:func:`inputs_bytes`) and the round-robin launch (:class:`RotatingLaunch`) run without CUDA;
:func:`rotating_launch` builds the sets on any torch device, and only the device queries
(:func:`device_l2_bytes`, :func:`device_free_bytes`, the allocator reading) need CUDA.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from wattbench.kernels.errors import UsageError
from wattbench.kernels.family import Family, Impl, Inputs, Launch, Shape, launch_choice

ROTATE = "rotate"
WARM = "warm"
#: the policies, default first
POLICIES = (ROTATE, WARM)
DEFAULT_POLICY = ROTATE

#: the sets together hold at least this many times the L2 size (bytes over bytes)
COVER_FACTOR = 2
#: the sets may always take this much device memory in all (bytes), free memory permitting
MEMORY_FLOOR_BYTES = 2**30
#: ... and never more than this fraction of the device memory free before they are allocated
FREE_FRACTION = 0.5
#: never more sets than this: each costs an allocation per tensor and a launch object
MAX_SETS = 1024

# why a rotation has fewer sets than the cover target needs (L2Plan.limited_by)
LIMIT_MEMORY = "memory"
LIMIT_COUNT = "count"
LIMIT_L2_UNKNOWN = "l2-unknown"


def check_policy(name: str) -> str:
    """``name`` if it is a policy, else a UsageError listing them."""
    if name not in POLICIES:
        raise UsageError(f"unknown L2 policy {name!r}", f"choose one of: {', '.join(POLICIES)}")
    return name


def _mib(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:,.1f} MiB"


@dataclass(frozen=True)
class L2Plan:
    """The L2 policy in force for a launch, and what it came to.

    ``sets``: input sets the launch rotates through (1 under ``"warm"``); ``set_bytes``: bytes of
    one set's operands and output (:func:`inputs_bytes`); ``footprint_bytes``: device memory
    one set takes with what its launch allocates (>= ``set_bytes``; measured on CUDA, equal to
    ``set_bytes`` elsewhere); ``l2_bytes``: the device's L2 size (None: unknown or not asked,
    as under ``"warm"``); ``cover_bytes``: the rotation target, ``COVER_FACTOR * l2_bytes``;
    ``cap_bytes``: the memory all sets may take; ``limited_by``: why ``sets`` falls short of the
    target (``"memory"``, ``"count"``, ``"l2-unknown"``) or None.
    """

    policy: str
    sets: int
    set_bytes: int
    footprint_bytes: int
    l2_bytes: int | None = None
    cover_bytes: int | None = None
    cap_bytes: int | None = None
    limited_by: str | None = None

    def __post_init__(self) -> None:
        check_policy(self.policy)
        if self.sets < 1 or (self.policy == WARM and self.sets != 1):
            raise ValueError(f"{self.policy!r} with {self.sets} sets")

    @property
    def rotated_bytes(self) -> int:
        """Operand and output bytes of all sets together."""
        return self.sets * self.set_bytes

    @property
    def covered(self) -> bool:
        """True when the sets reach the cover target (``rotated_bytes >= cover_bytes``), the
        condition for every launch to find its operands evicted by the other sets'; always
        False under ``"warm"``."""
        return self.cover_bytes is not None and self.rotated_bytes >= self.cover_bytes

    def text(self) -> str:
        """One line for people, e.g. ``rotate: 3 input sets of 40.0 MiB (120.0 MiB >= 2 x the
        60.0 MiB L2)``."""
        if self.policy == WARM:
            return f"warm: the same inputs ({_mib(self.set_bytes)}) every launch"
        head = f"rotate: {self.sets} input set{'s' * (self.sets != 1)} of {_mib(self.set_bytes)}"
        if self.l2_bytes is None:
            return f"{head} (L2 size unknown here: not rotated)"
        l2 = f"{COVER_FACTOR} x the {_mib(self.l2_bytes)} L2"
        if self.covered:
            return f"{head} ({_mib(self.rotated_bytes)} >= {l2})"
        bound = {
            LIMIT_MEMORY: f"limited by memory, {_mib(self.cap_bytes or 0)}",
            LIMIT_COUNT: "limited by the number of sets",
        }.get(self.limited_by or "", "short")
        return f"{head} ({_mib(self.rotated_bytes)} < {l2}: {bound})"

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> L2Plan:
        """The plan :meth:`to_json` wrote (its derived keys are recomputed, not read)."""
        names = "policy sets set_bytes footprint_bytes l2_bytes cover_bytes cap_bytes limited_by"
        given: dict[str, Any] = {n: doc.get(n) for n in names.split()}
        return cls(**given)

    def to_json(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "sets": self.sets,
            "set_bytes": self.set_bytes,
            "footprint_bytes": self.footprint_bytes,
            "rotated_bytes": self.rotated_bytes,
            "l2_bytes": self.l2_bytes,
            "cover_bytes": self.cover_bytes,
            "cap_bytes": self.cap_bytes,
            "covered": self.covered,
            "limited_by": self.limited_by,
        }


# --- pure planning (no CUDA) ----------------------------------------------------------------------


def sets_to_cover(set_bytes: int, l2_bytes: int, factor: int = COVER_FACTOR) -> int:
    """The fewest sets of ``set_bytes`` each that together hold ``factor * l2_bytes``: 1 when
    one set does. Invariant: ``sets * set_bytes >= factor * l2_bytes``."""
    if set_bytes < 1 or l2_bytes < 0:
        raise ValueError(f"set_bytes {set_bytes} must be >= 1 and l2_bytes {l2_bytes} >= 0")
    return max(1, math.ceil(factor * l2_bytes / set_bytes))


def memory_cap_bytes(l2_bytes: int, free_bytes: int | None = None) -> int:
    """The device memory (bytes) all sets of a rotation may take: the larger of
    :data:`MEMORY_FLOOR_BYTES` and the cover target, at most :data:`FREE_FRACTION` of
    ``free_bytes`` (the memory free before they are allocated; None: not limited by it)."""
    cap = max(MEMORY_FLOOR_BYTES, COVER_FACTOR * l2_bytes)
    if free_bytes is not None:
        cap = min(cap, int(FREE_FRACTION * free_bytes))
    return cap


def plan_sets(
    set_bytes: int,
    l2_bytes: int | None,
    *,
    policy: str = DEFAULT_POLICY,
    footprint_bytes: int | None = None,
    free_bytes: int | None = None,
    max_sets: int = MAX_SETS,
) -> L2Plan:
    """How many sets a launch rotates through under ``policy``.

    ``set_bytes``: operand and output bytes of one set; ``footprint_bytes``: the memory one set
    takes with its launch's own allocations (default ``set_bytes``); ``l2_bytes``: the L2 size
    (None: unknown, no rotation); ``free_bytes``: device memory free now. Under ``"rotate"``
    ``sets = min(sets_to_cover(set_bytes, l2_bytes), cap_bytes // footprint_bytes, max_sets)``
    and at least 1, so ``sets * footprint_bytes <= cap_bytes`` whenever ``sets > 1``.
    """
    check_policy(policy)
    if set_bytes < 1:
        raise ValueError(f"set_bytes must be >= 1, not {set_bytes}")
    footprint = max(set_bytes, footprint_bytes or 0)
    if policy == WARM:
        return L2Plan(WARM, 1, set_bytes, footprint, l2_bytes)
    if not l2_bytes or l2_bytes < 1:
        return L2Plan(ROTATE, 1, set_bytes, footprint, limited_by=LIMIT_L2_UNKNOWN)
    cover = COVER_FACTOR * l2_bytes
    cap = memory_cap_bytes(l2_bytes, free_bytes)
    needed = sets_to_cover(set_bytes, l2_bytes)
    by_memory = max(1, cap // footprint)
    sets = min(needed, by_memory, max(1, max_sets))
    limited_by = None
    if sets < needed:
        limited_by = LIMIT_MEMORY if sets == by_memory else LIMIT_COUNT
    return L2Plan(ROTATE, sets, set_bytes, footprint, l2_bytes, cover, cap, limited_by)


def inputs_bytes(inputs: Inputs) -> int:
    """Bytes of one set: the storage of every tensor in ``inputs.tensors`` and of
    ``inputs.out``, each storage counted once (views share theirs)."""
    seen: dict[tuple[str, int], int] = {}
    for t in (*inputs.tensors.values(), inputs.out):
        storage = getattr(t, "untyped_storage", None)
        if storage is None:
            continue  # not a tensor (a Python number)
        s = storage()
        seen[(str(t.device), s.data_ptr())] = s.nbytes()
    return sum(seen.values())


def whole_rounds(launches: int, sets: int) -> int:
    """``launches`` rounded up to a multiple of ``sets``: the size of a captured batch (a CUDA
    graph) that runs every set equally often and, replayed, continues the rotation."""
    if launches < 1 or sets < 1:
        raise ValueError("launches and sets must be >= 1")
    return math.ceil(launches / sets) * sets


class RotatingLaunch:
    """A :data:`~wattbench.kernels.family.Launch` that runs its sets' launches in turn: call i
    runs ``launches[(i + start) mod sets]``. It holds the sets' inputs (``inputs``) so they live
    as long as it does, and its :attr:`plan` says which policy is in force.

    A CUDA graph captured from it replays the sets captured, in that order: capture
    :func:`whole_rounds` launches so that each replay runs every set equally often."""

    def __init__(
        self, launches: Sequence[Launch], plan: L2Plan, inputs: Sequence[Inputs] = ()
    ) -> None:
        if len(launches) != plan.sets:
            raise ValueError(f"{len(launches)} launches for a plan of {plan.sets} sets")
        self._launches = tuple(launches)
        self.plan = plan
        self.inputs = tuple(inputs)
        self._next = 0

    def __call__(self) -> Any:
        i = self._next
        self._next = (i + 1) % len(self._launches)
        return self._launches[i]()

    @property
    def sets(self) -> int:
        return self.plan.sets

    @property
    def policy(self) -> str:
        return self.plan.policy

    @property
    def next_set(self) -> int:
        """The set the next call runs (0 .. sets - 1)."""
        return self._next

    def reset(self) -> None:
        """Start the rotation again at set 0."""
        self._next = 0

    def describe(self) -> dict[str, Any]:
        """The plan as a record stores it (:meth:`L2Plan.to_json`)."""
        return self.plan.to_json()

    @property
    def choice(self) -> dict[str, Any] | None:
        """The kernel the sets' launches run (:func:`~wattbench.kernels.family.launch_choice`
        of the first: one problem, one choice)."""
        return launch_choice(self._launches[0])

    def describe_l2(self) -> dict[str, Any]:
        """:meth:`describe`, under the name a runner looks for on any launch it is given."""
        return self.describe()


def plan_of(launch: Launch) -> L2Plan | None:
    """The L2 plan of ``launch``, or None for a launch that is no :class:`RotatingLaunch`."""
    return getattr(launch, "plan", None) if isinstance(launch, RotatingLaunch) else None


# --- building the sets ----------------------------------------------------------------------------


def _cuda_index(device: str) -> int:
    """The index of CUDA device ``device`` ("cuda" is the current device). Needs CUDA."""
    import torch

    index = torch.device(device).index
    return torch.cuda.current_device() if index is None else index


def device_l2_bytes(device: str) -> int | None:
    """The L2 size (bytes) of CUDA device ``device`` ("cuda" or "cuda:N"), None where torch does
    not report it. Needs CUDA."""
    import torch

    props = torch.cuda.get_device_properties(_cuda_index(device))
    size = getattr(props, "L2_cache_size", None)
    return int(size) if size else None


def device_free_bytes(device: str) -> int:
    """Device memory (bytes) torch can allocate now on CUDA device ``device``: what the driver
    reports free plus the blocks torch's allocator holds cached but unused. Needs CUDA."""
    import torch

    index = _cuda_index(device)
    cached = torch.cuda.memory_reserved(index) - torch.cuda.memory_allocated(index)
    return int(torch.cuda.mem_get_info(index)[0]) + max(0, int(cached))


def _allocated_bytes(device: str) -> int | None:
    """Bytes torch's allocator holds for tensors on ``device``; None off CUDA. Needs CUDA
    for a CUDA device."""
    if not device.startswith("cuda"):
        return None
    import torch

    return int(torch.cuda.memory_allocated(_cuda_index(device)))


def rotating_launch(
    family: Family,
    impl: Impl,
    shape: Shape,
    dtype: str,
    *,
    device: str,
    seed: int = 0,
    policy: str = DEFAULT_POLICY,
    first: tuple[Inputs, Launch] | None = None,
    l2_bytes: int | None = None,
    free_bytes: int | None = None,
    max_sets: int = MAX_SETS,
) -> RotatingLaunch:
    """A launch of ``impl`` on ``shape`` / ``dtype`` that follows ``policy`` on ``device``.

    Set 0 is ``first`` (inputs and their launch, e.g. the ones a check verified; they must be
    seeded ``seed``) or is made here; set i has inputs seeded ``seed + i`` and a launch of its
    own. ``l2_bytes`` and ``free_bytes`` default to the CUDA device's; on another device
    (the CPU) they must be given, or L2 counts as unknown and there is one set. On CUDA the
    memory one set takes with its launch (``footprint_bytes``) is read from torch's allocator
    while the second set is built. Raises what ``make_inputs`` / ``make_launch`` raise.
    """
    check_policy(policy)
    shape = tuple(shape)
    on_cuda = device.startswith("cuda")
    if first is None:
        inputs0 = family.make_inputs(shape, dtype, seed, device)
        first = (inputs0, impl.make_launch(inputs0))
    set_bytes = max(1, inputs_bytes(first[0]))
    if policy == ROTATE and on_cuda:
        l2_bytes = device_l2_bytes(device) if l2_bytes is None else l2_bytes
        free_bytes = device_free_bytes(device) if free_bytes is None else free_bytes
    plan = plan_sets(set_bytes, l2_bytes, policy=policy, free_bytes=free_bytes, max_sets=max_sets)
    sets: list[tuple[Inputs, Launch]] = [first]
    if plan.sets > 1:
        before = _allocated_bytes(device)
        inputs1 = family.make_inputs(shape, dtype, seed + 1, device)
        sets.append((inputs1, impl.make_launch(inputs1)))
        after = _allocated_bytes(device)
        footprint = set_bytes if before is None or after is None else after - before
        plan = plan_sets(
            set_bytes,
            l2_bytes,
            policy=policy,
            footprint_bytes=footprint,
            free_bytes=free_bytes,
            max_sets=max_sets,
        )
        del sets[plan.sets :]
        for i in range(len(sets), plan.sets):
            inputs_i = family.make_inputs(shape, dtype, seed + i, device)
            sets.append((inputs_i, impl.make_launch(inputs_i)))
    return RotatingLaunch([s[1] for s in sets], plan, [s[0] for s in sets])
