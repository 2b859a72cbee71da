"""Device mesh, logical-axis rules, and parameters born sharded.

The model names every parameter and activation axis (`vocab`, `embed`, `mlp`,
`heads`, `batch`, …); `RULES` maps those names onto the mesh axes `data`,
`fsdp` and `tensor`. With `fsdp = tensor = 1` the same code is pure data
parallelism; `fsdp > 1` shards parameters and optimizer state along the
embedding dimension (ZeRO-3 style); `tensor > 1` splits heads, the MLP and the
vocabulary.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")

RULES = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("embed", "fsdp"),
    ("embed_out", None),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv", None),
    ("vocab", "tensor"),
    ("position", None),
    ("token_type", None),
)


def create_mesh(data: int = -1, fsdp: int = 1, tensor: int = 1,
                devices=None, dcn_data: int = 1) -> Mesh:
  """A (data, fsdp, tensor) mesh; one axis may be -1 (all the rest).

  `dcn_data > 1` splits the data axis over that many slices (TPU multislice)
  or, where devices carry no slice index, processes (GPU hosts): fsdp and
  tensor stay inside a slice on the fast interconnect, and only the data
  axis crosses the slower data-centre network.
  """
  devices = devices if devices is not None else jax.devices()
  shape = [data, fsdp, tensor]
  n = len(devices)
  if shape.count(-1) > 1:
    raise ValueError("mesh: at most one of data/fsdp/tensor may be -1.")
  known = int(np.prod([s for s in shape if s != -1]))
  if -1 in shape:
    if n % known:
      raise ValueError(f"mesh: {n} devices are not divisible by "
                       f"fsdp×tensor×data={known}.")
    shape[shape.index(-1)] = n // known
  if int(np.prod(shape)) != n:
    raise ValueError(f"mesh: data×fsdp×tensor = {shape} uses "
                     f"{int(np.prod(shape))} devices, but there are {n}.")
  if dcn_data <= 1:
    return Mesh(mesh_utils.create_device_mesh(shape, devices), MESH_AXES)
  if shape[0] % dcn_data:
    raise ValueError(f"mesh: data={shape[0]} is not divisible by "
                     f"mesh.dcn_data={dcn_data}.")
  slices = {getattr(d, "slice_index", None) for d in devices}
  by_process = None in slices or len(slices) == 1
  granules = len({d.process_index for d in devices}) if by_process else len(
      slices)
  if granules != dcn_data:
    raise ValueError(
        f"mesh.dcn_data={dcn_data}, but the devices form {granules} "
        f"{'processes' if by_process else 'slices'}.")
  ici = [shape[0] // dcn_data, shape[1], shape[2]]
  return Mesh(mesh_utils.create_hybrid_device_mesh(
      ici, [dcn_data, 1, 1], devices, process_is_granule=by_process),
              MESH_AXES)


def logical_sharding(mesh: Mesh, abstract_tree: Any) -> Any:
  """NamedShardings for a tree of (boxed) abstract values."""
  specs = nn.get_partition_spec(abstract_tree)
  return nn.logical_to_mesh_sharding(specs, mesh, RULES)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Inputs: the batch dimension over data (and fsdp) axes."""
  return NamedSharding(mesh, PartitionSpec(("data", "fsdp")))


def init_sharded(init_fn: Callable[..., Any], mesh: Mesh, *args):
  """Runs `init_fn(*args)` under jit with the rules' out_shardings, so
  parameters are created directly on their shards. Returns (unboxed tree,
  its shardings)."""
  abstract = jax.eval_shape(init_fn, *args)
  shardings = logical_sharding(mesh, abstract)
  with jax.set_mesh(mesh), nn.logical_axis_rules(RULES):
    boxed = jax.jit(init_fn, out_shardings=shardings)(*args)
  return nn.unbox(boxed), nn.unbox(shardings)
