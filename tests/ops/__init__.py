"""Pure tensor maths, no Avalanche: mixing, pairing, gradients, calibration,
pseudo-labelling rules, AUM/APM and CalibrateMix's split and pairing."""
