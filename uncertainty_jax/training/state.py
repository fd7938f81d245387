"""Train state: one network's variables and optimizer, and the generator/discriminator pair."""

from __future__ import annotations

from typing import Any, Callable, Optional

import flax
import jax
import optax


@flax.struct.dataclass
class NetworkState:
  """One network: parameters, batch-norm statistics (empty when unused) and its optimizer state."""

  params: Any
  batch_stats: Any
  opt_state: Any
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)

  @classmethod
  def create(cls, variables: dict, tx: optax.GradientTransformation) -> "NetworkState":
    params = variables["params"]
    return cls(params=params, batch_stats=variables.get("batch_stats", {}),
               opt_state=tx.init(params), tx=tx)

  @property
  def variables(self) -> dict:
    """The Flax variables to `apply` the network with."""
    if self.batch_stats:
      return {"params": self.params, "batch_stats": self.batch_stats}
    return {"params": self.params}

  def apply_gradients(self, grads: Any, batch_stats: Any = None) -> "NetworkState":
    updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
    return self.replace(params=optax.apply_updates(self.params, updates), opt_state=opt_state,
                        batch_stats=self.batch_stats if batch_stats is None else batch_stats)


@flax.struct.dataclass
class PairState:
  """A generator and, for adversarial training, a discriminator, updated in one step.

  `discriminator` is None for systems trained without one (Table 4.3's non-adversarial rows); the
  same loop, step builder and checkpointing serve both.

  `hparams` holds hyperparameters as arrays, for losses that let them vary per member of a
  vmapped sweep (`training.sweep`): a dict of scalars, or None (the config's values). Checkpoints
  do not store it; a sweep records its members' values itself.
  """

  step: jax.Array
  generator: NetworkState
  discriminator: Optional[NetworkState] = None
  hparams: Optional[dict] = None

  def hparam(self, name: str, default: Any) -> Any:
    """`hparams[name]` if set, else `default` (the config's value)."""
    if self.hparams is not None and name in self.hparams:
      return self.hparams[name]
    return default


def count_params(tree: Any) -> int:
  """Number of scalars in a pytree of arrays."""
  return int(sum(x.size for x in jax.tree_util.tree_leaves(tree)))


Schedule = Callable[[jax.Array], jax.Array]
