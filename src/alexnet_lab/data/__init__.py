"""The datasets, each a LightningDataModule on :class:`alexnet_lab.data.base.ClassificationData`: ImageNet as
the paper used it (alexnet_lab.data.imagenet: any on-disk layout, prepared shards, the generated sample), and
CIFAR-10 and MNIST (alexnet_lab.data.small)."""
