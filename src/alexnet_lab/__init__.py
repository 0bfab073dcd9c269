"""alexnet-lab: AlexNet (Krizhevsky, Sutskever & Hinton, NIPS 2012) and its ablations."""

from alexnet_lab import launch  # noqa: F401  (registers the "ddp_sweep_safe" strategy with Lightning)
from alexnet_lab.config import register_resolvers

register_resolvers()
