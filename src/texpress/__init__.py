"""texpress: a HiFiC-style learned image codec and the pipeline that trains, ships and runs it."""

__version__ = "0.1.0"
