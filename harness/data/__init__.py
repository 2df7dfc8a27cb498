"""Videos in: the embedded synthetic benchmark, official split parsers, PyAV decoding."""
