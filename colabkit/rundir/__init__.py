"""The run folder: what a run leaves on disk and how it is written.

``files`` writes atomically, in a way a synced folder (Google Drive) cannot turn against
us; ``runs`` is the folder's contract (file names, config.json, metrics.csv,
predictions.npz); ``events`` TensorBoard's event file, from the same history as
metrics.csv; ``checkpoint`` saves and loads checkpoints that verify themselves.
Knows nothing of Colab, data, models or training.
"""
