"""torch.hub entry points for colabkit's networks, one per preset:

    model = torch.hub.load("colabkit/colabkit", "da_cbam_aspp", pretrained=True)

``pretrained=True`` loads the released weights named in ``colabkit/weights.py``
(``RELEASED``), checked against the SHA-256 digits in their file name; ``recipe="fast"``
the fast recipe's. Other keyword arguments go to ``colabkit.build_model`` (``num_classes``,
``width``). Until weights trained by a full GPU run are released, ``pretrained=True``
raises an error naming the notebook that trains them.
"""
from colabkit import weights as _weights

dependencies = ["torch", "torchvision", "numpy", "pandas", "matplotlib", "tqdm"]


def _entry(preset):
    def entry(pretrained=False, **kwargs):
        return _weights.hub_model(preset, pretrained, **kwargs)

    entry.__name__ = entry.__qualname__ = preset
    entry.__doc__ = (f"The `{preset}` preset's network ({_weights.PRESETS[preset].model}); "
                     f"pretrained=True: its released weights (trained by {_weights.trained_by(preset)}).")
    return entry


# the report's four models
basic = _entry("basic")
da = _entry("da")
da_cbam = _entry("da_cbam")
da_cbam_aspp = _entry("da_cbam_aspp")
# the ablations
cbam = _entry("cbam")
da_light = _entry("da_light")
basic_crop = _entry("basic_crop")
da_cbam_spp = _entry("da_cbam_spp")
