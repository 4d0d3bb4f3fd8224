"""The ``lakeport`` command: thin commands over the library (``lakeport --help``)."""
