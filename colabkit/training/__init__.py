"""The training loop and the things it needs.

``loop`` is ``train()``: setup, resume, the epochs, the checkpoint's contents, budget,
progress, signals; ``epochs`` one pass over a split; ``predict`` a trained network's
predictions, made one way for evaluation and for the report (precision, normalization,
flip TTA); ``resume`` whether a run folder may continue as this experiment; ``saver`` what
is written after an epoch and when; ``distributed`` one process or several under
torchrun. Stands on data, the run folder and Colab's storage; never plots or reads many
runs.
"""
