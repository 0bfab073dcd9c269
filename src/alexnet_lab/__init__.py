"""alexnet-lab: AlexNet (Krizhevsky, Sutskever & Hinton, NIPS 2012) and its ablations. Importing the package does
nothing; src/*.py register what the configs need (alexnet_lab.config.register) where they start."""
