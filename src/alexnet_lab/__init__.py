"""alexnet-lab: AlexNet (Krizhevsky, Sutskever & Hinton, NIPS 2012) and its ablations."""

from alexnet_lab import (
    launch,  # noqa: F401  (registers the "ddp_sweep_safe" strategy with Lightning)
    schema,
)
from alexnet_lab.config import register_resolvers

register_resolvers()
schema.register()  # the configs' structured schemas, named in conf/'s defaults lists
