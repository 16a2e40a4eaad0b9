"""The images: CIFAR-12, CIFAR-10, an image folder or a synthetic set, and their batches.

``archives`` finds, downloads and extracts the CIFAR archives; ``sources`` builds and
caches each data set; ``augment`` holds the batched, seeded augmentations; ``loader``
serves one split on the device. Stands on the run folder's file writes and on where Drive
is (``colab.places``, ``colab.drive``), never on the Drive mirror or the lease; knows
nothing of models or training.
"""
