"""Where a model goes: one device, a device_map, or one full copy per `accelerate launch` process."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Placement:
    """Where one process puts its model, and its share of a data-parallel run.

    Attributes:
        device: The device the whole model goes to, or the inputs' device under a device_map.
        device_map: Passed to `from_pretrained`, or None.
        rank: This process's index among the data-parallel processes.
        world_size: Number of data-parallel processes (1 without `accelerate launch`).
    """

    device: str
    device_map: str | None
    rank: int = 0
    world_size: int = 1


def resolve_placement(
    device: str | None,
    device_map: str | None,
    *,
    num_processes: int = 1,
    process_index: int = 0,
    process_device: str | None = None,
    cuda_available: bool = False,
) -> Placement:
    """Decides device, device_map and rank from the model_args and the accelerate launch state.

    Under `accelerate launch` with N processes each process holds a full copy of the model on its
    own device (`process_device`, e.g. cuda:3) and answers every N-th request (lmms-eval shards
    them); a `device` from the command line is overridden, as lmms-eval's llava_hf does. A
    device_map cannot be combined with that.

    Raises:
        ValueError: device_map given together with several processes.
    """
    device_map = None if device_map in (None, "") else str(device_map)
    if num_processes > 1:
        if device_map is not None:
            raise ValueError(
                f"device_map={device_map!r} spreads one model over devices, which cannot be combined with "
                f"data parallelism over {num_processes} processes; drop device_map under accelerate launch, "
                "or run one process with device_map=auto"
            )
        return Placement(
            device=process_device or ("cuda" if cuda_available else "cpu"),
            device_map=None,
            rank=process_index,
            world_size=num_processes,
        )
    return Placement(device=str(device) if device else ("cuda" if cuda_available else "cpu"), device_map=device_map)
