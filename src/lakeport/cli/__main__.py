"""``python -m lakeport.cli`` runs the ``lakeport`` command."""

from lakeport.cli.main import main

main()
