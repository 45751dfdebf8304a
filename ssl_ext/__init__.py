"""Semi-supervised learning for Avalanche, with CalibrateMix.

A semi-supervised strategy (FixMatch, SoftMatch, FlexMatch) built on
Avalanche's ``SupervisedTemplate``, timm backbones and CalibrateMix, the
training-dynamics-guided mixup of

    Rahman, Mohan, Sosea, Caragea. "CalibrateMix: Guided-Mixup Calibration of
    Image Semi-Supervised Models". arXiv:2511.12964 (AAAI 2026).
"""
