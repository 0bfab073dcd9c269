"""alexnet-lab: AlexNet (Krizhevsky, Sutskever & Hinton, NIPS 2012) and its ablations. Importing the package does
nothing; Hydra's plugin discovery registers the resolvers conf/ names (hydra_plugins/alexnet_lab)."""
