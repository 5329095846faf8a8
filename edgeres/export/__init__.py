"""Export targets. One module per format, registered in ``formats.FORMATS``."""
