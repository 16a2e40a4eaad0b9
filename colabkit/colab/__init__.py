"""Where a run lives and runs: Colab, Google Drive and the device.

``drive`` is Colab and Drive's mount and flush; ``device`` the GPU, its precision and the
environment record; ``places`` which folders are on Drive and the local working area;
``board`` where to point TensorBoard; ``quota`` Drive's usage (drive.csv); ``lease`` the
one trainer of a run folder; ``storage`` the local working copy mirrored to Drive. Stands
on the run folder; knows nothing of data, models or training.
"""
